"""A refresh goes live in a running TorchServe with no failed request: a copy of the blog mirror is served
on loopback, indexed, one page is edited, `scripts/build_index.py` (what `make refresh` runs) embeds only
that page's text and publishes, and the workers swap to the new version while 16 clients keep asking."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from ragserve_ops.server import TorchServe
from ragserve_ops.testing import HF_SITE, MODEL_DIR, ROOT, Archive, serve_directory, serving

pytestmark = [pytest.mark.server, pytest.mark.model]

FRONTEND = {"minWorkers": 2, "maxWorkers": 2, "batchSize": 4, "maxBatchDelay": 10, "responseTimeout": 120}
NEW_SENTENCE = "In December 2026 Meta retrained Llama 3 on the Okapi-7 corpus of weather reports."
QUESTION = json.dumps({"question": "Which corpus was Llama 3 retrained on in December 2026?", "k": 5}).encode()
CLIENTS = 16


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    """A writable copy of the mirror, served on 127.0.0.1: (its folder, its URL)."""
    if not HF_SITE.is_dir():
        pytest.skip(f"{HF_SITE} is absent: the shared blog mirror is needed for the refresh test")
    folder = tmp_path_factory.mktemp("site") / "site"
    shutil.copytree(HF_SITE, folder)
    server, url = serve_directory(folder)
    yield folder, url
    server.shutdown()


@pytest.fixture(scope="module")
def server(site, model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    _, url = site
    handler = {
        "url_to_scrape": f"{url}/blog/llama3",
        "model_path": str(MODEL_DIR),
        "compile": False,
        "corpus": {"max_depth": 1, "max_pages": 2, "chunk_size": 1000, "chunk_overlap": 100},
        "index": {"follow_s": 0.5},
    }
    # Both workers READY before the load starts: each must swap to the new version.
    archives = {"rag": Archive("rag", handler, FRONTEND)}
    with serving(tmp_path_factory.mktemp("refresh-server"), archives, all_workers=True) as server:
        yield server


def ask(server: TorchServe) -> dict:
    status, _, text = server.post("rag", QUESTION, "application/json")
    assert status == 200, text
    return json.loads(text)


def refresh(workdir: Path) -> str:
    """`make refresh` for the test's yaml; its stderr (the summary line)."""
    cmd = [sys.executable, str(ROOT / "scripts/build_index.py"), "--config", str(workdir / "rag-test.yaml")]
    done = subprocess.run(cmd + ["--root", str(workdir)], capture_output=True, text=True, timeout=600, check=True)
    return done.stderr


def test_an_edited_page_is_retrieved_after_the_swap_with_no_failed_request(server: TorchServe, site) -> None:
    folder, url = site
    before = ask(server)
    assert NEW_SENTENCE not in before["prompt"]
    page = folder / "blog" / "llama3" / "index.html"
    html = page.read_text()
    anchor = "<p>Llama 3 comes in two sizes"
    assert anchor in html
    page.write_text(html.replace(anchor, f"<p>{NEW_SENTENCE}</p>\n{anchor}", 1))
    later = time.time() + 10  # If-Modified-Since has 1 s resolution: the edit must look newer than the crawl
    os.utime(page, (later, later))

    statuses: Counter = Counter()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status, _, _ = server.post("rag", QUESTION, "application/json", timeout_s=60)
                statuses[status] += 1
            except Exception as err:  # a refused connection or a timeout is a failed request too
                statuses[type(err).__name__] += 1

    clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(1)  # the load is on before the refresh starts
        summary = refresh(server.workdir)
        published = time.monotonic()
        while NEW_SENTENCE not in (reply := ask(server))["prompt"]:
            assert time.monotonic() - published < 60, "the workers did not swap within 60 s"
            time.sleep(0.2)
        time.sleep(1)  # and the load stays on after the swap
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=120)
    assert set(statuses) == {200} and statuses[200] > CLIENTS, statuses  # no failed or non-2xx request
    assert reply["index"]["version"] != before["index"]["version"]
    versions = server.workdir / "index"
    (line,) = [p for p in versions.iterdir() if (p / "CURRENT").exists()]
    manifest = json.loads((line / "versions" / reply["index"]["version"] / "manifest.json").read_text())
    changes = manifest["changes"]
    assert changes["changed"] == [f"{url}/blog/llama3"] and changes["added"] == changes["removed"] == []
    assert 0 < changes["embedded"]["chunks"] < manifest["count"] / 2, summary  # that page's new chunks only
    assert changes["revalidated"] == 1  # the other page: 304 Not Modified, not downloaded
