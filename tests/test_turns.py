"""One TorchServe continuous-batching turn after another (ragserve.api.turns) over the tiny Llama's in-flight decode:
what each request gets back per turn, and whether more follows (the frontend's ts_stream_next)."""

from __future__ import annotations

import json

from ragserve.api.contracts import RequestError, decode_llm_request
from ragserve.api.turns import Job, admit, advance
from ragserve.config import LLMConfig
from ragserve.llm.generation import Generator
from ragserve.llm.inflight import InFlight
from ragserve_ops.testing import turns


def query(body: dict, cfg: LLMConfig):
    return decode_llm_request({"body": json.dumps(body).encode()}, "application/json", cfg)


def test_plain_gets_empty_pieces_then_its_whole_answer_and_streamed_gets_its_text(
    tiny_inflight: InFlight, tiny_generator: Generator
) -> None:
    cfg = tiny_inflight.generator.cfg
    plain, streamed = query({"prompt": "Name a colour."}, cfg), query({"prompt": "Hi", "stream": True}, cfg)
    jobs: dict[str, Job] = {}
    replies = turns(tiny_inflight, jobs, {"plain": plain, "streamed": streamed})
    assert not jobs
    *before, last = replies["plain"]
    assert all(r.body == "" and r.more for r in before) and last.more is False
    expected = tiny_generator.generate([plain.prompt], [plain.sampling])[0]
    assert json.loads(last.body) == {
        "answer": expected.text,
        "prompt_tokens": expected.prompt_tokens,
        "completion_tokens": expected.completion_tokens,
    }
    text = "".join(r.body for r in replies["streamed"])
    assert text.strip() == tiny_generator.generate([streamed.prompt], [streamed.sampling])[0].text
    assert replies["streamed"][-1].more is False and all(r.more for r in replies["streamed"][:-1])


def test_a_refused_request_is_one_whole_4xx_response_beside_a_running_one(tiny_inflight: InFlight) -> None:
    cfg = tiny_inflight.generator.cfg
    bad = RequestError("the prompt is empty", "prompt")
    replies = turns(tiny_inflight, {}, {"bad": bad, "good": query({"prompt": "Hi"}, cfg)})
    assert [(r.status, r.more, json.loads(r.body)["error"]["param"]) for r in replies["bad"]] == [(400, None, "prompt")]
    assert replies["good"][-1].more is False and json.loads(replies["good"][-1].body)["answer"]


def test_admit_names_the_field_the_decode_cannot_honour(tiny_inflight: InFlight) -> None:
    cfg = tiny_inflight.generator.cfg
    try:
        admit(query({"prompt": "Hi", "temperature": 0.5}, cfg), tiny_inflight)
    except RequestError as err:
        assert (err.status, err.field) == (400, "temperature")
    else:
        raise AssertionError("a sampled request was admitted into a greedy decode")


def test_a_request_the_frontend_dropped_is_cancelled(tiny_inflight: InFlight) -> None:
    cfg = tiny_inflight.generator.cfg
    jobs: dict[str, Job] = {}
    advance(tiny_inflight, jobs, ["gone"], [query({"prompt": "Hi", "max_new_tokens": 64, "stream": True}, cfg)])
    assert "gone" in jobs
    advance(tiny_inflight, jobs, [], [])  # its client left: the frontend no longer sends its id
    assert not jobs and "gone" not in tiny_inflight.progress
