"""Property-based tests of every request decoder of both endpoints (issue 33): any bytes, any nesting, any
types, sent as text, JSON, a form, or JSON TorchServe already parsed, to any route. The result is a query,
a finished reply or a RequestError whose reply encodes; never another exception, which would fail every
request of TorchServe's batch with 503. About 200 examples per decoder, so `make test` stays quick.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragserve.api.contracts import LLMQuery, Query, RequestError, decode_filter, decode_llm_request, decode_request
from ragserve.api.llm_service import LLMService
from ragserve.api.openai_api import OpenAIError
from ragserve.api.openai_chat import ChatQuery, decode_chat
from ragserve.api.openai_rag import decode_embeddings, decode_rag_request, decode_retrieval
from ragserve.api.replies import encode
from ragserve.config import Config, LLMConfig, RetrievalConfig
from ragserve.retrieval.queries import EmbeddingsQuery, RetrievalQuery

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")  # the deep bodies, on purpose
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RAG_CFG = Config()
LLM_CFG = LLMConfig.from_mapping({"model": {"path": "m"}}, ".")
RAG_MODELS = ("rag", "all-mpnet-base-v2")


def words(texts: list[str]) -> list[int]:
    """A stand-in tokenizer: words plus the two special tokens."""
    return [len(text.split()) + 2 for text in texts]


LLM_MODELS = ("llm", "llm-rag")
CONTENT_TYPES = st.sampled_from([None, "application/json", "text/plain", "application/x-www-form-urlencoded", "JSON"])

# The fields each contract reads, so that generated objects reach past the "unknown field" check.
RAG_FIELDS = ["question", "k", "filter"]
LLM_FIELDS = ["prompt", "max_new_tokens", "temperature", "top_p", "repetition_penalty", "no_repeat_ngram_size",
              "stream"]  # fmt: skip
FILTER_FIELDS = ["source_prefix", "published_after", "published_before", "tags"]
EMBEDDING_FIELDS = ["input", "model", "encoding_format", "dimensions", "truncate"]
RETRIEVAL_FIELDS = ["model", "query", "k", "filter"]
CHAT_FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "stream",
               "stream_options", "rag", "response_format", "n", "seed", "tools", "tool_choice"]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),  # lone surrogates included
    st.sampled_from(["2024-13-99", "2024-02-29", "0000-00-00", "user", "system", "text", "auto", "llm", "rag", ""]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def objects(fields: list[str], nested: dict[str, st.SearchStrategy] | None = None) -> st.SearchStrategy:
    """JSON objects with a subset of a contract's fields (any values), now and then an unknown one."""
    values = {name: (nested or {}).get(name, json_values) for name in fields}
    known = st.fixed_dictionaries({}, optional=values)
    return st.one_of(known, st.builds(lambda d, k, v: {**d, k: v}, known, st.text(max_size=8), json_values))


def deep(opener: str) -> st.SearchStrategy[bytes]:
    """opener repeated past any parser's stack, closed or not: the 2 KB body that failed a batch."""
    return st.builds(lambda n, closed: (opener * n + ("]" * n if closed and opener == "[" else "")).encode(),
                     st.integers(1, 5000), st.booleans())  # fmt: skip


def nested_value(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


filters = objects(FILTER_FIELDS)
messages = (
    st.lists(
        objects(["role", "content", "name"], {"role": st.sampled_from(["user", "system", "assistant", "tool", 7])}),
        max_size=4,
    )
    | json_values
)
rag_bodies = objects(RAG_FIELDS, {"filter": filters})
llm_bodies = objects(LLM_FIELDS)
embedding_bodies = objects(
    EMBEDDING_FIELDS,
    {"model": st.sampled_from(RAG_MODELS), "input": st.lists(st.text(max_size=20), max_size=40) | json_values},
)
retrieval_bodies = objects(RETRIEVAL_FIELDS, {"model": st.sampled_from(RAG_MODELS), "filter": filters})
chat_bodies = objects(
    CHAT_FIELDS,
    {"model": st.sampled_from(LLM_MODELS), "messages": messages, "rag": st.booleans() | objects(["k", "filter"])},
)


def payloads(bodies: st.SearchStrategy) -> st.SearchStrategy:
    """What TorchServe hands a handler as a request's body: bytes (raw, JSON, mutated JSON, deep nesting),
    text, or JSON TorchServe parsed itself."""
    dumped = bodies.map(lambda b: json.dumps(b).encode("utf-8", "surrogatepass"))
    mutated = st.builds(lambda raw, i, b: raw[:i] + bytes([b]) + raw[i + 1 :], dumped, st.integers(0, 200),
                        st.integers(0, 255))  # fmt: skip
    raw = st.one_of(st.binary(max_size=200), dumped, mutated, deep("["), deep('{"q":'), deep('{"question":'),
                    st.sampled_from([b"NaN", b"-Infinity", b"1" * 5000, b"null", b'"\\ud800"', b"{}"]))  # fmt: skip
    parsed = st.one_of(bodies, json_values, st.integers(1, 200).map(nested_value))
    return st.one_of(raw, parsed, st.text(max_size=200))


def requests(bodies: st.SearchStrategy, form_field: str) -> st.SearchStrategy[dict[str, Any]]:
    body = payloads(bodies)
    return st.one_of(
        st.builds(lambda b: {"body": b}, body),
        st.builds(lambda b: {"data": b}, body),
        st.builds(lambda v: {form_field: v}, st.binary(max_size=50) | st.text(max_size=50)),
        st.just({}),
    )


def assert_answers(decode, *args: Any, allowed: tuple[type, ...]) -> None:
    """decode(*args) gives one of allowed or raises a RequestError whose reply is a JSON error object; the
    text a query carries on can be sent as UTF-8."""
    try:
        result = decode(*args)
    except RequestError as err:
        reply = encode(err)
        assert 400 <= reply.status < 500 and "error" in json.loads(reply.body)
        reply.body.encode("utf-8")
        return
    assert isinstance(result, allowed), result
    for text in _texts(result):
        text.encode("utf-8")  # a lone surrogate would fail the tokenizer or the reply, in the batch's inference


def _texts(result: Any) -> list[str]:
    if isinstance(result, (Query, RetrievalQuery)):
        return [result.question]
    if isinstance(result, EmbeddingsQuery):
        return list(result.texts)
    if isinstance(result, LLMQuery):
        prompt = result.prompt
        return [prompt] if isinstance(prompt, str) else [m["content"] for m in prompt]
    return []


# ----------------------------------------------------------------------------- RAG endpoint


@FUZZ
@given(requests(rag_bodies, "question"), CONTENT_TYPES)
def test_the_rag_contract_answers_any_request_with_a_query_or_a_request_error(request: dict, ctype: str) -> None:
    assert_answers(decode_request, request, ctype, RAG_CFG.retrieval, allowed=(Query,))


@FUZZ
@given(
    st.one_of(requests(embedding_bodies, "input"), requests(retrieval_bodies, "input"), requests(rag_bodies, "input")),
    CONTENT_TYPES,
    st.sampled_from([None, "", "v1/embeddings", "/v1/retrieval/", "v1/models", "v1/chat/completions", "v2/x", "\x00"]),
)
def test_every_rag_route_answers_any_request_with_a_query_a_reply_or_a_request_error(
    request: dict, ctype: str, url_path: str | None
) -> None:
    allowed = (Query, RetrievalQuery, EmbeddingsQuery, dict)
    assert_answers(decode_rag_request, request, ctype, url_path, RAG_CFG, RAG_MODELS, words, allowed=allowed)


@FUZZ
@given(embedding_bodies | json_values)
def test_the_embeddings_decoder_answers_any_json(payload: Any) -> None:
    assert_answers(decode_embeddings, payload, RAG_MODELS, RetrievalConfig(), words, 384, allowed=(EmbeddingsQuery,))


@FUZZ
@given(retrieval_bodies | json_values)
def test_the_retrieval_decoder_answers_any_json(payload: Any) -> None:
    assert_answers(decode_retrieval, payload, RAG_MODELS, RAG_CFG.retrieval, allowed=(RetrievalQuery,))


@FUZZ
@given(filters | json_values)
def test_the_filter_decoder_answers_any_json(value: Any) -> None:
    try:
        decode_filter(value)
    except RequestError as err:
        assert err.status == 400 and err.field.startswith("filter")


# ----------------------------------------------------------------------------- LLM endpoint


class CountingGenerator:
    """Stands in for Generator in LLMService.query: counts a prompt's tokens as its characters."""

    max_input_tokens = 4096
    context_tokens = 8192

    def count_tokens(self, prompt: Any) -> int:
        return len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) + 4 for m in prompt)


class CannedRAG:
    """Stands in for RAGClient: a fixed prompt and source."""

    def ask(self, question: str, grounding: Any, authorization: str | None) -> tuple[str, list[dict]]:
        return f"Context: 42\nQuestion: {question}", [{"url": "http://blog.example/a", "title": "A"}]


@pytest.fixture(scope="module")
def llm_service() -> LLMService:
    """The LLM endpoint's whole way from a request to its query (routes, grounding, token count), without a model."""
    cfg = dataclasses.replace(LLM_CFG, rag=dataclasses.replace(LLM_CFG.rag, url="http://rag.invalid/predictions/rag"))
    service = LLMService(cfg, "llm", generator=CountingGenerator())  # type: ignore[arg-type]
    service.rag = CannedRAG()  # type: ignore[assignment]
    assert tuple(service.routes.models) == LLM_MODELS
    return service


@FUZZ
@given(requests(llm_bodies, "prompt"), CONTENT_TYPES)
def test_the_llm_contract_answers_any_request_with_a_query_or_a_request_error(request: dict, ctype: str) -> None:
    assert_answers(decode_llm_request, request, ctype, LLM_CFG, allowed=(LLMQuery,))


@FUZZ
@given(
    st.one_of(requests(chat_bodies, "messages"), requests(llm_bodies, "messages")),
    CONTENT_TYPES,
    st.sampled_from([None, "v1/chat/completions", "v1/models", "v1/embeddings", "nope"]),
)
def test_every_llm_route_answers_any_request_with_a_query_a_reply_or_a_request_error(
    llm_service: LLMService, request: dict, ctype: str, url_path: str | None
) -> None:
    assert_answers(llm_service.query, request, ctype, url_path, "Bearer key", allowed=(LLMQuery, dict))


@FUZZ
@given(chat_bodies | json_values)
def test_the_chat_decoder_answers_any_json(payload: Any) -> None:
    assert_answers(decode_chat, payload, LLM_CFG, LLM_MODELS, "llm-rag", allowed=(ChatQuery,))


# ----------------------------------------------------------------------------- issue 33's bodies, as regressions


@pytest.mark.parametrize(
    "value", [10**5000, -(10**4400), float("nan"), nested_value(2000)], ids=["huge", "-huge", "nan", "nested"]
)
def test_values_that_repr_or_compare_badly_are_request_errors(value: Any) -> None:
    """Parsed by TorchServe (its json.loads takes ints past the digit limit that ours refuses), fed to each field."""
    bodies = [
        value,
        {"question": value},
        {"question": "Q", "k": value},
        {"question": "Q", "filter": {"tags": value}},
        {"question": "Q", "filter": {"published_after": value}},
    ]
    for body in bodies:
        assert_answers(decode_request, {"body": body}, "application/json", RAG_CFG.retrieval, allowed=(Query,))
    question = [{"role": "user", "content": "Q"}]
    for chat in ({"model": "llm", "messages": value}, {"model": "llm", "messages": question, "temperature": value},
                 {"model": "llm", "messages": question, "stop": value, "rag": value}):  # fmt: skip
        assert_answers(decode_chat, chat, LLM_CFG, LLM_MODELS, "llm-rag", allowed=(ChatQuery,))
    assert_answers(decode_embeddings, {"model": "rag", "input": value}, RAG_MODELS, RetrievalConfig(), words, 384,
                   allowed=(EmbeddingsQuery,))  # fmt: skip


@pytest.mark.parametrize("body", [b"[" * 1000, b'{"q":' * 1000, b"[" * 100_000 + b"]" * 100_000])
def test_a_deeply_nested_body_is_a_400_naming_the_body_on_both_endpoints(llm_service: LLMService, body: bytes) -> None:
    calls = [
        lambda r: decode_rag_request(r, "application/json", None, RAG_CFG, RAG_MODELS, words),
        lambda r: decode_rag_request(r, "application/json", "v1/retrieval", RAG_CFG, RAG_MODELS, words),
        lambda r: decode_rag_request(r, "application/json", "v1/embeddings", RAG_CFG, RAG_MODELS, words),
        lambda r: llm_service.query(r, "application/json", None, None),
        lambda r: llm_service.query(r, "application/json", "v1/chat/completions", None),
    ]
    for call in calls:
        with pytest.raises(RequestError, match="nested more than 64 levels") as err:
            call({"body": body})
        error = json.loads(encode(err.value).body)["error"]
        assert (err.value.status, error["param"] or "body") == (400, "body")


def test_an_impossible_filter_date_is_a_400_on_the_json_contract_and_the_retrieval_route() -> None:
    body = {"question": "Q", "filter": {"published_after": "2024-13-99"}}
    with pytest.raises(RequestError, match="must be a date") as err:
        decode_request({"body": body}, "application/json", RAG_CFG.retrieval)
    assert (err.value.status, err.value.field) == (400, "filter.published_after")
    body = {"model": "rag", "query": "Q", "filter": {"published_before": "2024-02-30"}}
    with pytest.raises(OpenAIError) as err:
        decode_retrieval(body, RAG_MODELS, RAG_CFG.retrieval)
    assert (err.value.status, err.value.param) == (400, "filter.published_before")
    leap = decode_retrieval({**body, "filter": {"published_after": "2024-02-29"}}, RAG_MODELS, RAG_CFG.retrieval)
    assert leap.filter is not None and leap.filter.published_after == "2024-02-29"
