"""One turn of TorchServe's continuous batching for the LLM endpoint: new requests join the in-flight decode,
every request in the turn gets its reply.

Public names: Job, admit, advance, answer_body.
The frontend (continuousBatching: true) sends every running request id on each turn, a new one with its
body and a running one without; jobs (TorchServe's context.cache) maps a running id to its Job. A Reply's
`more` becomes the frontend's ts_stream_next: True = more follows, False = the last piece, None = the whole
response in one (a request that ends on its first turn: the frontend sends no headers for a lone last piece).
Streamed requests get their new text each turn; plain ones get "" until their whole answer (text or JSON)
at the end, so their client reads one body (chunked). No TorchServe imports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ragserve.api.contracts import LLMQuery, RequestError
from ragserve.api.openai_chat import ChatQuery, ChatReply
from ragserve.api.replies import JSON, TEXT, Reply, encode, error_json
from ragserve.llm.generation import Completion
from ragserve.llm.inflight import InFlight, Update

POLL_S = 1.0  # longest wait for news in one turn; a turn returns as soon as any request has news


@dataclass
class Job:
    stream: bool
    as_json: bool
    responded: bool = False  # the frontend has sent this request's status and headers
    chat: ChatReply | None = None  # an OpenAI chat completion: its events or JSON


def admit(query: LLMQuery, inflight: InFlight) -> LLMQuery:
    """The query, or RequestError (400) naming the field whose setting the in-flight decode cannot honour."""
    name = inflight.unsupported_field(query.sampling)
    if name:
        raise RequestError(
            f"'{name}' is not available with in-flight batching (handler.decode.continuous_batching: true): one decode "
            "serves every request with the endpoint's sampling settings; leave the field out",
            name,
        )
    return query


def advance(inflight: InFlight, jobs: dict[str, Job], request_ids: list[str], queries: list) -> list[Reply]:
    """Submit the new queries, wait for news, and return one Reply per request id.

    queries[i]: an LLMQuery (new), a RequestError (new, refused), a finished reply (dict: GET v1/models)
    or None (running, its body not resent).
    """
    for key in set(jobs) - set(request_ids):  # the frontend dropped it: its client has gone
        inflight.cancel(key)
        del jobs[key]
    for key, query in zip(request_ids, queries, strict=True):
        if isinstance(query, LLMQuery):
            inflight.submit(key, query.prompt, query.sampling)
            chat = ChatReply(query) if isinstance(query, ChatQuery) else None
            jobs[key] = Job(query.stream, query.as_json, chat=chat)
    updates = inflight.poll(POLL_S) if jobs else {}
    return [_reply(jobs, key, query, updates.get(key)) for key, query in zip(request_ids, queries, strict=True)]


def answer_body(completion: Completion, as_json: bool) -> tuple[str, str]:
    """A whole answer as (body, content type): the text, or {"answer", "prompt_tokens", "completion_tokens"}."""
    if not as_json:
        return completion.text, TEXT
    fields = {"answer": completion.text, "prompt_tokens": completion.prompt_tokens}
    return json.dumps({**fields, "completion_tokens": completion.completion_tokens}), JSON


def _reply(jobs: dict[str, Job], key: str, query, update: Update | None) -> Reply:
    if not isinstance(query, LLMQuery | None):  # a RequestError or a finished reply (GET v1/models)
        return encode(query)
    job = jobs[key]
    update = update or Update("")
    done = update.completion is not None or update.error is not None
    first, job.responded = not job.responded, True
    more = None if first and done else not done
    if done:
        del jobs[key]
    if update.error is not None:  # mid-answer the status is already sent: the error ends the body
        body = json.dumps(error_json(RequestError(f"generation failed: {update.error}", "body", 500)))
        return Reply(body, JSON, 500 if first else 200, more)
    if job.chat is not None:
        body = job.chat.piece(update.piece) if job.stream else ""
        body += job.chat.end(update.completion) if done else ""
        return Reply(body, job.chat.content_type, more=more)
    if job.stream:
        return Reply(update.piece, TEXT, more=more)
    if not done:
        return Reply("", JSON if job.as_json else TEXT, more=more)
    return Reply(*answer_body(update.completion, job.as_json), more=more)
