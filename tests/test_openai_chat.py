"""api/openai_chat.py without a server: request checks, the text a client sees (stops, whitespace), the bodies and
events of a chat completion, and an OpenAI chat through the in-flight decode's turns (tiny Llama)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from ragserve.api.openai_api import OpenAIError
from ragserve.api.openai_chat import ChatReply, DeltaText, decode_chat
from ragserve.api.replies import error_json
from ragserve.api.turns import Job
from ragserve.config import LLMConfig
from ragserve.llm.generation import Completion, Generator
from ragserve.llm.inflight import InFlight
from ragserve_ops.testing import turns

MODELS = ["llm", "llm-rag"]
TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]


LLM_CFG = LLMConfig.from_mapping({"model": {"path": "m"}}, ".")


def chat(cfg: LLMConfig, **body) -> object:
    return decode_chat(
        {"model": "llm", "messages": [{"role": "user", "content": "Hi"}], **body}, cfg, MODELS, "llm-rag"
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 3}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "search"}}}, "tool_choice"),
        ({"functions": [{"name": "search"}], "function_call": {"name": "search"}}, "function_call"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "many"}, "max_completion_tokens"),
        ({"model": "llm-rag", "messages": [{"role": "system", "content": "Be brief."}]}, "messages"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"temperature": 3}, "temperature"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({"messages": []}, "messages"),
        ({"rag": {"k": 0}}, "rag.k"),
        ({"rag": {"filter": {"published_after": "May"}}}, "rag.filter.published_after"),
        ({"rag": {"filter": None}}, "rag.filter"),
    ],
)
def test_what_the_model_cannot_honour_is_refused_by_name(body: dict, param: str) -> None:
    with pytest.raises(OpenAIError) as err:
        chat(LLM_CFG, **body)
    assert err.value.status == 400 and error_json(err.value)["error"]["param"] == param


def test_neutral_values_and_the_rag_model_are_accepted() -> None:
    query = chat(LLM_CFG, n=1, presence_penalty=0, logprobs=False, user="u", seed=None)
    assert query.grounding is None and query.prompt == ({"role": "user", "content": "Hi"},)
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    grounded = decode_chat({"model": "llm-rag", "messages": messages}, LLM_CFG, MODELS, "llm-rag")
    assert grounded.grounding is not None and grounded.prompt[0]["role"] == "system"


@pytest.mark.parametrize("tool_choice", [None, "auto", "none"])
def test_tools_are_accepted_and_never_called_unless_a_call_is_demanded(tool_choice: str | None) -> None:
    query = chat(LLM_CFG, tools=TOOLS * 36, tool_choice=tool_choice, parallel_tool_calls=True)
    assert query.prompt == ({"role": "user", "content": "Hi"},)  # the tools change nothing: the model answers in text


@pytest.mark.parametrize(
    "body",
    [
        {"tools": TOOLS * 36, "tool_choice": {"type": "function", "function": {"name": "x" * 26_000}}},
        {"tools": "x" * 26_000},
        {"n": list(range(10_000))},
        {"temperature": "hot" * 10_000},
        {"model": "m" * 26_000},
        {"rag": {"filter": {"published_after": "x" * 26_000}}},
    ],
)
def test_a_refusal_quotes_at_most_about_200_characters_of_the_refused_value(body: dict) -> None:
    with pytest.raises(OpenAIError) as err:
        chat(LLM_CFG, **body)
    assert len(str(err.value)) < 400 and "characters)" in str(err.value)


def test_max_tokens_past_what_the_model_writes_is_clamped_not_refused() -> None:
    limit = LLM_CFG.generate.max_new_tokens_limit
    assert chat(LLM_CFG, max_tokens=1000).sampling.max_new_tokens == min(1000, limit)
    assert chat(LLM_CFG, max_completion_tokens=10**9, max_tokens=5).sampling.max_new_tokens == limit
    assert chat(LLM_CFG, max_tokens=7).sampling.max_new_tokens == 7 and chat(LLM_CFG).sampling.max_new_tokens == 256


def test_grounding_searches_on_the_last_user_message_whatever_follows_it() -> None:
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    assert decode_chat({"model": "llm-rag", "messages": messages}, LLM_CFG, MODELS, "llm-rag").grounding


@pytest.mark.parametrize(
    ("pieces", "stops", "expected"),
    [
        ([" Hel", "lo", " wor", "ld ", "\n"], (), "Hello world"),
        (["The answer", " is 4", "2.\nQ", ": next"], ("\nQ:",), "The answer is 42."),
        (["a", "b", "STO", "P", "c"], ("STOP",), "ab"),
        (["x\n", "\ny"], ("\n\n",), "x"),
    ],
)
def test_streamed_deltas_add_up_to_the_whole_answer_cut_at_a_stop(
    pieces: list[str], stops: tuple, expected: str
) -> None:
    streamed = DeltaText(stops)
    text = "".join(streamed.feed(piece) for piece in pieces) + streamed.finish()
    assert text == expected == DeltaText(stops).whole("".join(pieces).strip())
    assert streamed.stopped == (expected != "".join(pieces).strip())


def test_a_chat_reply_streams_events_then_usage_sources_and_done() -> None:
    query = chat(LLM_CFG, stream=True, stream_options={"include_usage": True})
    reply = ChatReply(dataclasses.replace(query, sources=({"path": "docs/a.md", "title": "A", "score": 0.5},)))
    events = reply.piece("Hel") + reply.piece("lo") + reply.end(Completion("Hello", 5, 2))
    data = [json.loads(e.removeprefix("data: ")) for e in events.split("\n\n") if e and e != "data: [DONE]"]
    assert events.endswith("data: [DONE]\n\n") and data[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
    }
    assert "".join(d["choices"][0]["delta"].get("content", "") for d in data if d["choices"]) == "Hello"
    assert data[-2]["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert data[-1]["sources"][0]["path"] == "docs/a.md" and data[-1]["choices"] == []  # the last before [DONE]
    cited = ChatCompletionChunk.model_validate(data[-4]).choices[0].delta.model_extra["annotations"]
    assert cited == [{"type": "url_citation", "url_citation": {"url": "file:docs/a.md", "title": "A",
                                                               "start_index": 0, "end_index": 5}}]  # fmt: skip
    assert data[-3]["choices"][0]["finish_reason"] == "stop"  # the annotations chunk comes before the finish
    plain = json.loads(ChatReply(chat(LLM_CFG, max_tokens=16)).end(Completion("Hello", 5, 16)))
    assert plain["choices"][0]["message"]["content"] == "Hello" and plain["choices"][0]["finish_reason"] == "length"
    assert "annotations" not in plain["choices"][0]["message"]  # not grounded: no sources, no annotations


def test_a_grounded_plain_reply_carries_sources_and_annotations_the_sdk_parses() -> None:
    sources = (
        {"url": "https://blog.example/a", "title": "A", "score": 0.9},
        {"url": "https://blog.example/a", "title": "A", "score": 0.8},  # a second chunk of the same page
        {"path": "ragserve-docs/end points.md", "title": "", "score": 0.5},
    )
    query = dataclasses.replace(chat(LLM_CFG), sources=sources)
    reply = ChatCompletion.model_validate_json(ChatReply(query).end(Completion("Hello there", 5, 2)))
    cited = [(a.type, a.url_citation.url, a.url_citation.title) for a in reply.choices[0].message.annotations]
    assert cited == [("url_citation", "https://blog.example/a", "A"),
                     ("url_citation", "file:ragserve-docs/end%20points.md", "ragserve-docs/end points.md")]  # fmt: skip
    assert reply.choices[0].message.annotations[0].url_citation.end_index == len("Hello there")
    assert reply.model_extra["sources"] == list(sources)  # kept as before


def test_an_openai_chat_through_in_flight_turns_equals_the_batch_path(
    tiny_inflight: InFlight, tiny_generator: Generator
) -> None:
    cfg = tiny_inflight.generator.cfg
    streamed = decode_chat({"model": "llm", "messages": [{"role": "user", "content": "Name a colour."}],
                            "max_tokens": 12, "stream": True}, cfg, MODELS, None)  # fmt: skip
    expected = tiny_generator.generate([streamed.prompt], [streamed.sampling])[0]
    jobs: dict[str, Job] = {}
    replies = turns(tiny_inflight, jobs, {"s": streamed})
    events = "".join(r.body for r in replies["s"])
    data = [json.loads(e.removeprefix("data: ")) for e in events.split("\n\n") if e and e != "data: [DONE]"]
    assert events.endswith("data: [DONE]\n\n") and replies["s"][-1].content_type == "text/event-stream"
    assert "".join(d["choices"][0]["delta"].get("content", "") for d in data if d["choices"]) == expected.text
