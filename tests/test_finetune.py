"""`make finetune` (scripts/finetune_embedder.py) on a tiny index of tests/fixtures/docs embedded by the tiny
random MPNet: two steps write a model folder the project's Encoder loads, with vectors unlike the base model's.
Nothing is downloaded. The trainer needs `datasets`, a tooling pin (benchmarks/requirements.txt)."""

from __future__ import annotations

import dataclasses
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ragserve.config import CompileConfig, Config
from ragserve.embedding.encoder import Encoder
from ragserve.index.builder import refresh
from ragserve.index.line import line_key
from ragserve_ops.testing import FIXTURES, ROOT, build_tiny_mpnet

pytest.importorskip("datasets", reason="the trainer needs datasets: pip install -r benchmarks/requirements.txt")

TEXTS = ["How many workers load the model?", "Tokens > Expiry\nTokens expire after a day."]


def test_two_steps_write_a_model_folder_the_encoder_loads_with_vectors_unlike_the_base_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    handler = {
        "corpus": {"source": str(FIXTURES / "docs"), "chunk_size": 200, "chunk_overlap": 20},
        "embedding": {
            "model_path": str(build_tiny_mpnet(tmp_path / "tiny-mpnet")),
            "batch_size": 8,
            "backend": "torch",
        },
        "compile": {"enabled": False},
        "index": {"dir": str(tmp_path / "index"), "follow_s": 0},
        "runtime": {"device": "cpu"},
    }
    handler["corpus"] |= {"split": "sections", "chunk_header": True}  # heading-path pairs as well as titles
    (tmp_path / "rag.yaml").write_text(yaml.safe_dump({"handler": handler}))
    cfg = Config.from_mapping(handler, tmp_path)
    refresh(cfg, lambda: Encoder(cfg.embedding, CompileConfig(enabled=False)))

    argv = ["finetune_embedder.py", "--config", str(tmp_path / "rag.yaml"), "--root", str(tmp_path)]
    argv += ["--max-steps", "2", "--batch-size", "4", "--lr", "1e-3"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "scripts" / "finetune_embedder.py"), run_name="__main__")
    out = capsys.readouterr()
    folder = Path(out.out.strip().splitlines()[-1])
    assert folder == tmp_path / "models" / f"tiny-mpnet-ft-{line_key(cfg)}"
    assert (folder / "modules.json").exists() and (folder / "model.safetensors").stat().st_mode & 0o044 == 0o044
    assert "held-out recall" in out.err and "2 steps" in out.err and "at batch 4" in out.err and "CPU-s" in out.err
    assert "10,000" in out.err and "embedding.model_path=" in out.err and out.out.count("\n") == 1

    base = Encoder(cfg.embedding, CompileConfig(enabled=False)).embed(TEXTS)
    tuned = Encoder(dataclasses.replace(cfg.embedding, model_path=str(folder)), CompileConfig(enabled=False))
    vectors = tuned.embed(TEXTS)
    assert vectors.shape == base.shape and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert not np.allclose(vectors, base, atol=1e-4)

    monkeypatch.setattr(sys, "argv", argv)  # a second run would write other weights under the same cache key
    with pytest.raises(SystemExit, match="exists: pick another --out"):
        runpy.run_path(str(ROOT / "scripts" / "finetune_embedder.py"), run_name="__main__")
