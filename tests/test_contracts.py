from __future__ import annotations

import json

import pytest

from ragserve.api.contracts import Query, RequestError, decode_request
from ragserve.api.replies import encode
from ragserve.config import RetrievalConfig

CFG = RetrievalConfig(max_question_chars=100)
JSON = "application/json"


@pytest.mark.parametrize(
    ("request_", "content_type", "expected"),
    [
        ({"body": "What is new?"}, "text/plain", Query("What is new?", 5, False)),
        ({"data": b"  bytes question \n"}, "text/plain", Query("bytes question", 5, False)),
        ({"body": {"question": "Q?", "k": 3}}, JSON, Query("Q?", 3, True)),
        ({"body": b'{"question": "Q?"}'}, JSON, Query("Q?", 5, True)),
        ({"body": b'{"question": "Q?"}'}, "text/plain", Query('{"question": "Q?"}', 5, False)),
        (
            {"question": bytearray(b"form question")},
            "application/x-www-form-urlencoded",
            Query("form question", 5, False),
        ),
    ],
)
def test_valid_requests_decode(request_: dict, content_type: str, expected: Query) -> None:
    assert decode_request(request_, content_type, CFG) == expected


@pytest.mark.parametrize(
    ("request_", "content_type", "field", "status", "message"),
    [
        ({"body": ""}, "text/plain", "body", 400, "empty"),
        ({"body": " \n\t "}, "text/plain", "body", 400, "empty"),
        ({"body": b"\xff\xfe bad"}, "text/plain", "body", 400, "UTF-8"),
        ({"body": b"{not json"}, JSON, "body", 400, "malformed JSON"),
        ({"body": [1, 2]}, JSON, "body", 400, "must be an object"),
        ({"body": {"k": 3}}, JSON, "question", 400, "needs a 'question'"),
        ({"body": {"question": 7}}, JSON, "question", 400, "must be a string"),
        ({"body": {"question": "Q", "k": 0}}, JSON, "k", 400, "1..50"),
        ({"body": {"question": "Q", "k": 51}}, JSON, "k", 400, "1..50"),
        ({"body": {"question": "Q", "k": "3"}}, JSON, "k", 400, "integer"),
        ({"body": {"question": "Q", "k": 2.5}}, JSON, "k", 400, "integer"),
        ({"body": {"question": "Q", "k": True}}, JSON, "k", 400, "integer"),
        ({"body": {"question": "Q", "top": 1}}, JSON, "top", 400, "unknown field"),
        ({"body": "x" * 101}, "text/plain", "body", 413, "limit is 100"),
        ({"body": "nul\x00byte"}, "text/plain", "body", 400, "control characters"),
        ({}, "application/x-www-form-urlencoded", "body", 400, "Content-Type: text/plain"),
        # issue 33: bodies that raised RecursionError or ValueError and failed the whole batch with 503
        ({"body": b"[" * 1000}, JSON, "body", 400, "nested more than 64 levels"),
        ({"body": b'{"q":' * 1000}, JSON, "body", 400, "nested more than 64 levels"),
        ({"body": b"[" * 100_000 + b"]" * 100_000}, JSON, "body", 400, "nested more than 64 levels"),
        ({"body": json.loads("[" * 65 + "]" * 65)}, JSON, "body", 400, "nested more than 64 levels"),  # TorchServe's
        ({"body": b'{"question": "Q", "k": ' + b"9" * 5000 + b"}"}, JSON, "body", 400, "malformed JSON"),
        ({"body": b'{"question": "Q", "k": NaN}'}, JSON, "k", 400, "integer"),
        ({"body": b'{"question": "\\ud800 lone"}'}, JSON, "question", 400, "lone surrogate"),
        (
            {"body": {"question": "Q", "filter": {"published_after": "2024-13-99"}}},
            JSON,
            "filter.published_after",
            400,
            "must be a date",
        ),
        (
            {"body": {"question": "Q", "filter": {"published_before": "2023-02-29"}}},
            JSON,
            "filter.published_before",
            400,
            "must be a date",
        ),
    ],
)
def test_bad_requests_raise_an_error_naming_the_field(
    request_: dict, content_type: str, field: str, status: int, message: str
) -> None:
    with pytest.raises(RequestError, match=message) as caught:
        decode_request(request_, content_type, CFG)
    reply = encode(caught.value)
    error = json.loads(reply.body)["error"]
    assert (error["param"], reply.status, reply.content_type) == (field, status, "application/json")
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_worker_threads_share_the_cores_among_workers_unless_omp_num_threads_says() -> None:
    from ragserve.runtime import worker_threads

    assert worker_threads({"minWorkers": 2}, cores=2, env={}) == 1
    assert worker_threads({"minWorkers": 1}, cores=16, env={}) == 16
    assert worker_threads({"minWorkers": 4}, cores=2, env={}) == 1  # never 0
    assert worker_threads({}, cores=8, env={}) == 8
    assert worker_threads({"minWorkers": 2}, cores=2, env={"OMP_NUM_THREADS": "2"}) == 2
    assert worker_threads({"minWorkers": 2}, cores=8, env={"OMP_NUM_THREADS": ""}) == 4
