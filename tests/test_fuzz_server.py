"""1,000 bad request bodies against a real TorchServe, each sent beside a good one to the same route (issue 33).

Both endpoints in one server (SmolLM2 and all-mpnet-base-v2 over the fixture docs), one worker each, batches of 8
with a 50 ms delay, so that a bad request and its good neighbour share a batch. The bodies come from a seeded
generator (FUZZ_SEED), so a failure replays: random bytes, truncated and mutated JSON, JSON nested past any
parser's stack, wrong types and unknown fields, bodies past the size limits, odd content types. Each one is checked
against the pure decoders first and kept only if they refuse it (a mutation that left a valid request is drawn
again): "bad" means the contract refuses it, and the server must then answer 4xx with a JSON body. Every good
request must answer 200, and no worker may restart (its pid before and after). Counts and time are printed (`-s`).
"""

from __future__ import annotations

import functools
import http.client
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ragserve.api.contracts import RequestError
from ragserve.api.llm_service import LLMService
from ragserve.api.openai_rag import decode_rag_request
from ragserve.config import Config, LLMConfig, override
from ragserve_ops.server import TorchServe
from ragserve_ops.testing import FIXTURES, LLM_DIR, MODEL_DIR, ROOT, Archive, serving

pytestmark = [pytest.mark.faults, pytest.mark.server, pytest.mark.model]

FUZZ_SEED = 33
BAD_BODIES = 1000
PAIRS_IN_FLIGHT = 4  # pairs sent at once: 8 requests, one batch's worth
FRONTEND = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 8, "maxBatchDelay": 50, "responseTimeout": 60}
RAG_HANDLER = {
    "corpus": {"source": str(FIXTURES / "docs"), "chunk_size": 300, "chunk_overlap": 30},
    "embedding": {"model_path": str(MODEL_DIR), "backend": "torch"},
    "compile": {"enabled": False},
}
LLM_HANDLER = {"model.path": str(LLM_DIR), "generate.max_new_tokens": 2, "runtime.threads": 1}
RAG_MODELS = ("rag", MODEL_DIR.name)


@dataclass(frozen=True)
class Route:
    model: str  # the TorchServe model
    path: str  # after /predictions/<model>: "" or /1.0/v1/...
    good: bytes  # a cheap request it answers with 200
    good_type: str
    templates: tuple[dict[str, Any], ...]  # valid JSON bodies to truncate, mutate and retype
    fields: tuple[str, ...]  # the fields a wrong type goes into

    @property
    def url_path(self) -> str | None:  # what TorchServe hands the handler as the url_path header
        return self.path.removeprefix("/1.0/") or None


QUESTION = "How do I rotate the inference token?"
CHAT = [{"role": "user", "content": "Say yes."}]
ROUTES = (
    Route("rag", "", QUESTION.encode(), "text/plain",
          ({"question": QUESTION}, {"question": QUESTION, "k": 3, "filter": {"tags": ["ops"]}}),
          ("question", "k", "filter")),
    Route("rag", "/1.0/v1/embeddings", json.dumps({"model": "rag", "input": "hello"}).encode(), "application/json",
          ({"model": "rag", "input": ["a", "b"]}, {"model": RAG_MODELS[1], "input": "x", "encoding_format": "float"}),
          ("model", "input", "encoding_format")),
    Route("rag", "/1.0/v1/retrieval", json.dumps({"model": "rag", "query": QUESTION, "k": 2}).encode(),
          "application/json",
          ({"model": "rag", "query": QUESTION, "k": 2}, {"model": "rag", "query": "q", "filter": {"tags": "a"}}),
          ("model", "query", "k", "filter")),
    Route("llm", "", json.dumps({"prompt": "Say yes.", "max_new_tokens": 2}).encode(), "application/json",
          ({"prompt": "Say yes.", "max_new_tokens": 3}, {"prompt": "Hi", "temperature": 0.5, "top_p": 0.9}),
          ("prompt", "max_new_tokens", "temperature", "top_p", "stream")),
    Route("llm", "/1.0/v1/chat/completions", json.dumps({"model": "llm", "messages": CHAT, "max_tokens": 2}).encode(),
          "application/json",
          ({"model": "llm", "messages": CHAT, "max_tokens": 4}, {"model": "llm", "messages": CHAT, "stop": ["x"]}),
          ("model", "messages", "max_tokens", "temperature", "stop", "stream", "response_format")),
)  # fmt: skip
WRONG_VALUES = (None, True, 0, -1, 10**30, 1.5, float("inf"), "", "x", [], [1, 2], {}, {"a": 1}, [None], "2024-13-99")
ODD_TYPES = (
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz",
    "application/json; charset=latin-1",
    "JSON",
    "application/octet-stream",
    "text/csv",
    "",
    "*/*",
)


class _Tokens:
    """Stands in for the Generator in the local check: a prompt is one token (the server counts for real)."""

    max_input_tokens = context_tokens = 10**9

    def count_tokens(self, prompt: Any) -> int:
        return 1


LOCAL_RAG = Config()


@functools.cache
def model_tokens(texts: tuple[str, ...]) -> list[int]:
    """The served model's tokenizer, uncut, as the RAG worker counts v1/embeddings inputs."""
    tokenizer = _tokenizer()
    return [len(ids) for ids in tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]]


@functools.cache
def _tokenizer():  # noqa: ANN202 - a transformers tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR)


LOCAL_LLM = LLMService(LLMConfig.from_mapping(override({}, LLM_HANDLER), ROOT), "llm", generator=_Tokens())  # type: ignore[arg-type]


def refused(route: Route, body: bytes, content_type: str) -> bool:
    """Whether the pure decoders refuse this body as TorchServe would hand it over (a form is refused by
    construction below, and multipart by TorchServe's frontend)."""
    if "form" in content_type:
        return True
    request = {"body": body}
    try:
        if route.model == "rag":
            decode_rag_request(
                request, content_type, route.url_path, LOCAL_RAG, RAG_MODELS, lambda texts: model_tokens(tuple(texts))
            )
        else:
            LOCAL_LLM.query(request, content_type, route.url_path, None)
    except RequestError:
        return True
    return False


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _random_bytes(rng: random.Random, route: Route) -> tuple[bytes, str]:
    raw = rng.randbytes(rng.randint(1, 300))
    if rng.random() < 0.5:
        return raw, "application/json"
    return raw + rng.choice([b"\xff", b"\x00", b"\xc3"]), rng.choice(["text/plain", "application/octet-stream"])


def _truncated(rng: random.Random, route: Route) -> tuple[bytes, str]:
    raw = _dump(rng.choice(route.templates))
    return raw[: rng.randint(1, len(raw) - 1)], "application/json"


def _mutated(rng: random.Random, route: Route) -> tuple[bytes, str]:
    raw = bytearray(_dump(rng.choice(route.templates)))
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(raw))
        choice = rng.random()
        if choice < 0.4:
            raw[at] = rng.randrange(256)
        elif choice < 0.7:
            del raw[at]
        else:
            raw[at:at] = bytes([rng.choice(b'{}[]:,"\\\x00')])
    return bytes(raw), "application/json"


def _deep(rng: random.Random, route: Route) -> tuple[bytes, str]:
    depth = rng.choice([65, 100, 1000, rng.randint(65, 20_000)])
    opener = rng.choice(["[", '{"q":', '{"question":', '{"messages":', '{"input":'])
    closer = "]" * depth if opener == "[" and rng.random() < 0.5 else ""
    if rng.random() < 0.5:  # inside a field of a valid body, past the 64-level limit
        inner = "[" * depth + "1" + "]" * depth
        return f'{{"{rng.choice(route.fields)}": {inner}}}'.encode(), "application/json"
    return (opener * depth + closer).encode(), "application/json"


def _wrong_type(rng: random.Random, route: Route) -> tuple[bytes, str]:
    body = dict(rng.choice(route.templates))
    if rng.random() < 0.2:
        body[rng.choice(["questions", "", "model ", "__proto__", "n", "Prompt"])] = rng.choice(WRONG_VALUES)
    elif rng.random() < 0.3:
        body.pop(rng.choice(route.fields), None)
    else:
        body[rng.choice(route.fields)] = rng.choice(WRONG_VALUES)
    if rng.random() < 0.2:  # the same object at the top of another JSON value
        return _dump(rng.choice([[body], "text", 7, None])), "application/json"
    return _dump(body), "application/json"


def _oversize(rng: random.Random, route: Route) -> tuple[bytes, str]:
    if route.path.endswith("embeddings"):
        inputs = rng.choice([["word"] * rng.randint(33, 3000), ["w" * 2000] * 17, "w" * 40_000])
        body = {"model": "rag", "input": inputs}
        return _dump(body), "application/json"
    if route.model == "rag":
        text = "word " * rng.randint(401, 4000)
        key = "query" if route.path.endswith("retrieval") else "question"
        body = {"model": "rag", key: text} if route.path else {key: text}
        return (
            (text.encode(), "text/plain")
            if not route.path and rng.random() < 0.5
            else (_dump(body), "application/json")
        )
    text = "word " * rng.randint(20_001, 24_000)  # past generate.max_prompt_chars (100,000)
    if route.path:
        return _dump({"model": "llm", "messages": [{"role": "user", "content": text}]}), "application/json"
    return _dump({"prompt": text}), "application/json"


def _odd_type(rng: random.Random, route: Route) -> tuple[bytes, str]:
    content_type = rng.choice(ODD_TYPES)
    if "form" in content_type:  # a JSON text without '=' or '&' as a form: one field, no value, dropped
        return _dump(rng.choice(route.templates)).replace(b"=", b"").replace(b"&", b""), content_type
    if route.path:  # the v1 routes take JSON only: a text body of any type is refused
        return rng.choice([route.good, b"hello", b"{}"]), content_type
    return rng.choice([b'{"question": 7}', b"\x00", b"[1]", b'{"prompt": ""}', b"\xff\xfe"]), content_type


GENERATORS: tuple[Callable[[random.Random, Route], tuple[bytes, str]], ...] = (
    _random_bytes, _truncated, _mutated, _deep, _wrong_type, _oversize, _odd_type,
)  # fmt: skip


def bad_bodies(seed: int, count: int) -> list[tuple[Route, str, bytes, str]]:
    """count (route, kind, body, content type), seeded; each refused by the decoders (else drawn again)."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        route, generate = ROUTES[len(cases) % len(ROUTES)], rng.choice(GENERATORS)
        body, content_type = generate(rng, route)
        if refused(route, body, content_type):
            cases.append((route, generate.__name__.strip("_"), body, content_type))
    return cases


def test_bad_bodies_are_seeded_refused_and_cover_every_route_and_kind(model_dir: Path) -> None:
    """The generator alone (no server): reproducible, every kind on every route, every body refused (decoded with
    the embedder's tokenizer: model_dir skips it, naming `make models`, where the weights are absent)."""
    cases = bad_bodies(FUZZ_SEED, BAD_BODIES)
    assert [c[2] for c in cases[:50]] == [c[2] for c in bad_bodies(FUZZ_SEED, 50)]
    kinds = Counter((route.model + route.path, kind) for route, kind, _, _ in cases)
    assert len(kinds) == len(ROUTES) * len(GENERATORS), sorted(kinds)
    assert all(refused(route, body, ctype) for route, _, body, ctype in cases)


# ----------------------------------------------------------------------------- against TorchServe


@pytest.fixture(scope="module")
def server(model_dir: Path, llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TorchServe:
    archives = {
        "rag": Archive("rag", RAG_HANDLER, FRONTEND),
        "llm": Archive("llm", override({}, LLM_HANDLER), FRONTEND),
    }
    with serving(tmp_path_factory.mktemp("fuzz"), archives) as ts:
        yield ts


def post(server: TorchServe, route: Route, body: bytes, content_type: str) -> tuple[int, bytes]:
    """POST raw bytes with exactly this Content-Type ("" sends none); (status, body), status 0 for a dead socket."""
    url = urlsplit(server.inference_url)
    headers = {"Authorization": f"Bearer {server.keys.get('inference')}"}
    if content_type:
        headers["Content-Type"] = content_type
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request("POST", f"/predictions/{route.model}{route.path}", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def is_json_object(text: bytes) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def test_every_bad_body_gets_a_json_4xx_and_its_good_neighbour_a_200(server: TorchServe) -> None:
    cases = bad_bodies(FUZZ_SEED, BAD_BODIES)
    workers = {model: server.worker_pids(model) for model in ("rag", "llm")}
    server.keys.get("inference")  # read once, before the threads
    started = time.perf_counter()
    results = []  # (case, bad status, bad body, good status)
    with ThreadPoolExecutor(2 * PAIRS_IN_FLIGHT) as pool:
        for start in range(0, len(cases), PAIRS_IN_FLIGHT):
            window = cases[start : start + PAIRS_IN_FLIGHT]
            sent = [
                (case, pool.submit(post, server, case[0], case[2], case[3]),
                 pool.submit(post, server, case[0], case[0].good, case[0].good_type))
                for case in window
            ]  # fmt: skip
            results += [(case, *bad.result(), good.result()[0]) for case, bad, good in sent]
    seconds = time.perf_counter() - started

    bad_ok = [r for r in results if 400 <= r[1] < 500 and is_json_object(r[2])]
    good_ok = [r for r in results if r[3] == 200]
    kinds = Counter(f"{case[1]}:{status}" for case, status, _, _ in results)
    print(f"\nfuzz: {len(results)} bad bodies in {seconds:.0f} s: {len(bad_ok)} got a JSON 4xx, "
          f"{len(good_ok)}/{len(results)} good neighbours 200")  # fmt: skip
    print(f"by kind:status {dict(sorted(kinds.items()))}")
    failures = [
        (case[0].model + case[0].path, case[1], case[3], case[2][:120], status, body[:200], good)
        for case, status, body, good in results
        if not (400 <= status < 500 and is_json_object(body)) or good != 200
    ]
    assert not failures, failures[:10]
    assert {model: server.worker_pids(model) for model in workers} == workers  # no worker died or restarted
