"""The LLM endpoint with in-flight batching in a real TorchServe (SmolLM2, CPU, `continuousBatching: true`):
a request sent during a long decode joins it and finishes first; streamed and plain requests decode together;
bad requests get their 4xx while another decodes.

On a free port block (ragserve_ops.testing.serving), so it runs beside `make run` and the other server tests.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ragserve_ops.client import stream
from ragserve_ops.server import TorchServe
from ragserve_ops.testing import LLM_DIR, Archive, assert_streamed_and_plain_answers_agree, serving

pytestmark = [pytest.mark.server, pytest.mark.model]

FRONTEND = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 4, "maxBatchDelay": 50, "responseTimeout": 120}
FRONTEND["continuousBatching"] = True
HANDLER = {
    "model": {"path": str(LLM_DIR)},
    "generate": {"max_new_tokens": 24, "max_new_tokens_limit": 64, "max_input_tokens": 256, "repetition_penalty": 1.0},
    "decode": {"continuous_batching": True},
    "runtime": {"threads": 1},
}
PROMPT = "What is the capital of France? Answer in one sentence."
LONG = json.dumps({"prompt": "Write a long story about a dragon.", "max_new_tokens": 64, "stream": True}).encode()


@pytest.fixture(scope="module")
def llm_server(llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TorchServe:
    with serving(tmp_path_factory.mktemp("torchserve-llm-inflight"), {"llm": Archive("llm", HANDLER, FRONTEND)}) as ts:
        yield ts


def long_decode(server: TorchServe, started: threading.Event, finished: list[str]) -> str:
    """Stream the long request; started is set at its first piece, and "long" is appended to finished at its end."""
    pieces = []
    for piece in stream(f"{server.inference_url}/predictions/llm", LONG, server.keys):
        pieces.append(piece)
        started.set()
    finished.append("long")
    return "".join(pieces)


def test_a_request_sent_during_a_long_decode_finishes_before_it(llm_server: TorchServe) -> None:
    started, finished = threading.Event(), []
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(long_decode, llm_server, started, finished)
        assert started.wait(timeout=120)
        body = json.dumps({"prompt": PROMPT, "max_new_tokens": 8}).encode()
        status, content_type, text = llm_server.post("llm", body, "application/json")
        finished.append("short")
        long_text = long.result(timeout=120)
    assert status == 200 and content_type.startswith("application/json")
    reply = json.loads(text)
    assert reply["completion_tokens"] <= 8 and reply["prompt_tokens"] > 0 and reply["answer"]
    assert finished == ["short", "long"]  # it joined the running decode instead of waiting for its end
    assert len(long_text) > len(reply["answer"])


def test_streamed_and_plain_requests_are_answered_together(llm_server: TorchServe) -> None:
    assert_streamed_and_plain_answers_agree(llm_server, PROMPT, "Paris")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"prompt": "Hi", ', 400, "body"),  # malformed JSON
        (json.dumps({"prompt": PROMPT, "repetition_penalty": 3}).encode(), 400, "repetition_penalty"),  # > limit
        (json.dumps({"prompt": PROMPT, "repetition_penalty": 1.1}).encode(), 400, "repetition_penalty"),  # in-flight
        (json.dumps({"prompt": PROMPT, "temperature": 0.7}).encode(), 400, "temperature"),  # greedy endpoint
        (json.dumps({"prompt": "word " * 400}).encode(), 413, "prompt"),  # over max_input_tokens
    ],
)
def test_a_bad_request_during_a_decode_gets_its_4xx_and_the_decode_goes_on(
    llm_server: TorchServe, body: bytes, status: int, field: str
) -> None:
    started, finished = threading.Event(), []
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(long_decode, llm_server, started, finished)
        assert started.wait(timeout=120)
        got, content_type, text = llm_server.post("llm", body, "application/json")
        long_text = long.result(timeout=120)
    assert (got, json.loads(text)["error"]["param"]) == (status, field) and content_type.startswith("application/json")
    assert finished == ["long"] and long_text.strip()
