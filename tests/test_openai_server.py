"""The OpenAI-compatible routes through a real TorchServe, used by clients nobody here wrote: the `openai` SDK
(sync and async), LangChain (`langchain-openai`) and LlamaIndex's OpenAILike (from build/webui-venv: its openai < 3
pin clashes with ours). RAG over the fixture docs (torch backend, eager) and SmolLM2 (greedy), both in one server on
a free port block; grounded chat goes from the LLM worker to the RAG endpoint over HTTP with the caller's key."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from ragserve.config import override
from ragserve_ops.client import request
from ragserve_ops.server import TorchServe
from ragserve_ops.testing import FIXTURES, LLM_DIR, MODEL_DIR, ROOT, Archive, serving

pytestmark = [pytest.mark.server, pytest.mark.model]

FRONTEND = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 4, "maxBatchDelay": 20, "responseTimeout": 120}
QUESTION = "How do I rotate the inference token?"
CLIENTS_PY = ROOT / "build" / "webui-venv" / "bin" / "python"  # Open WebUI's venv holds LlamaIndex too
# What Open WebUI sends by default: native function calling, so its built-in tools with no tool_choice.
TOOL = {"type": "function", "function": {"description": "d" * 600, "parameters": {"type": "object"}}}
TOOLS = [{**TOOL, "function": {**TOOL["function"], "name": f"tool_{i}"}} for i in range(36)]


@pytest.fixture(scope="module")
def server(model_dir: Path, llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TorchServe:
    rag = {
        "corpus": {"source": str(FIXTURES / "docs"), "chunk_size": 300, "chunk_overlap": 30},
        "embedding": {"model_path": str(MODEL_DIR), "backend": "torch"},
        "compile": {"enabled": False},
    }
    llm = {"model.path": str(LLM_DIR), "generate.max_new_tokens": 24, "generate.max_new_tokens_limit": 64}

    def grounded(server: TorchServe) -> dict:  # the LLM worker asks this server's own RAG endpoint
        return override({}, {**llm, "runtime.threads": 1, "rag.url": f"{server.inference_url}/predictions/rag"})

    archives = {"rag": Archive("rag", rag, FRONTEND), "llm": Archive("llm", grounded, FRONTEND)}
    with serving(tmp_path_factory.mktemp("torchserve-openai"), archives) as server:
        yield server


def client(server: TorchServe, model: str) -> openai.OpenAI:
    base_url = f"{server.inference_url}/predictions/{model}/1.0/v1"
    return openai.OpenAI(base_url=base_url, api_key=server.keys.get("inference"), max_retries=0, timeout=120)


def test_sdk_embeddings_equal_the_encoder_for_a_string_and_a_list(server: TorchServe, encoder) -> None:
    rag = client(server, "rag")
    texts = ["How do I rotate the inference token?", "Workers read their vocabulary.", "Quilla"]
    one = rag.embeddings.create(model="all-mpnet-base-v2", input=texts[0])  # the SDK asks for base64
    many = rag.embeddings.create(model="all-mpnet-base-v2", input=texts, encoding_format="float")
    expected = encoder.embed(texts)
    assert np.abs(np.array(one.data[0].embedding) - expected[0]).max() < 1e-6
    assert [d.index for d in many.data] == [0, 1, 2]
    assert np.abs(np.array([d.embedding for d in many.data]) - expected).max() < 1e-6
    assert many.usage.prompt_tokens == sum(encoder.count_tokens(texts)) and many.model == "all-mpnet-base-v2"


def test_sdk_embeddings_of_a_text_longer_than_the_model_reads_are_413_unless_truncate_is_asked(
    server: TorchServe, encoder
) -> None:
    """As OpenAI, TEI and vLLM refuse, with TEI's `truncate` to opt in (extra_body in the SDK)."""
    rag = client(server, "rag")
    long = "Workers read their vocabulary from the model folder. " * 60  # ~600 tokens
    assert encoder.count_tokens([long], truncate=False)[0] > encoder.cfg.max_seq_length
    with pytest.raises(openai.APIStatusError) as err:
        rag.embeddings.create(model="all-mpnet-base-v2", input=["fine", long])
    assert err.value.status_code == 413 and err.value.body["param"] == "input[1]"
    assert "the model reads at most 384 (embedding.max_seq_length)" in err.value.body["message"]
    cut = rag.embeddings.create(model="all-mpnet-base-v2", input=long, encoding_format="float",
                                extra_body={"truncate": True})  # fmt: skip
    assert cut.usage.prompt_tokens == encoder.cfg.max_seq_length
    assert np.abs(np.array(cut.data[0].embedding) - encoder.embed([long])[0]).max() < 1e-6


def test_sdk_chat_plain_and_streamed_give_the_same_greedy_text(server: TorchServe) -> None:
    llm = client(server, "llm")
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour."}]
    plain = llm.chat.completions.create(model="llm", messages=messages, temperature=0, max_tokens=16)
    chunks = list(llm.chat.completions.create(model="llm", messages=messages, temperature=0, max_tokens=16,
                                              stream=True, stream_options={"include_usage": True}))  # fmt: skip
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    text = plain.choices[0].message.content
    assert text and streamed == text
    assert plain.choices[0].finish_reason in ("stop", "length") and plain.usage.total_tokens > plain.usage.prompt_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens  # the usage chunk, last
    stop = text[2:4]
    stopped = llm.chat.completions.create(model="llm", messages=messages, temperature=0, max_tokens=16, stop=[stop])
    assert stopped.choices[0].message.content == text[: text.index(stop)].rstrip()
    assert stopped.choices[0].finish_reason == "stop"


def test_async_sdk_chat_plain_and_streamed_agree_with_the_sync_client(server: TorchServe) -> None:
    messages = [{"role": "user", "content": "Name a colour."}]
    expected = client(server, "llm").chat.completions.create(model="llm", messages=messages, max_tokens=12)

    async def ask() -> tuple[str, str]:
        base_url = f"{server.inference_url}/predictions/llm/1.0/v1"
        async with openai.AsyncOpenAI(base_url=base_url, api_key=server.keys.get("inference"), max_retries=0) as llm:
            plain, stream = await asyncio.gather(
                llm.chat.completions.create(model="llm", messages=messages, max_tokens=12),
                llm.chat.completions.create(model="llm", messages=messages, max_tokens=12, stream=True),
            )
            pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
            return plain.choices[0].message.content, "".join(pieces)

    plain, streamed = asyncio.run(ask())
    assert plain == streamed == expected.choices[0].message.content


def test_llamaindex_openai_like_chats_plain_and_streamed(server: TorchServe) -> None:
    if not CLIENTS_PY.exists():
        pytest.skip(f"{CLIENTS_PY} is missing: make webui-install (LlamaIndex's openai < 3 pin keeps it out of .venv)")
    script = """if True:
        import json, sys
        from llama_index.core.llms import ChatMessage
        from llama_index.llms.openai_like import OpenAILike
        llm = OpenAILike(model="llm", api_base=sys.argv[1], api_key=sys.argv[2], is_chat_model=True, max_tokens=12,
                         temperature=0, max_retries=0, timeout=120)
        messages = [ChatMessage(role="user", content="Name a colour.")]
        streamed = "".join(piece.delta or "" for piece in llm.stream_chat(messages))
        print(json.dumps({"plain": llm.chat(messages).message.content, "streamed": streamed,
                          "complete": llm.complete("Name a colour.").text}))
    """
    base_url = f"{server.inference_url}/predictions/llm/1.0/v1"
    run = subprocess.run([str(CLIENTS_PY), "-c", script, base_url, server.keys.get("inference")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    answers = json.loads(run.stdout.splitlines()[-1])
    assert answers["plain"] and answers["plain"] == answers["streamed"] == answers["complete"]


def test_open_webuis_requests_get_answers_tools_accepted_max_tokens_clamped(server: TorchServe) -> None:
    llm = client(server, "llm")
    messages = [{"role": "user", "content": "Name a colour."}]
    reply = llm.chat.completions.create(model="llm", messages=messages, max_tokens=12, tools=TOOLS)
    assert reply.choices[0].message.content and not reply.choices[0].message.tool_calls  # answered in text
    assert reply.choices[0].finish_reason in ("stop", "length")
    count = [{"role": "user", "content": "Count from 1 to 100, separated by commas."}]
    long = llm.chat.completions.create(model="llm", messages=count, max_tokens=1000)  # Open WebUI's title request
    assert long.usage.completion_tokens == 64 and long.choices[0].finish_reason == "length"  # the server's limit
    with pytest.raises(openai.BadRequestError) as err:
        llm.chat.completions.create(model="llm", messages=messages, tools=TOOLS, tool_choice="required")
    assert err.value.body["param"] == "tool_choice" and len(err.value.body["message"]) < 400


def test_grounded_background_tasks_get_answers_and_refusals_are_4xx(server: TorchServe) -> None:
    llm = client(server, "llm")
    task = "### Task:\nSuggest 3 follow-up questions.\n<chat_history>\n" + f"USER: {QUESTION}\n" * 100
    assert len(task) > 2000  # past the RAG endpoint's retrieval.max_question_chars
    reply = llm.chat.completions.create(model="llm-rag", messages=[{"role": "user", "content": task}], max_tokens=8)
    assert reply.choices[0].message.content and reply.model_extra["sources"]
    messages = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.BadRequestError) as err:  # the RAG endpoint's max_k is 50
        llm.chat.completions.create(model="llm-rag", messages=messages, max_tokens=8, extra_body={"rag": {"k": 100}})
    assert err.value.status_code == 400 and err.value.body["param"] == "rag.k"
    assert err.value.body["type"] == "invalid_request_error"


def test_sdk_lists_the_models(server: TorchServe) -> None:
    assert [m.id for m in client(server, "llm").models.list()] == ["llm", "llm-rag"]
    assert "all-mpnet-base-v2" in [m.id for m in client(server, "rag").models.list()]


def test_langchain_embeddings_and_chat(server: TorchServe, encoder) -> None:
    key = server.keys.get("inference")
    embeddings = OpenAIEmbeddings(
        model="all-mpnet-base-v2",
        base_url=f"{server.inference_url}/predictions/rag/1.0/v1",
        api_key=key,
        check_embedding_ctx_length=False,  # else it tokenizes with tiktoken and sends OpenAI token ids
    )
    vectors = embeddings.embed_documents(["Quilla", "the zebra server"])
    assert np.abs(np.array(vectors) - encoder.embed(["Quilla", "the zebra server"])).max() < 1e-6
    chat = ChatOpenAI(model="llm", base_url=f"{server.inference_url}/predictions/llm/1.0/v1", api_key=key,
                      temperature=0, max_tokens=12, max_retries=0)  # fmt: skip
    answer = chat.invoke("Name a colour.").content
    streamed = "".join(chunk.content for chunk in chat.stream("Name a colour."))
    assert answer and streamed == answer


def test_grounded_chat_carries_its_sources_and_a_filter_excludes_a_source(server: TorchServe) -> None:
    llm = client(server, "llm")
    messages = [{"role": "user", "content": QUESTION}]
    reply = llm.chat.completions.create(model="llm-rag", messages=messages, temperature=0, max_tokens=16)
    sources = reply.model_extra["sources"]
    assert sources and sources[0]["path"] == "docs/tokens.md" and {"title", "score", "text"} <= set(sources[0])
    cited = reply.choices[0].message.annotations  # parsed by the SDK as its own Annotation type
    assert cited[0].type == "url_citation" and cited[0].url_citation.url == "file:docs/tokens.md"
    assert cited[0].url_citation.end_index == len(reply.choices[0].message.content)
    only_workers = {"rag": {"k": 2, "filter": {"source_prefix": "docs/workers"}}}
    chunks = list(llm.chat.completions.create(model="llm", messages=messages, temperature=0, max_tokens=8,
                                              stream=True, extra_body=only_workers))  # fmt: skip
    last = chunks[-1].model_extra["sources"]  # the last event before [DONE]
    assert last and all(s["path"].startswith("docs/workers") for s in last) and len(last) <= 2
    cited = [a for c in chunks if c.choices for a in (c.choices[0].delta.model_extra or {}).get("annotations", [])]
    assert cited and all(a["url_citation"]["url"].startswith("file:docs/workers") for a in cited)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_retrieval_route_and_json_contract_filter_before_top_k(server: TorchServe) -> None:
    body = {"model": "rag", "query": QUESTION, "k": 2, "filter": {"source_prefix": ["docs/workers", "docs/notes"]}}
    status, _, text = server.post("rag/1.0/v1/retrieval", json.dumps(body).encode(), "application/json")
    data = json.loads(text)["data"]
    assert status == 200 and len(data) == 2 and all(d["path"].startswith(("docs/workers", "docs/notes")) for d in data)
    none = {"question": QUESTION, "filter": {"published_after": "2030-01-01"}}
    status, _, text = server.post("rag", json.dumps(none).encode(), "application/json")
    assert status == 200 and json.loads(text)["sources"] == []  # nothing matches: an empty list, not an error


@pytest.mark.parametrize(
    ("call", "status", "param"),
    [
        (lambda llm, rag: llm.chat.completions.create(model="llm", messages=[{"role": "user", "content": "x"}], n=2),
         400, "n"),
        (lambda llm, rag: llm.chat.completions.create(model="llm", messages=[{"role": "user", "content": "x"}],
                                                      presence_penalty=0.5), 400, "presence_penalty"),
        (lambda llm, rag: llm.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}]),
         404, "model"),
        (lambda llm, rag: llm.chat.completions.create(model="llm", messages=[{"role": "robot", "content": "x"}]),
         400, "messages[0].role"),
        (lambda llm, rag: llm.chat.completions.create(model="llm", messages=[{"role": "user", "content": "x"}],
                                                      max_tokens=0), 400, "max_tokens"),
        (lambda llm, rag: rag.embeddings.create(model="all-mpnet-base-v2", input=[[1, 2, 3]]), 400, "input"),
        (lambda llm, rag: rag.embeddings.create(model="all-mpnet-base-v2", input="x", dimensions=64), 400,
         "dimensions"),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_errors_and_the_workers_stay_up(server: TorchServe, call, status: int, param) -> None:
    llm, rag = client(server, "llm"), client(server, "rag")
    with pytest.raises(openai.APIStatusError) as err:
        call(llm, rag)
    assert err.value.status_code == status
    assert err.value.body["param"] == param and err.value.body["type"] == "invalid_request_error"
    assert llm.chat.completions.create(model="llm", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)


def test_a_missing_or_wrong_key_is_refused_and_keys_last_a_day(server: TorchServe) -> None:
    url = f"{server.inference_url}/predictions/llm/1.0/v1/models"
    assert request(url, key=None)[0] == 400 and request(url, key="not-the-key")[0] == 400  # InvalidKeyException
    with pytest.raises(openai.BadRequestError):
        openai.OpenAI(base_url=url.rsplit("/", 1)[0], api_key="not-the-key", max_retries=0).models.list()
    expires = json.loads(server.key_file.read_text())["inference"]["expiration time"]
    lifetime = datetime.fromisoformat(expires[:26].rstrip("Z") + "+00:00") - datetime.now(timezone.utc)
    assert lifetime > timedelta(hours=24)  # config.properties: token_expiration_min=1500
