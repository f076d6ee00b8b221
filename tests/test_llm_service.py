"""llm_service.py's way from a request to its query, over the tiny Llama (context 1024 tokens): max_tokens clamped to
the context the prompt leaves, grounded chat searching on the last user message."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ragserve.api.contracts import RequestError
from ragserve.api.llm_service import LLMService, fit_to_context
from ragserve.api.openai_api import OpenAIError
from ragserve.api.openai_chat import ChatQuery, Grounding
from ragserve.llm.generation import Generator, Sampling
from ragserve_ops.testing import tiny_llm_config

CHAT = "v1/chat/completions"


def post(service: LLMService, body: dict) -> ChatQuery:
    query = service.query({"body": json.dumps(body).encode()}, "application/json", CHAT, "Bearer key")
    assert isinstance(query, ChatQuery)
    return query


@pytest.fixture(scope="module")
def roomy(tiny_llm) -> Generator:
    """The tiny Llama with no prompt limit of its own and a max_new_tokens_limit past its context."""
    cfg = tiny_llm_config({"generate.max_input_tokens": None, "generate.max_new_tokens_limit": 4096})
    return Generator(cfg, model=tiny_llm)


def test_max_tokens_past_the_context_is_clamped_to_what_the_prompt_leaves(roomy: Generator) -> None:
    service = LLMService(roomy.cfg, "llm", generator=roomy)
    body = {"model": "llm", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 4000}
    query = post(service, body)
    assert roomy.context_tokens == 1024
    assert query.sampling.max_new_tokens == 1024 - roomy.count_tokens(query.prompt)
    assert post(service, {**body, "max_tokens": 10}).sampling.max_new_tokens == 10


def test_a_prompt_that_fills_the_context_is_a_413() -> None:
    query = ChatQuery("x", Sampling(16), False, True)
    assert fit_to_context(query, 1000, 1024).sampling.max_new_tokens == 16
    assert fit_to_context(query, 1020, 1024).sampling.max_new_tokens == 4
    with pytest.raises(RequestError) as err:
        fit_to_context(query, 1024, 1024)
    assert err.value.status == 413


class Recorder:
    """Stands in for RAGClient: records the question it is asked and answers a fixed prompt and source."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Grounding, str | None]] = []

    def ask(self, question: str, grounding: Grounding, authorization: str | None) -> tuple[str, list[dict]]:
        self.asked.append((question, grounding, authorization))
        return f"Context: 42\nQuestion: {question}", [{"url": "http://blog.example/a", "title": "A"}]


def test_grounded_chat_searches_on_the_last_user_message_and_keeps_the_rest(tiny_generator: Generator) -> None:
    cfg = dataclasses.replace(tiny_generator.cfg, rag=dataclasses.replace(tiny_generator.cfg.rag, url="http://rag"))
    service = LLMService(cfg, "llm", generator=tiny_generator)
    service.rag = Recorder()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the answer?"},
        {"role": "assistant", "content": "The answer is"},  # a prefill after the question
    ]
    query = post(service, {"model": "llm-rag", "messages": messages, "rag": {"k": 2}})
    assert service.rag.asked == [("What is the answer?", Grounding(k=2), "Bearer key")]
    assert query.prompt[1] == {"role": "user", "content": "Context: 42\nQuestion: What is the answer?"}
    assert query.prompt[0] == messages[0] and query.prompt[2] == messages[2]
    assert query.sources == ({"url": "http://blog.example/a", "title": "A"},)


def test_a_prompt_over_the_token_limit_is_a_413_in_the_shape_of_its_route(tiny_generator: Generator) -> None:
    """Counted after decoding, by the service: a chat's refusal in OpenAI's shape, the own contract's in its own."""
    service = LLMService(tiny_generator.cfg, "llm", generator=tiny_generator)
    long = "colour " * 400  # past generate.max_input_tokens (192), within max_prompt_chars
    with pytest.raises(OpenAIError) as chat:
        post(service, {"model": "llm", "messages": [{"role": "user", "content": long}]})
    with pytest.raises(RequestError) as own:
        service.query({"body": long.encode()}, "text/plain", None, None)
    assert chat.value.status == own.value.status == 413 and chat.value.param == "prompt"
    assert not isinstance(own.value, OpenAIError)
