"""scripts/archive.py's formats and scripts/kserve_store.py's layout, on an LLM yaml whose model_path
is absolute (archive.py leaves such paths where they are, so no weights are packed: a second each)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "llm.yaml"
    path.write_text(f"minWorkers: 1\nmaxWorkers: 1\nhandler:\n  model: {{path: {tmp_path / 'weights'}}}\n")
    return path


def archive(config: Path, store: Path, fmt: str) -> None:
    cmd = [sys.executable, str(ROOT / "scripts/archive.py"), "--endpoint", "llm", "--config", str(config)]
    subprocess.run(cmd + ["--name", "llm", "--store", str(store), "--format", fmt], check=True, capture_output=True)


def build_index(config: Path, root: Path) -> None:
    """`make index` for a RAG yaml: archive.py ships (or links) the index, and workers never build one."""
    cmd = [sys.executable, str(ROOT / "scripts/build_index.py"), "--config", str(config), "--root", str(root)]
    subprocess.run(cmd, check=True, capture_output=True)


def names_in(path: Path) -> set[str]:
    if path.suffix == ".mar":
        return set(zipfile.ZipFile(path).namelist())
    with tarfile.open(path) as tar:  # the archiver puts a tgz's files under <name>/
        return {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}


@pytest.mark.parametrize("fmt, file_name", [("mar", "llm.mar"), ("tgz", "llm.tar.gz")])
def test_each_format_packs_handler_package_and_yaml_and_replaces_other_formats(
    config: Path, tmp_path: Path, fmt: str, file_name: str
) -> None:
    store = tmp_path / "model_store"
    archive(config, store, "no-archive")
    archive(config, store, fmt)
    assert sorted(p.name for p in store.iterdir()) == [file_name]  # the folder is gone: one archive per name
    names = names_in(store / file_name)
    assert {"MAR-INF/MANIFEST.json", "llm_handler.py", "ragserve/index/store.py", "llm.yaml"} <= names
    assert not any(n.startswith("ragserve_ops/") for n in names)  # the tooling package is never shipped


def test_kserve_store_has_the_layout_kserve_expects(config: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "scripts/kserve_store.py"), "--endpoint", "llm", "--config", str(config)]
    subprocess.run(cmd + ["--out", str(tmp_path)], check=True, capture_output=True)
    files = sorted(str(p.relative_to(tmp_path / "llm")) for p in (tmp_path / "llm").rglob("*") if p.is_file())
    assert files == ["config/config.properties", "model-store/llm.mar"]
    properties = (tmp_path / "llm" / "config" / "config.properties").read_text()
    assert "model_store=/mnt/models/model-store" in properties and "load_models=all" in properties


def test_a_relative_corpus_beside_an_absolute_store_is_refused_with_the_fix(tmp_path: Path) -> None:
    """A line is keyed by the path from the store to its corpus: the archive would resolve a relative corpus under
    itself and look for another line than the build wrote, so it says so instead of shipping workers that fail."""
    config = tmp_path / "rag.yaml"
    config.write_text(
        "handler:\n  corpus: {source: docs}\n"
        f"  embedding: {{model_path: {tmp_path / 'mpnet'}, backend: torch}}\n  index: {{dir: {tmp_path / 'index'}}}\n"
    )
    cmd = [sys.executable, str(ROOT / "scripts/archive.py"), "--config", str(config), "--name", "rag"]
    done = subprocess.run(
        cmd + ["--root", str(tmp_path), "--store", str(tmp_path / "store")], capture_output=True, text=True
    )
    assert done.returncode != 0 and "Give corpus.source as an absolute path" in done.stderr


@pytest.mark.model
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_rag_archive_ships_the_onnx_export_only_for_that_backend(
    model_dir: Path, tmp_path: Path, backend: str
) -> None:
    import shutil

    from ragserve.config import EmbeddingConfig
    from ragserve.embedding.onnxrt import onnx_file

    weights = tmp_path / "models" / "mpnet"
    shutil.copytree(model_dir, weights, copy_function=lambda src, dst: Path(dst).hardlink_to(src))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\nSome text.\n")
    config = tmp_path / "rag.yaml"
    config.write_text(
        f"handler:\n  corpus: {{source: docs}}\n  embedding: {{model_path: models/mpnet, backend: {backend}}}\n"
    )
    store = tmp_path / "model_store"
    build_index(config, tmp_path)
    cmd = [sys.executable, str(ROOT / "scripts/archive.py"), "--config", str(config), "--name", "rag"]
    subprocess.run(cmd + ["--root", str(tmp_path), "--store", str(store)], check=True, capture_output=True)
    shipped = {str(p.relative_to(store / "rag")) for p in (store / "rag" / "models").rglob("*.onnx")}
    expected = onnx_file(EmbeddingConfig(model_path=str(weights), backend=backend)).relative_to(tmp_path / "models")
    assert shipped == ({f"models/{expected}"} if backend == "onnxruntime" else set())


@pytest.mark.model
def test_a_rag_archive_ships_a_local_reranker_folder(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(model_dir, tmp_path / "models" / "mpnet", copy_function=lambda s, d: Path(d).hardlink_to(s))
    reranker = tmp_path / "models" / "reranker"
    reranker.mkdir()
    (reranker / "config.json").write_text("{}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\nSome text.\n")
    config = tmp_path / "rag.yaml"
    config.write_text(
        "handler:\n  corpus: {source: docs}\n  embedding: {model_path: models/mpnet}\n"
        "  rerank: {model: models/reranker}\n"
    )
    store = tmp_path / "model_store"
    build_index(config, tmp_path)
    cmd = [sys.executable, str(ROOT / "scripts/archive.py"), "--config", str(config), "--name", "rag"]
    subprocess.run(cmd + ["--root", str(tmp_path), "--store", str(store)], check=True, capture_output=True)
    assert (store / "rag" / "models" / "reranker" / "config.json").read_text() == "{}"


@pytest.mark.model
def test_a_folder_archive_links_the_live_store_and_a_mar_holds_the_live_version_alone(
    model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    shutil.copytree(model_dir, tmp_path / "models" / "mpnet", copy_function=lambda s, d: Path(d).hardlink_to(s))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\nSome text.\n")
    config = tmp_path / "rag.yaml"
    config.write_text("handler:\n  corpus: {source: docs}\n  embedding: {model_path: models/mpnet, backend: torch}\n")
    build_index(config, tmp_path)
    (tmp_path / "docs" / "a.md").write_text("# A\nOther text.\n")
    build_index(config, tmp_path)  # a second version: the mar ships only the live one
    store = tmp_path / "model_store"
    cmd = [sys.executable, str(ROOT / "scripts/archive.py"), "--config", str(config), "--name", "rag"]
    subprocess.run(cmd + ["--root", str(tmp_path), "--store", str(store)], check=True, capture_output=True)
    assert (store / "rag" / "index").resolve() == (tmp_path / "index").resolve()  # linked: workers follow refreshes
    assert not (store / "rag" / "docs").exists()  # workers never read the corpus
    subprocess.run(cmd + ["--root", str(tmp_path), "--store", str(store), "--copy-index"], check=True)
    copied = [p for p in (store / "rag" / "index").rglob("manifest.json")]
    assert not (store / "rag" / "index").is_symlink() and len(copied) == 1  # an image build: the live version
    subprocess.run(cmd + ["--root", str(tmp_path), "--store", str(store), "--format", "mar"], check=True)
    names = names_in(store / "rag.mar")
    versions = {name.split("/")[3] for name in names if name.startswith("index/") and "/versions/" in name}
    (line,) = {name.split("/")[1] for name in names if name.startswith("index/")}
    assert len(versions) == 1 and f"index/{line}/CURRENT" in names
    live = (tmp_path / "index" / line / "CURRENT").read_text().strip()
    assert versions == {live}


def test_no_module_an_archive_ships_imports_the_tooling_package() -> None:
    """The tooling (ragserve_ops: client, private servers, archives, test support) is its own package beside ragserve,
    never shipped, so a worker importing it dies at load (ragclient.py once took the ops client's urlopen, and every
    LLM worker failed with "No module named 'ragserve.ops'")."""
    shipped = sorted((ROOT / "handlers" / "ragserve").rglob("*.py")) + sorted((ROOT / "handlers").glob("*_handler.py"))
    offending = []
    for path in shipped:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offending += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "ragserve_ops"]
    assert len(shipped) > 20 and not offending, offending
