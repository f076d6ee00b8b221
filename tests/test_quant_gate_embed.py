"""The int8 embedder's gate (benchmarks/quant_gate_embed.py) on the tiny random MPNet: no download, seconds."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from types import ModuleType

import pytest

from ragserve.config import CompileConfig, EmbeddingConfig
from ragserve.embedding.encoder import Encoder
from ragserve_ops.testing import build_tiny_mpnet

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = {
    "docs": [
        "json.dumps(obj, sort_keys=True) serialises obj with its keys sorted.",
        "The collections module provides deque, Counter and OrderedDict.",
        "batchSize and maxBatchDelay decide how TorchServe groups requests. " * 12,
    ]
}
QUESTIONS = {"docs": ["How do I sort keys in JSON output?", "Which container is a double-ended queue?"]}


@pytest.fixture(scope="module")
def gate_module() -> ModuleType:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))
        return importlib.import_module("quant_gate_embed")


def test_the_gate_compares_int8_with_float32_on_the_same_texts(gate_module, tmp_path) -> None:
    cfg = EmbeddingConfig(model_path=str(build_tiny_mpnet(tmp_path / "tiny")), backend="onnxruntime", batch_size=2)
    fp32 = Encoder(cfg, CompileConfig(enabled=False))
    int8 = Encoder(dataclasses.replace(cfg, precision="int8"), CompileConfig(enabled=False))
    gate = gate_module.compare(fp32, int8, CHUNKS, QUESTIONS)
    row = gate["docs"]
    assert (row["chunks"], row["questions"]) == (3, 2)
    for kind in ("chunk cosine", "question cosine"):
        assert 0.98 < row[kind]["min"] <= row[kind]["p1"] <= row[kind]["mean"] <= 1.0 + 1e-6
    assert row["same nearest chunk"] in (0.0, 0.5, 1.0)
    assert row["same nearest chunk, int8 questions on float32 chunks"] in (0.0, 0.5, 1.0)
    speed = gate["speed"]
    assert speed["int8"]["chunk texts/s"] > 0 and speed["fp32"]["question ms"] > 0
    expected = speed["int8"]["chunk texts/s"] / speed["fp32"]["chunk texts/s"]
    assert speed["int8 / fp32"]["chunk texts/s"] == pytest.approx(expected)
    report = gate_module.markdown(gate, "int8-test")
    assert "| docs | 3 |" in report and "| int8 / fp32 |" in report


def test_identical_vectors_have_cosine_one(gate_module) -> None:
    import numpy as np

    rows = np.eye(3, dtype=np.float32)
    assert gate_module.cosines(rows, rows) == {"min": 1.0, "p1": 1.0, "mean": 1.0}
    assert gate_module.cosines(rows, np.roll(rows, 1, axis=0))["mean"] == 0.0
