"""Model identity by content (embedding/fingerprint.py): weights or tokenizer changed in place are another model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ragserve.config import EmbeddingConfig
from ragserve.embedding import fingerprint as fp
from ragserve.embedding.cache import cache_key, model_identity
from ragserve.embedding.onnxrt import onnx_file


def _model(folder: Path, weights: bytes = b"\x01" * 64, vocab: str = "[PAD]\nhello\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "vocab.txt").write_text(vocab)
    (folder / "config.json").write_text('{"hidden_size": 32}')
    return folder


def _rewrite(path: Path, content: bytes) -> None:
    """New content with a new mtime (as save_pretrained writes it)."""
    before = path.stat().st_mtime_ns
    path.write_bytes(content)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_a_checkpoint_of_the_same_size_saved_over_the_folder_is_another_model(tmp_path: Path) -> None:
    folder = _model(tmp_path / "mpnet")
    cfg = EmbeddingConfig(model_path=str(folder), backend="onnxruntime")
    key, export = cache_key(cfg), onnx_file(cfg)
    _rewrite(folder / "model.safetensors", b"\x02" * 64)  # fine-tuned: same size, other weights
    assert cache_key(cfg) != key
    assert onnx_file(cfg) != export  # the old export is never run for the new weights


def test_a_new_tokenizer_is_another_model_and_our_exports_are_not_part_of_it(tmp_path: Path) -> None:
    folder = _model(tmp_path / "mpnet")
    first = fp.model_fingerprint(folder)
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model-mean.onnx").write_bytes(b"export")
    (folder / ".complete").write_text("downloaded")
    assert fp.model_fingerprint(folder) == first
    _rewrite(folder / "vocab.txt", b"[PAD]\nhullo\n")
    assert fp.model_fingerprint(folder) != first


def test_two_folders_of_one_name_and_size_are_two_models(tmp_path: Path) -> None:
    a = _model(tmp_path / "a" / "mpnet", weights=b"\x01" * 64)
    b = _model(tmp_path / "b" / "mpnet", weights=b"\x03" * 64)
    ids = [model_identity(EmbeddingConfig(model_path=str(folder))) for folder in (a, b)]
    assert ids[0]["model"] == ids[1]["model"] and ids[0]["content_sha256"] != ids[1]["content_sha256"]


def test_the_fingerprint_is_stored_once_and_reused_while_no_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _model(tmp_path / "mpnet")
    first = fp.model_fingerprint(folder)
    record = json.loads((folder / fp.RECORD).read_text())
    assert record["sha256"] == first and [name for name, *_ in record["files"]] == [
        "config.json",
        "model.safetensors",
        "vocab.txt",
    ]
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    assert fp.model_fingerprint(folder) == first
    assert not [name for name in opened if not name.endswith(fp.RECORD)]  # no weight file read again


def test_a_read_only_folder_is_hashed_at_each_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _model(tmp_path / "mpnet")

    def refuse(*args: object) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(fp.os, "replace", refuse)
    first = fp.model_fingerprint(folder)
    assert first and not (folder / fp.RECORD).exists()
    assert not list(folder.glob("*.partial"))
    assert fp.model_fingerprint(folder) == first


def test_a_hub_id_has_no_fingerprint() -> None:
    assert fp.model_fingerprint(Path("sentence-transformers/all-mpnet-base-v2")) is None
    assert (
        model_identity(EmbeddingConfig(model_path="sentence-transformers/all-mpnet-base-v2"))["content_sha256"] is None
    )
