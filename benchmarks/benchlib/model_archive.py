"""A benchmark's workdir and the RAG archive in it, built by ragserve_ops.server's `prepare_rag_archive`.

Public: `stage_inputs` (the model yaml's relative inputs under the workdir), `sections` (a model yaml mapping
as the two texts the harness's prepare_* functions take), `bench_yaml` (configs/rag-docs.yaml with compile off,
the archive and memory benchmarks' model yaml), `archive_rag` (index built or refreshed, then archived into
workdir/model_store/rag, the subprocesses' output in a log file). No server start here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ragserve_ops.server import prepare_rag_archive

ROOT = Path(__file__).resolve().parents[2]


def _inputs(handler: dict[str, Any]) -> tuple[str, str]:
    """(corpus source, embedding model path) of a handler section, the demo's flat keys included."""
    corpus = handler.get("corpus") or {}
    source = corpus.get("source") or handler.get("url_to_scrape") or handler.get("source") or "corpus/ragserve-docs"
    model = (handler.get("embedding") or {}).get("model_path") or handler.get("model_path") or "models"
    return str(source), str(model)


def _top(path: str) -> str | None:
    """The first folder of a repository-relative local path; None for URLs and absolute paths."""
    if "://" in path or Path(path).expanduser().is_absolute():
        return None
    return Path(path).parts[0]


def stage_inputs(base: dict[str, Any], workdir: Path) -> None:
    """Make the model yaml's relative local inputs resolve under workdir, as they do in the repository.

    The model folder is linked (read only). The corpus is copied: a snapshot, so an edit to the repository's
    corpus during a run cannot change what a later step indexes.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    source, model = _inputs(base.get("handler") or {})
    model_top, corpus_top = _top(model), _top(source)
    if model_top and (ROOT / model_top).exists() and not (workdir / model_top).exists():
        (workdir / model_top).symlink_to(ROOT / model_top)
    if corpus_top and corpus_top != model_top and (ROOT / corpus_top).is_dir():
        target = workdir / corpus_top
        if target.is_symlink():
            target.unlink()
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / corpus_top, target)


def sections(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model yaml mapping split into (handler section, frontend keys), as the harness takes them."""
    return dict(doc.get("handler") or {}), {key: value for key, value in doc.items() if key != "handler"}


def bench_yaml() -> dict[str, Any]:
    """configs/rag-docs.yaml with compile off."""
    doc = yaml.safe_load((ROOT / "configs" / "rag-docs.yaml").read_text())
    doc["handler"]["compile"]["enabled"] = False
    return doc


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """File descriptors 1 and 2 (this process's and its subprocesses' output) written to log meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log, "wb") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved_fd in zip((1, 2), saved, strict=True):
            os.dup2(saved_fd, fd)
            os.close(saved_fd)


def archive_rag(workdir: Path, doc: dict[str, Any], log: Path) -> Path:
    """prepare_rag_archive on a model yaml mapping, quietly: its build_index and archive output go to log.

    The index is refreshed first, so the archive always ships the version that matches doc. RuntimeError
    naming the failed step and the log's last line otherwise.
    """
    handler, frontend = sections(doc)
    try:
        with output_to(log):
            return prepare_rag_archive(workdir, handler, frontend)
    except subprocess.CalledProcessError as err:
        step = next(Path(str(part)).name for part in err.cmd[1:] if str(part) != "-m")  # the script or module
        lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
        raise RuntimeError(f"{step} failed (rc {err.returncode}): {lines[-1][:300]}; see {log}") from err
