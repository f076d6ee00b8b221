"""In-flight decoding (transformers' continuous batching) on the tiny random Llama, CPU: the same greedy tokens as
the batch path, requests joining a running decode, cancellation and settings the decode cannot honour."""

from __future__ import annotations

import dataclasses
import time

import pytest

from ragserve.config import ConfigError
from ragserve.llm.generation import Completion, Generator, Sampling
from ragserve.llm.inflight import InFlight
from ragserve_ops.testing import tiny_llm_config

PROMPTS = ["What is the capital of France?", "Name a colour.", "Write a long story about a dragon."]


@pytest.fixture
def inflight(tiny_inflight: InFlight) -> InFlight:
    assert not tiny_inflight.progress  # every test leaves the decode empty
    return tiny_inflight


def run(decode: InFlight, keys: set[str], until: str | None = None) -> dict[str, tuple[str, Completion | None]]:
    """Poll until every key has finished (or until `until` has); returns each key's streamed text and completion."""
    text = dict.fromkeys(keys, "")
    done: dict[str, Completion | None] = {}
    while (until not in done) if until else set(done) != keys:
        for key, update in decode.poll(wait_s=30).items():
            assert update.error is None
            text[key] += update.piece
            if update.completion is not None:
                done[key] = update.completion
    return {key: (text[key], done.get(key)) for key in keys}


def test_inflight_greedy_answer_equals_the_batch_path(inflight: InFlight, tiny_generator: Generator) -> None:
    sampling = Sampling(max_new_tokens=16)
    expected = tiny_generator.generate([PROMPTS[0]], [sampling])[0]
    inflight.submit("a", PROMPTS[0], sampling)
    streamed, completion = run(inflight, {"a"})["a"]
    assert completion == expected
    assert streamed.strip() == expected.text  # the pieces add up to the answer


def test_a_slow_poller_loses_no_piece(inflight: InFlight, tiny_generator: Generator) -> None:
    """The decode outruns the poller: every step's output of one request waits in the queue at once.
    Joined, the one update they make holds the whole answer (each output's piece follows the one before)."""
    sampling = Sampling(max_new_tokens=16)
    expected = tiny_generator.generate([PROMPTS[0]], [sampling])[0]
    inflight.submit("slow", PROMPTS[0], sampling)
    outputs = inflight.manager.output_router.output_queue  # transformers' queue of per-step outputs
    deadline = time.monotonic() + 60
    while not (outputs.qsize() and outputs.queue[-1].is_finished()):  # hold the poller back until the answer ends
        assert time.monotonic() < deadline, "the in-flight decode did not finish in 60 s"
        time.sleep(0.01)
    assert outputs.qsize() > 1  # several steps' outputs are waiting: the case that lost pieces
    update = inflight.poll(wait_s=0)["slow"]
    assert update.completion == expected
    assert update.piece.strip() == expected.text


def test_a_request_submitted_during_a_decode_joins_it_and_both_are_right(
    inflight: InFlight, tiny_generator: Generator
) -> None:
    long, short = Sampling(max_new_tokens=64), Sampling(max_new_tokens=4)
    inflight.submit("long", PROMPTS[2], long)
    started = ""
    while not started:  # wait until the long request is decoding
        started = "".join(update.piece for update in inflight.poll(wait_s=30).values())
    inflight.submit("short", PROMPTS[1], short)
    results = run(inflight, {"long", "short"}, until="short")
    assert "long" in inflight.progress  # the short one finished while the long one was still decoding
    assert results["short"][1] == tiny_generator.generate([PROMPTS[1]], [short])[0]
    assert run(inflight, {"long"})["long"][1] == tiny_generator.generate([PROMPTS[2]], [long])[0]


def test_a_cancelled_request_sends_nothing_more_and_others_finish(inflight: InFlight) -> None:
    inflight.submit("gone", PROMPTS[2], Sampling(max_new_tokens=64))
    inflight.submit("kept", PROMPTS[0], Sampling(max_new_tokens=8))
    inflight.cancel("gone")
    assert "gone" not in run(inflight, {"kept"}) and "gone" not in inflight.progress
    assert inflight.poll(wait_s=0.2) == {}  # nothing more arrives for the cancelled one


def test_settings_the_decode_cannot_honour_are_named(inflight: InFlight) -> None:
    greedy = Sampling(max_new_tokens=8)
    assert inflight.unsupported_field(greedy) is None
    assert inflight.unsupported_field(dataclasses.replace(greedy, repetition_penalty=1.2)) == "repetition_penalty"
    assert inflight.unsupported_field(dataclasses.replace(greedy, no_repeat_ngram_size=3)) == "no_repeat_ngram_size"
    assert inflight.unsupported_field(dataclasses.replace(greedy, do_sample=True, temperature=0.7)) == "temperature"
    with pytest.raises(ValueError, match="repetition_penalty"):
        inflight.submit("bad", PROMPTS[0], dataclasses.replace(greedy, repetition_penalty=1.2))


@pytest.mark.parametrize("key", ["generate.repetition_penalty", "generate.no_repeat_ngram_size"])
def test_config_refuses_continuous_batching_with_what_it_cannot_do(key: str) -> None:
    value = {"generate.repetition_penalty": 1.05, "generate.no_repeat_ngram_size": 3}[key]
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        tiny_llm_config({"decode.continuous_batching": True, key: value})


@pytest.mark.compile
def test_compiled_inflight_steps_answer_as_the_batch_path_and_never_recompile(
    tiny_generator: Generator, caplog: pytest.LogCaptureFixture
) -> None:
    """compile.enabled compiles the in-flight forward steps (on CUDA by default, with CUDA graphs): warmed up at
    start, the same greedy tokens, and no compile on requests of new lengths after warm-up. Nor may the warm-up hit
    dynamo's recompile limit (in the decode thread, whose dynamo settings are its own): past it the steps would run
    eager and "no recompile" would hold for the wrong reason."""
    from ragserve.compilation import compiled_graph_count
    from ragserve_ops.testing import build_tiny_llm

    compiled = Generator(
        tiny_llm_config({"decode.continuous_batching": True, "compile.enabled": True}), model=build_tiny_llm(0.5)
    )
    assert not compiled.compiled  # the batch path's static-cache buckets are not built for an in-flight worker
    decode = InFlight(compiled, max_requests=4)
    try:
        assert decode.compiled and not decode.cuda_graphs and decode.warm_up_s > 0
        sampling = Sampling(max_new_tokens=16)
        before = compiled_graph_count()
        for key, prompt in zip("abc", PROMPTS, strict=True):
            decode.submit(key, prompt, sampling)
        answers = run(decode, {"a", "b", "c"})
        for key, prompt in zip("abc", PROMPTS, strict=True):
            assert answers[key][1] == tiny_generator.generate([prompt], [sampling])[0]
        assert compiled_graph_count() == before
        assert not [r for r in caplog.records if "recompile_limit" in r.getMessage()]
    finally:
        decode.stop()
