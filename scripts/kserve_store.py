#!/usr/bin/env python3
"""Lay out an endpoint's KServe storage: `make kserve-store` writes build/kserve/<name>/.

  build/kserve/rag/config/config.properties    deploy/k8s/kserve/config.properties
  build/kserve/rag/model-store/rag.mar         scripts/archive.py --format mar (index included)

KServe's TorchServe integration expects exactly this under an InferenceService's storageUri; upload
the folder (e.g. `aws s3 sync build/kserve/rag s3://<bucket>/rag/<version>`) and point storageUri at it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lay_out(endpoint: str, config: Path, out: Path) -> Path:
    """Write out/<endpoint>/config/config.properties and out/<endpoint>/model-store/<endpoint>.mar."""
    target = out / endpoint
    shutil.rmtree(target, ignore_errors=True)
    (target / "config").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "k8s" / "kserve" / "config.properties", target / "config" / "config.properties")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "archive.py"), "--endpoint", endpoint, "--config", str(config)]
        + ["--name", endpoint, "--store", str(target / "model-store"), "--format", "mar"],
        check=True,
    )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", choices=["rag", "llm"], default="rag")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "rag-docs.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "kserve")
    args = parser.parse_args()
    print(f"KServe storage: {lay_out(args.endpoint, args.config.resolve(), args.out)}")


if __name__ == "__main__":
    main()
