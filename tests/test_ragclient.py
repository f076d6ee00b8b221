"""ragclient.py against a stand-in RAG endpoint on loopback: long questions searched on their start, cut on a word
boundary; the RAG endpoint's refusals of the client's request as 4xx naming the chat parameter; its faults as 502/503.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from ragserve.api.contracts import RequestError
from ragserve.api.openai_api import OpenAIError
from ragserve.api.openai_chat import Grounding
from ragserve.api.ragclient import RAGClient, cut_question
from ragserve.api.replies import error_json

TEMPLATE = "Context: {context}\nQuestion: {question}\nHelpful Answer:"
SOURCES = [{"url": "http://blog.example/a", "title": "A", "score": 0.5, "text": "The answer is 42."}]


class StandIn(http.server.BaseHTTPRequestHandler):
    """The RAG endpoint's JSON contract with its checks (api/contracts.py's messages), or a canned fault."""

    limit = 2000  # retrieval.max_question_chars
    fault: tuple[int, str] | None = None  # (status, body) answered to every request
    questions: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).questions.append(body["question"])
        if self.fault:
            return self._send(*self.fault)
        question, k = body["question"], body.get("k", 5)
        if len(question) > self.limit:
            err = RequestError(
                f"the question has {len(question)} characters; the limit is {self.limit}", "question", 413
            )
        elif not 1 <= k <= 50:
            err = RequestError(f"'k' must be an integer in 1..50, got {k}", "k")
        elif "tags" in body.get("filter", {}) and not isinstance(body["filter"]["tags"], list):
            err = RequestError("'filter.tags' must be a string or a list of non-empty strings", "filter.tags")
        else:
            prompt = TEMPLATE.format(context="The answer is 42.", question=question)
            return self._send(200, json.dumps({"prompt": prompt, "sources": SOURCES}))
        self._send(err.status, json.dumps(error_json(err)))

    def _send(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rag(monkeypatch: pytest.MonkeyPatch) -> Iterator[RAGClient]:
    monkeypatch.setattr(StandIn, "questions", [])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield RAGClient(f"http://127.0.0.1:{server.server_address[1]}/predictions/rag", timeout_s=5)
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("text", "max_chars", "expected"),
    [
        ("  short question  ", 100, "short question"),
        ("alpha beta gamma", 12, "alpha beta"),
        ("alpha beta gamma", 10, "alpha beta"),  # the limit falls just before a space: the word is whole
        ("alpha beta\n\ngamma", 11, "alpha beta"),
        ("abcdefghij klm", 5, "abcde"),  # one word longer than the limit is cut inside
    ],
)
def test_a_question_is_cut_after_its_last_whole_word_within_the_limit(text: str, max_chars: int, expected: str) -> None:
    assert cut_question(text, max_chars) == expected


def test_a_long_task_prompt_is_searched_on_its_start_and_the_llm_reads_it_whole(rag: RAGClient) -> None:
    task = "### Task: Suggest 3-5 follow-up questions.\n" + "<chat_history> USER: tokens? " * 200 + "</chat_history>"
    prompt, sources = rag.ask(task, Grounding(), None)
    searched = StandIn.questions[-1]
    assert len(searched) <= 2000 and task.startswith(searched) and task[len(searched)] == " "
    assert prompt == TEMPLATE.format(context="The answer is 42.", question=task.strip()) and sources == SOURCES


def test_a_smaller_limit_is_learnt_from_the_rag_endpoints_413_and_the_question_asked_again(
    rag: RAGClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StandIn, "limit", 300)
    prompt, _ = rag.ask("word " * 500, Grounding(), None)
    assert [len(q) > 300 for q in StandIn.questions] == [True, False] and rag.max_question_chars == 300
    assert prompt.endswith("word\nHelpful Answer:") and prompt.count("word") == 500
    rag.ask("word " * 500, Grounding(), None)  # known now: one request
    assert len(StandIn.questions) == 3


@pytest.mark.parametrize(
    ("grounding", "status", "param"),
    [
        (Grounding(k=100), 400, "rag.k"),
        (Grounding(filter={"tags": 7}), 400, "rag.filter.tags"),
    ],
)
def test_the_rag_endpoints_refusal_is_the_clients_4xx_naming_the_parameter(
    rag: RAGClient, grounding: Grounding, status: int, param: str
) -> None:
    with pytest.raises(OpenAIError) as err:
        rag.ask("How do I rotate the key?", grounding, None)
    assert (err.value.status, err.value.param) == (status, param)
    assert error_json(err.value)["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ((503, '{"code": 503, "type": "ServiceUnavailableException", "message": "Model rag has no worker"}'), 503),
        ((500, json.dumps(error_json(RequestError("boom", "body", 500)))), 502),
        ((400, '{"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed"}'), 502),
        ((404, '{"code": 404, "type": "ModelNotFoundException", "message": "Model not found: rag"}'), 502),
        ((200, "not json"), 502),
        ((200, "[" * 100_000), 502),  # nested past json.loads' stack: RecursionError, once a crash of the batch
        ((200, '["prompt", "sources"]'), 502),  # JSON, but not an object
        ((200, '{"prompt": "p"}'), 502),  # no sources
        ((200, '{"prompt": "p", "sources": [1]}'), 502),  # sources that are not objects
    ],
)
def test_the_rag_endpoint_failing_is_a_502_or_its_503(
    rag: RAGClient, monkeypatch: pytest.MonkeyPatch, fault: tuple[int, str], status: int
) -> None:
    monkeypatch.setattr(StandIn, "fault", fault)
    with pytest.raises(OpenAIError) as err:
        rag.ask("How do I rotate the key?", Grounding(), None)
    assert err.value.status == status and error_json(err.value)["error"]["type"] == "server_error"


def test_a_rag_endpoint_that_is_down_is_a_502() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OpenAIError) as err:
        RAGClient(f"http://127.0.0.1:{port}/predictions/rag", timeout_s=2).ask("How?", Grounding(), None)
    assert err.value.status == 502 and "not reachable" in str(err.value)
