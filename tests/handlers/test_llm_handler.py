"""LLMHandler through TorchServe's own Context (no server): batches, streaming, JSON replies, per-request errors.

The tiny random Llama (tests/conftest.py) covers the mechanics in seconds; the real SmolLM2
(`model` mark) checks that an answer makes sense."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest

from ragserve_ops.testing import load_handler, make_context

LLMHandler = load_handler("llm").LLMHandler  # loaded from its file, as TorchServe does


def llm_context(llm_dir: Path, content_types: list[str]):
    handler_yaml = {
        "model": {"path": str(llm_dir)},
        "generate": {"max_new_tokens": 16, "max_new_tokens_limit": 32, "max_input_tokens": 256},
    }
    return make_context(llm_dir, handler_yaml, content_types)


@pytest.fixture(scope="module")
def tiny_handler(tiny_llm_dir: Path) -> LLMHandler:
    handler = LLMHandler()
    handler.initialize(llm_context(tiny_llm_dir, ["text/plain"]))
    return handler


@pytest.fixture(scope="module")
def handler(llm_dir: Path) -> LLMHandler:
    handler = LLMHandler()
    handler.initialize(llm_context(llm_dir, ["text/plain"]))
    return handler


@pytest.mark.model
def test_batch_of_two_gets_text_and_json_answers(handler: LLMHandler, llm_dir: Path) -> None:
    ctx = llm_context(llm_dir, ["text/plain", "application/json"])
    out = handler.handle(
        [
            {"body": b"What is the capital of France?"},
            {"body": {"prompt": "What is the capital of France?", "max_new_tokens": 8}},
        ],
        ctx,
    )
    assert len(out) == 2 and "Paris" in out[0]
    reply = json.loads(out[1])
    assert set(reply) == {"answer", "prompt_tokens", "completion_tokens"} and reply["completion_tokens"] <= 8


def test_tiny_batch_of_two_gets_text_and_json_answers(tiny_handler: LLMHandler, tiny_llm_dir: Path) -> None:
    ctx = llm_context(tiny_llm_dir, ["text/plain", "application/json"])
    body = {"prompt": "Name a colour.", "max_new_tokens": 8, "repetition_penalty": 1.2, "no_repeat_ngram_size": 3}
    out = tiny_handler.handle([{"body": b"Name a colour."}, {"body": body}], ctx)
    reply = json.loads(out[1])
    assert len(out) == 2 and out[0] and reply["answer"] and reply["completion_tokens"] == 8


def test_streamed_and_plain_requests_decode_together(
    tiny_handler: LLMHandler, tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One generate() call serves both; the streamed pieces reach the socket and add up to the answer."""
    calls = _count_generate_calls(tiny_handler, monkeypatch)
    ctx = llm_context(tiny_llm_dir, ["application/json", "text/plain"])
    ctx.cl_socket, backend = socket.socketpair()  # the worker's socket to the frontend, here a local pair
    out = tiny_handler.handle(
        [{"body": {"prompt": "Name a colour.", "stream": True}}, {"body": b"Name a colour."}], ctx
    )
    pieces = _streamed_pieces(_drain(backend))
    assert calls == [2] and out[0] == "" and out[1]
    assert len(pieces) > 1 and "".join(pieces).strip() == out[1]  # the same prompt, greedy: the same answer


def _count_generate_calls(handler: LLMHandler, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the batch size of each model.generate call (a spy: the real generate still runs)."""
    calls: list[int] = []
    real = handler.service.generator.model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(handler.service.generator.model, "generate", spy)
    return calls


def _streamed_pieces(frames: bytes) -> list[str]:
    """The texts of TorchServe's intermediate responses (ts/protocol/otf_message_handler.py's frame layout)."""
    pieces, at = [], 0

    def take() -> bytes:  # one length-prefixed field
        nonlocal at
        (size,) = struct.unpack_from("!i", frames, at)
        at += 4 + max(size, 0)
        return frames[at - max(size, 0) : at]

    while at < len(frames):
        at += 4  # status code
        take(), take(), take()  # message, request id, content type
        at += 4  # HTTP code
        take()  # phrase
        (headers,) = struct.unpack_from("!i", frames, at)
        at += 4
        for _ in range(2 * headers):
            take()
        pieces.append(take().decode())
        at += 4  # end of the batch (-1)
    return pieces


def _drain(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "hi", "repetition_penalty": 0.5}, "repetition_penalty"),
        ({"prompt": "hi", "repetition_penalty": 2.5}, "repetition_penalty"),
        ({"prompt": "hi", "repetition_penalty": "1.2"}, "repetition_penalty"),
        ({"prompt": "hi", "no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
        ({"prompt": "hi", "no_repeat_ngram_size": 11}, "no_repeat_ngram_size"),
        ({"prompt": "hi", "no_repeat_ngram_size": 2.0}, "no_repeat_ngram_size"),
        ({"prompt": "hi", "max_new_tokens": 33}, "max_new_tokens"),
        ({"prompt": "hi", "stream": "yes"}, "stream"),
        ({"prompt": ""}, "prompt"),
    ],
)
def test_tiny_bad_request_fails_alone_in_its_batch(tiny_handler: LLMHandler, tiny_llm_dir: Path, body, field) -> None:
    ctx = llm_context(tiny_llm_dir, ["application/json", "text/plain"])
    out = tiny_handler.handle([{"body": body}, {"body": b"Say hello."}], ctx)
    assert ctx.get_response_status(0)[0] == 400 and json.loads(out[0])["error"]["param"] == field
    assert ctx.get_response_status(1)[0] == 200 and out[1]


@pytest.mark.model
@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"prompt": "hi", "max_new_tokens": 33}, "max_new_tokens", 400),
        ({"prompt": "hi", "temperature": -1}, "temperature", 400),
        ({"prompt": "hi", "stream": "yes"}, "stream", 400),
        ({"question": "hi"}, "question", 400),
        ({"prompt": "word " * 400}, "prompt", 413),
    ],
)
def test_bad_request_fails_alone_in_its_batch(handler: LLMHandler, llm_dir: Path, body, field, status) -> None:
    ctx = llm_context(llm_dir, ["application/json", "text/plain"])
    out = handler.handle([{"body": body}, {"body": b"Say hello."}], ctx)
    assert ctx.get_response_status(0)[0] == status and json.loads(out[0])["error"]["param"] == field
    assert ctx.get_response_status(1)[0] == 200 and out[1]


def test_in_flight_turns_give_one_reply_per_request_and_say_which_continue(tiny_llm_dir: Path) -> None:
    """continuous_batching: TorchServe calls handle() with the same Context each turn, running requests without body."""
    handler_yaml = {"model": {"path": str(tiny_llm_dir)}, "generate": {"max_new_tokens": 8, "max_input_tokens": 256}}
    ctx = make_context(
        tiny_llm_dir, {**handler_yaml, "decode": {"continuous_batching": True}}, ["application/json"] * 2
    )
    handler = LLMHandler()
    handler.initialize(ctx)
    try:
        out = handler.handle([{"body": {"prompt": "Name a colour."}}, {"body": {"prompt": " "}}], ctx)
        # The stopping criterion is the frontend's ts_stream_next: False = more follows, True = the last piece,
        # None = one whole response.
        stop = [criterion(reply) for criterion, reply in zip(ctx.stopping_criteria, out, strict=True)]
        assert (
            json.loads(out[1])["error"]["param"] == "prompt"
            and ctx.get_response_status(1)[0] == 400
            and stop[1] is None
        )
        while stop[0] is False:  # the running request alone, its body not resent
            assert out[0] == "" and ctx.get_response_status(0)[0] == 200
            ctx.request_ids = {0: "request-0"}
            out = handler.handle([{}], ctx)
            stop = [ctx.stopping_criteria[0](out[0])]
        assert json.loads(out[0])["completion_tokens"] <= 8 and not handler.service.jobs
    finally:
        handler.service.stop()
