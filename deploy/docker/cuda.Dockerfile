# syntax=docker/dockerfile:1
# The LLM endpoint's base image for NVIDIA GPU nodes (amd64), from the repository root:
#   docker build -f deploy/docker/cuda.Dockerfile -t ragserve-cuda:0.1.0 .
# torch's CUDA wheels (scripts/install_torch.sh cuda, TORCH_CUDA=cu130) bring their own CUDA
# libraries, so the base only needs the driver's user-space libraries, which the NVIDIA container
# toolkit mounts. No weights inside: the llm archive (16 GB for Llama-3-8B) is mounted read-only
# at /opt/ragserve/model_store (deploy/k8s/base/llm.yaml). Non-root; ports 8080 and 8082.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
# Distribution packages unpinned (DL3008): the base image's tag fixes the release, and a pin would
# hold back its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ragserve
COPY requirements.txt ./
COPY scripts/ scripts/
ARG TORCH_CUDA=cu130
RUN python3 -m venv .venv \
 && .venv/bin/python -m pip install --no-cache-dir --quiet --upgrade pip==25.3 \
 && TORCH_CUDA=$TORCH_CUDA scripts/install_torch.sh cuda \
 && .venv/bin/python -m pip install --no-cache-dir --quiet -r requirements.txt

FROM ${CUDA_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 ragserve \
 && useradd --uid 10001 --gid ragserve --create-home --home-dir /home/ragserve ragserve \
 && install -d -o ragserve -g ragserve /opt/ragserve/logs /opt/ragserve/model_store
WORKDIR /opt/ragserve
COPY --from=build /opt/ragserve/.venv .venv
COPY deploy/k8s/base/config.properties /etc/ragserve/config.properties
COPY deploy/docker/entrypoint.sh /usr/local/bin/ragserve-entrypoint
COPY handlers/ragserve_ops/client.py /opt/ragserve/tsclient.py
ENV PATH=/opt/ragserve/.venv/bin:$PATH \
    TS_CONFIG_FILE=/etc/ragserve/config.properties \
    LOG_LOCATION=/opt/ragserve/logs \
    METRICS_LOCATION=/opt/ragserve/logs \
    HOME=/home/ragserve
USER 10001:10001
EXPOSE 8080 8082
ENTRYPOINT ["/usr/local/bin/ragserve-entrypoint"]
CMD ["--models", "llm=llm"]
