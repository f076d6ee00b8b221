"""Incremental refresh (builder.py) over local files and a crawled site, and a worker's swap (follow.py).

Real encoder, real files, a real HTTP server on loopback that counts its 200s and 304s; no TorchServe
(tests/test_refresh_server.py swaps a running one under load)."""

from __future__ import annotations

import fcntl
import functools
import http.server
import json
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragserve.config import Config
from ragserve.index.builder import RefreshBusy, refresh
from ragserve.index.follow import Follower
from ragserve.index.line import IndexLine
from ragserve.index.store import load_current
from ragserve.index.versions import rollback
from ragserve.retrieval.pipeline import RAGPipeline
from ragserve.retrieval.queries import Query

FIXTURES = Path(__file__).resolve().parent / "fixtures"
pytestmark = pytest.mark.model
NEW_SENTENCE = "The zebra server was renamed Okapi in the autumn release."


class Counting(http.server.SimpleHTTPRequestHandler):
    """Python's file server (Last-Modified and If-Modified-Since, no ETag), counting each status it sends."""

    statuses: Counter
    failing: set[str]  # paths answered with 503, as a server under maintenance does

    def do_GET(self) -> None:
        if self.path in self.failing:
            self.send_error(503)
        else:
            super().do_GET()

    def send_response(self, code: int, message: str | None = None) -> None:
        self.statuses[code] += 1
        super().send_response(code, message)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path, Counter, set[str]]]:
    """A copy of tests/fixtures/site, served on 127.0.0.1: (base URL, its folder, statuses sent, failing paths)."""
    folder = tmp_path / "site"
    shutil.copytree(FIXTURES / "site", folder)
    statuses: Counter = Counter()
    failing: set[str] = set()
    handler_class = type("H", (Counting,), {"statuses": statuses, "failing": failing})
    handler = functools.partial(handler_class, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder, statuses, failing
    server.shutdown()


def config(source: str, index_dir: Path, model_dir: Path, **index: object) -> Config:
    return Config.from_mapping(
        {
            "corpus": {"source": source, "chunk_size": 200, "chunk_overlap": 20, "max_depth": 2},
            "embedding": {"model_path": str(model_dir)},
            "compile": {"enabled": False},
            "index": {"dir": str(index_dir), "follow_s": 0, **index},
        },
        index_dir,
    )


def edit(path: Path, old: str, new: str) -> None:
    """Change a served file; its mtime moves 10 s on, so If-Modified-Since (1 s resolution) sees the edit."""
    path.write_text(path.read_text().replace(old, new))
    later = time.time() + 10
    os.utime(path, (later, later))


def texts_in(cfg: Config, encoder) -> str:
    return "\n".join(doc.page_content for doc in load_current(cfg, encoder).documents())


def test_a_local_edit_embeds_only_that_page_and_a_removed_file_disappears(tmp_path: Path, model_dir, encoder) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(FIXTURES / "docs", docs)
    cfg = config(str(docs), tmp_path / "index", model_dir)
    first = refresh(cfg, lambda: encoder)
    assert first.published and first.previous is None and first.embedded["chunks"] == first.chunks

    (docs / "tokens.md").write_text((docs / "tokens.md").read_text() + f"\n{NEW_SENTENCE}\n")
    (docs / "notes.txt").unlink()
    (docs / "added.md").write_text("# Added\nA page about the quokka mascot.\n")
    embedded: list[str] = []
    real = type(encoder).embed

    def spy(self, texts: list[str]):
        embedded.extend(texts)
        return real(self, texts)

    type(encoder).embed = spy
    try:
        second = refresh(cfg, lambda: encoder)
    finally:
        type(encoder).embed = real
    assert (second.added, second.changed, second.removed) == (["docs/added.md"], ["docs/tokens.md"], ["docs/notes.txt"])
    assert second.published and second.previous == first.version != second.version
    index = load_current(cfg, encoder)
    new_chunks = [
        d.page_content for d in index.documents() if d.metadata["source"] in ("docs/tokens.md", "docs/added.md")
    ]
    untouched = [d.page_content for d in index.documents() if d.metadata["source"] == "docs/workers.md"]
    assert second.embedded["chunks"] <= len(new_chunks) and not set(untouched) & set(embedded)
    assert NEW_SENTENCE in texts_in(cfg, encoder) and "docs/notes.txt" not in {
        d.metadata["source"] for d in index.documents()
    }


def test_a_refresh_with_nothing_changed_embeds_nothing_and_writes_nothing(tmp_path: Path, model_dir, encoder) -> None:
    cfg = config(str(FIXTURES / "docs"), tmp_path / "index", model_dir)
    first = refresh(cfg, lambda: encoder)
    before = {p: p.stat().st_mtime_ns for p in IndexLine.of(cfg).folder(first.version).rglob("*")}
    again = refresh(cfg, lambda: pytest.fail("the encoder was loaded"))
    assert again.version == first.version and not again.written and not again.published
    assert (again.added, again.changed, again.removed) == ([], [], [])
    assert {p: p.stat().st_mtime_ns for p in IndexLine.of(cfg).folder(first.version).rglob("*")} == before


def test_a_recrawl_revalidates_with_conditional_requests_and_embeds_only_the_edited_page(
    site: tuple[str, Path, Counter, set[str]], tmp_path: Path, model_dir, encoder
) -> None:
    url, folder, statuses, _ = site
    cfg = config(f"{url}/guide/", tmp_path / "index", model_dir)
    first = refresh(cfg, lambda: encoder)
    pages = first.pages
    assert statuses[200] == pages + 1 and statuses[304] == 0  # + data.json, linked but not HTML (skipped)

    statuses.clear()
    same = refresh(cfg, lambda: pytest.fail("the encoder was loaded"))
    assert same.version == first.version and same.revalidated == pages and statuses[304] == pages
    assert statuses[200] == 1  # data.json again: no page was downloaded again

    statuses.clear()
    time.sleep(1.1)  # fetch times have 1 s resolution: the edited page's must be later than the others'
    edit(folder / "guide" / "cats.html", "fifteen hours a day", f"fifteen hours a day. {NEW_SENTENCE}")
    edited = refresh(cfg, lambda: encoder)
    assert statuses[200] == 1 + 1 and statuses[304] == pages - 1
    assert edited.changed == [f"{url}/guide/cats.html"] and edited.published
    assert 0 < edited.embedded["chunks"] <= 2  # the cats page's chunks, nothing else
    index = load_current(cfg, encoder)
    cats = [d for d in index.documents() if d.metadata["source"] == f"{url}/guide/cats.html"]
    dogs = [d for d in index.documents() if d.metadata["source"] == f"{url}/guide/dogs.html"]
    assert NEW_SENTENCE in cats[0].page_content and cats[0].metadata["fetched"] > dogs[0].metadata["fetched"]
    sources = [json.loads(line) for line in (IndexLine.of(cfg).folder(edited.version) / "sources.jsonl").open()]
    assert all(row["last_modified"] and row["fetched"] for row in sources)


def test_a_page_that_is_gone_is_removed_and_one_that_errors_is_kept(
    site: tuple[str, Path, Counter, set[str]], tmp_path: Path, model_dir, encoder
) -> None:
    url, folder, _, failing = site
    cfg = config(f"{url}/guide/", tmp_path / "index", model_dir)
    refresh(cfg, lambda: encoder)
    (folder / "guide" / "birds.html").unlink()  # linked from the index page, now 404
    failing.add("/guide/dogs.html")  # 503: down for now, not gone
    report = refresh(cfg, lambda: encoder)
    assert report.removed == [f"{url}/guide/birds.html"] and report.embedded["chunks"] == 0
    assert f"{url}/guide/dogs.html" in {d.metadata["source"] for d in load_current(cfg, encoder).documents()}


def test_rollback_publishes_the_previous_version_and_old_versions_are_pruned(
    tmp_path: Path, model_dir, encoder
) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(FIXTURES / "docs", docs)
    cfg = config(str(docs), tmp_path / "index", model_dir, keep_versions=2)
    line = IndexLine.of(cfg)
    versions = []
    for n in range(3):
        (docs / "tokens.md").write_text((docs / "tokens.md").read_text() + f"\nEdit number {n}.\n")
        versions.append(refresh(cfg, lambda: encoder).version)
    assert line.current() == versions[2] and line.versions() == versions[1:]  # the oldest was pruned
    assert rollback(line) == versions[1] and line.current() == versions[1]
    assert "Edit number 2" not in texts_in(cfg, encoder)
    assert [entry["reason"] for entry in line.history()][-1] == f"rollback from {versions[2]}"


def test_a_second_refresh_while_one_runs_says_so_at_once(tmp_path: Path, model_dir, encoder) -> None:
    cfg = config(str(FIXTURES / "docs"), tmp_path / "index", model_dir)
    line = IndexLine.of(cfg)
    line.root.mkdir(parents=True)
    with open(line.root / "refresh.lock", "a+") as held:  # what a running refresh holds
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(RefreshBusy, match="already running"):
            refresh(cfg, lambda: encoder)
        assert time.monotonic() - started < 5
    assert refresh(cfg, lambda: encoder).published  # the lock is free again


def test_a_following_pipeline_swaps_to_a_published_version_and_keeps_serving_a_broken_one(
    tmp_path: Path, model_dir, encoder
) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(FIXTURES / "docs", docs)
    cfg = config(str(docs), tmp_path / "index", model_dir)
    refresh(cfg, lambda: encoder)
    pipeline = RAGPipeline(cfg, encoder, load_current(cfg, encoder))
    follower: Follower = pipeline.follow(IndexLine.of(cfg), every_s=0)  # checked by hand below
    question = Query(question="What was the zebra server renamed?", k=1, as_json=True)
    assert NEW_SENTENCE not in pipeline.answer([question]).results[0].prompt

    (docs / "tokens.md").write_text((docs / "tokens.md").read_text() + f"\n{NEW_SENTENCE}\n")
    new = refresh(cfg, lambda: encoder).version
    assert follower.check() and pipeline.answer([question]).results[0].index["version"] == new
    assert NEW_SENTENCE in pipeline.answer([question]).results[0].prompt

    (docs / "tokens.md").write_text((docs / "tokens.md").read_text() + "\nOne more line.\n")
    broken = refresh(cfg, lambda: encoder).version
    (IndexLine.of(cfg).folder(broken) / "chunks.jsonl").write_text("tampered\n")
    assert not follower.check()  # logged; the worker keeps the version it has
    result = pipeline.answer([question]).results[0]
    assert result.index["version"] == new and NEW_SENTENCE in result.prompt
