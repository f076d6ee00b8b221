"""Typed configuration of both endpoints: the only code that reads YAML or raw dicts.

Public names: Config (the RAG endpoint), LLMConfig (the LLM endpoint), their sections, ConfigError, override,
assignment (a command line's --set), config_arguments (--config, --set, --root), reference_markdown.
Both are one shape: a model yaml's `handler:` section holds named sections, each a frozen dataclass
whose fields are the keys, with their defaults (defaults live here and nowhere else). The sections
`compile` (torch.compile) and `runtime` (device and threads) are the same classes in both endpoints.
Values are checked at start-up, by type and by range; an error names the key (`handler.retrieval.top_k`).
`Config.from_mapping` also accepts the original demo's flat keys (`url_to_scrape`, `chunk_size`,
`chunk_overlap`, `model_path`, `compile`). Relative paths resolve once, against `root`.
`override(mapping, {"retrieval.top_k": 3})` is the one way code changes settings: dotted keys into a
mapping that then goes through the same parser. `python -m ragserve.config` prints the reference
(docs/configuration.md holds it; a test keeps the two equal).

  parsing.py    the parser and checker: sections, types, unknown keys, override, --set
  shared.py     the sections both endpoints share: compile, runtime
  rag.py        the RAG endpoint's schema (Config): its corpus and embedding sections
  search.py     its index, retrieval and rerank sections
  llm.py        the LLM endpoint's schema (LLMConfig)
  reference.py  the reference generator
"""

from ragserve.config.llm import (
    LLM_SECTIONS,
    QUANTIZATIONS,
    DecodeConfig,
    GenerateConfig,
    GroundingConfig,
    LLMConfig,
    ModelConfig,
)
from ragserve.config.parsing import ConfigError, assignment, config_arguments, override, sections_of
from ragserve.config.rag import AUTO_BACKENDS, FLAT_KEYS, SECTIONS, SPLITS, Config, CorpusConfig, EmbeddingConfig
from ragserve.config.reference import reference_markdown
from ragserve.config.search import DEFAULT_TEMPLATE, IndexConfig, RerankConfig, RetrievalConfig
from ragserve.config.shared import DTYPES, CompileConfig, RuntimeConfig

__all__ = [
    "AUTO_BACKENDS",
    "DEFAULT_TEMPLATE",
    "DTYPES",
    "FLAT_KEYS",
    "LLM_SECTIONS",
    "QUANTIZATIONS",
    "SECTIONS",
    "SPLITS",
    "CompileConfig",
    "Config",
    "ConfigError",
    "CorpusConfig",
    "DecodeConfig",
    "EmbeddingConfig",
    "GenerateConfig",
    "GroundingConfig",
    "IndexConfig",
    "LLMConfig",
    "ModelConfig",
    "RerankConfig",
    "RetrievalConfig",
    "RuntimeConfig",
    "assignment",
    "config_arguments",
    "override",
    "reference_markdown",
    "sections_of",
]
