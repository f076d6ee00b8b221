# syntax=docker/dockerfile:1
# The index builder on a Ray cluster (deploy/k8s/ray, a KubeRay RayJob): the build stage of cpu.Dockerfile
# (the repository, the pinned venv with ray, the models) plus Ray's dashboard, which a KubeRay head needs
# to serve the job API (requirements.txt pins ray without it). From the repository root:
#   docker buildx build --target build -f deploy/docker/cpu.Dockerfile -t ragserve-builder:0.1.0 .
#   docker buildx build -f deploy/docker/ray.Dockerfile -t registry.example.com/ragserve-ray:0.1.0 .
ARG BUILDER_IMAGE=ragserve-builder:0.1.0
FROM ${BUILDER_IMAGE}
WORKDIR /opt/ragserve
RUN .venv/bin/python -m pip install --no-cache-dir --quiet "ray[default]==2.60.0"
# KubeRay starts `ray start` and the submitter runs `ray job submit`: both from this venv, in which the build
# stage installed ragserve (editable, from /opt/ragserve/handlers): the driver and every Ray worker import it.
ENV PATH=/opt/ragserve/.venv/bin:$PATH
