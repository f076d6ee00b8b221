"""scripts/archive.py's formats and scripts/kserve_store.py's layout, on an LLM yaml whose model_path
is absolute (archive.py leaves such paths where they are, so no weights are packed: a second each)."""

from __future__ import annotations

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
    path.write_text(f"minWorkers: 1\nmaxWorkers: 1\nhandler:\n  model_path: {tmp_path / 'weights'}\n")
    return path


def archive(config: Path, store: Path, fmt: str) -> None:
    cmd = [sys.executable, str(ROOT / "scripts/archive.py"), "--endpoint", "llm", "--config", str(config)]
    subprocess.run(cmd + ["--name", "llm", "--store", str(store), "--format", fmt], check=True, capture_output=True)


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
    assert {"MAR-INF/MANIFEST.json", "llm_handler.py", "ragserve/index.py", "llm.yaml"} <= names


def test_kserve_store_has_the_layout_kserve_expects(config: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "scripts/kserve_store.py"), "--endpoint", "llm", "--config", str(config)]
    subprocess.run(cmd + ["--out", str(tmp_path)], check=True, capture_output=True)
    files = sorted(str(p.relative_to(tmp_path / "llm")) for p in (tmp_path / "llm").rglob("*") if p.is_file())
    assert files == ["config/config.properties", "model-store/llm.mar"]
    properties = (tmp_path / "llm" / "config" / "config.properties").read_text()
    assert "model_store=/mnt/models/model-store" in properties and "load_models=all" in properties
