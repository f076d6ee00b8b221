"""The LLM endpoint in a real TorchServe (SmolLM2, CPU, eager): a streamed and a plain request sent together.

On a free port block (ragserve_ops.testing.serving), so it runs beside `make run` and the other server tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragserve.config import override
from ragserve_ops.server import TorchServe
from ragserve_ops.testing import LLM_DIR, Archive, assert_streamed_and_plain_answers_agree, serving

pytestmark = [pytest.mark.server, pytest.mark.model]

# A long batch delay, so that the two requests below land in one batch.
FRONTEND = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 4, "maxBatchDelay": 1000, "responseTimeout": 120}
PROMPT = "What is the capital of France? Answer in one sentence."


@pytest.fixture(scope="module")
def llm_server(llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TorchServe:
    llm = {"model.path": str(LLM_DIR), "generate.max_new_tokens": 24, "generate.max_new_tokens_limit": 32}
    archives = {"llm": Archive("llm", override({}, {**llm, "runtime.threads": 1}), FRONTEND)}
    with serving(tmp_path_factory.mktemp("torchserve-llm"), archives) as server:
        yield server


def test_streamed_and_plain_requests_are_answered_together(llm_server: TorchServe) -> None:
    assert_streamed_and_plain_answers_agree(llm_server, PROMPT, "Paris")


def test_bad_loop_breaker_gets_400_naming_the_field(llm_server: TorchServe) -> None:
    body = json.dumps({"prompt": PROMPT, "repetition_penalty": 3}).encode()
    status, _, text = llm_server.post("llm", body, "application/json")
    assert status == 400 and json.loads(text)["error"]["param"] == "repetition_penalty"
