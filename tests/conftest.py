"""Shared fixtures: the real embedding model, small local corpora and a loopback web server."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragserve.config import CompileConfig, EmbeddingConfig

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODEL_DIR = ROOT / "models" / "all-mpnet-base-v2"
SHARED = ROOT.parent / "shared"
HF_SITE = SHARED / "corpus" / "hf-blog" / "site"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve_directory(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve directory on 127.0.0.1 (a free port) from a daemon thread; returns (server, base URL)."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    """The small multi-page test site in tests/fixtures/site."""
    server, url = serve_directory(FIXTURES / "site")
    yield url
    server.shutdown()


@pytest.fixture(scope="session")
def hf_site_url() -> Iterator[str]:
    """The shared offline mirror of the Hugging Face blog (skipped when ../shared is absent)."""
    if not HF_SITE.is_dir():
        pytest.skip(f"{HF_SITE} is absent: the shared corpus is needed for the realistic crawl")
    server, url = serve_directory(HF_SITE)
    yield url
    server.shutdown()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"{MODEL_DIR} is missing: run `make models`")
    return MODEL_DIR


@pytest.fixture(scope="session")
def embedding_cfg(model_dir: Path) -> EmbeddingConfig:
    return EmbeddingConfig(model_path=str(model_dir), batch_size=4)


@pytest.fixture(scope="session")
def encoder(embedding_cfg: EmbeddingConfig):
    """The real all-mpnet-base-v2, eager (loaded once per session)."""
    from ragserve.embeddings import Encoder

    return Encoder(embedding_cfg, CompileConfig(enabled=False))


LLM_DIR = ROOT / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def llm_dir() -> Path:
    if not (LLM_DIR / "model.safetensors").is_file():
        pytest.skip(f"{LLM_DIR} is missing: run `make models`")
    return LLM_DIR


@pytest.fixture(scope="session")
def generator(llm_dir: Path):
    """The real SmolLM2-135M-Instruct on CPU, float32, greedy (loaded once per session)."""
    from ragserve.config import LLMConfig
    from ragserve.generation import Generator

    return Generator(LLMConfig(model_path=str(llm_dir), max_input_tokens=512))
