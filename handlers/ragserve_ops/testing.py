"""Test support shared by tests/, benchmarks and the TorchServe harness (like torch.testing).

Public names: ROOT, FIXTURES, MODEL_DIR, LLM_DIR, TINY_LLAMA_TOKENIZER, TINY_MPNET_TOKENIZER, SHARED, HF_SITE,
serve_directory, Archive, serving (the test servers' one factory), build_tiny_llm, build_tiny_mpnet, tiny_llm_config,
assert_streamed_and_plain_answers_agree, make_context, load_handler, turns. The tiny models read the tokenizers
committed in tests/fixtures (tests/fixtures/make_tiny_tokenizers.py), not models/: they need no download.
Nothing here is imported by the handlers; `make archive` leaves it out of the model archives.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ragserve_ops.server import TorchServe, prepare_llm_archive, prepare_rag_archive

if TYPE_CHECKING:
    from ts.context import Context

    from ragserve.api.turns import Job, Reply
    from ragserve.llm.inflight import InFlight

ROOT = Path(__file__).resolve().parents[2]  # the repository (the package is installed editable from it)
FIXTURES = ROOT / "tests" / "fixtures"
MODEL_DIR = ROOT / "models" / "all-mpnet-base-v2"
LLM_DIR = ROOT / "models" / "smollm2-135m-instruct"
TINY_LLAMA_TOKENIZER = FIXTURES / "tiny-llama-tokenizer"  # byte-level BPE, 1024 tokens, SmolLM2's chat format
TINY_MPNET_TOKENIZER = FIXTURES / "tiny-mpnet-tokenizer"  # WordPiece, 1024 tokens, MPNet's special tokens
SHARED = ROOT.parent / "shared"
HF_SITE = SHARED / "corpus" / "hf-blog" / "site"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class Replying(http.server.BaseHTTPRequestHandler):
    """A stand-in site's handler: quiet, answering with reply()."""

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, content_type: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def http_site(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """handler on 127.0.0.1 (a free port), each request in a daemon thread; yields the base URL, then shuts the
    server down and closes its socket."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def serve_directory(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve directory on 127.0.0.1 (a free port) from a daemon thread; returns (server, base URL)."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@dataclass(frozen=True)
class Archive:
    """One model of a test server: its endpoint ("rag" or "llm"), handler section and frontend keys (mappings).
    handler may be a function of the server instead, for a setting that names the server's own URL."""

    endpoint: str
    handler: Mapping[str, Any] | Callable[[TorchServe], Mapping[str, Any]]
    frontend: Mapping[str, Any] = field(default_factory=dict)


@contextmanager
def serving(
    workdir: Path, archives: Mapping[str, Archive], all_workers: bool = False, **settings: Any
) -> Iterator[TorchServe]:
    """A TorchServe in workdir on a free port block with these models (name -> Archive): archived (a RAG archive
    builds its index first), started and ready (all_workers: every model's minWorkers READY); stopped and its ports
    given back at the end, whatever happens. settings: TorchServe's port, properties, environment."""
    server = TorchServe(workdir, **settings)
    try:
        (workdir / "model_store").mkdir(parents=True, exist_ok=True)
        for name, archive in archives.items():
            handler = archive.handler(server) if callable(archive.handler) else archive.handler
            prepare = {"rag": prepare_rag_archive, "llm": prepare_llm_archive}[archive.endpoint]
            prepare(workdir, handler, archive.frontend, name)
        server.start(list(archives), all_workers=all_workers)
        yield server
    finally:
        server.stop()
        server.release()


def build_tiny_llm(initializer_range: float):
    """A random 2-layer Llama (hidden 64) over the tiny tokenizer's 1024 tokens, float32: built in a second."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(TINY_LLAMA_TOKENIZER)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=initializer_range,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def build_tiny_mpnet(folder: Path) -> Path:
    """A random 1-layer MPNet encoder (hidden 32) over the tiny WordPiece tokenizer, saved to folder: no download."""
    import torch
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    tokenizer = AutoTokenizer.from_pretrained(TINY_MPNET_TOKENIZER)
    config = MPNetConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=514,
    )  # fmt: skip
    torch.manual_seed(0)
    MPNetModel(config, add_pooling_layer=False).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_llm_config(changes: dict | None = None):
    """The LLM endpoint config the tiny-model tests use: the tiny tokenizer, short limits, eager unless changed
    (dotted keys). The model itself is passed to Generator: model.path only names the tokenizer."""
    from ragserve.config import LLMConfig, override

    values = {
        "model.path": str(TINY_LLAMA_TOKENIZER),
        "generate.max_input_tokens": 192,
        "generate.max_new_tokens": 16,
        "generate.max_new_tokens_limit": 64,
        "compile.enabled": False,
    }
    return LLMConfig.from_mapping(override({}, {**values, **(changes or {})}), ROOT)


def assert_streamed_and_plain_answers_agree(server, prompt: str, expected_word: str) -> None:
    """Send the prompt streamed and plain at once to server's `llm` model: both answer, and greedy decoding
    gives the streamed pieces the plain answer's text."""
    from concurrent.futures import ThreadPoolExecutor

    from ragserve_ops.client import stream

    url = f"{server.inference_url}/predictions/llm"
    streamed_body = json.dumps({"prompt": prompt, "stream": True}).encode()
    with ThreadPoolExecutor(2) as pool:
        streamed = pool.submit(lambda: list(stream(url, streamed_body, server.keys)))
        plain = pool.submit(server.post, "llm", prompt.encode())
        pieces, (status, _, answer) = streamed.result(timeout=120), plain.result(timeout=120)
    assert status == 200 and expected_word in answer
    assert len(pieces) > 1 and "".join(pieces).strip() == answer  # greedy: the same text, piece by piece


def make_context(model_dir: Path, handler_yaml: dict, content_types: list[str]) -> Context:
    """One request slot per content type; the handler section as TorchServe passes the model yaml."""
    import ts
    from ts.context import Context, RequestProcessor
    from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

    ctx = Context("test", str(model_dir), {}, len(content_types), None, "0.12.0")
    ctx.model_yaml_config = {"handler": handler_yaml}
    ctx.request_processor = [RequestProcessor({"body": {"content-type": ct}}) for ct in content_types]
    ctx.request_ids = {i: f"request-{i}" for i in range(len(content_types))}
    ctx.metrics = MetricsCacheYamlImpl(config_file_path=str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
    ctx.metrics.initialize_cache()
    ctx.metrics.model_name = "test"
    return ctx


def load_handler(endpoint: str) -> ModuleType:
    """handlers/<endpoint>_handler.py loaded from its file, as TorchServe loads a handler from the model folder."""
    path = ROOT / "handlers" / f"{endpoint}_handler.py"
    spec = importlib.util.spec_from_file_location(f"{endpoint}_handler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def turns(decode: InFlight, jobs: dict[str, Job], first: dict[str, object]) -> dict[str, list[Reply]]:
    """Run turns as the frontend does (new requests with bodies first, then running ones without) until all end."""
    from ragserve.api.turns import advance

    replies: dict[str, list[Reply]] = {key: [] for key in first}
    ids, queries = list(first), list(first.values())
    while ids:
        for key, reply in zip(ids, advance(decode, jobs, ids, queries), strict=True):
            replies[key].append(reply)
        ids = [key for key in ids if replies[key][-1].more]
        queries = [None] * len(ids)
    return replies
