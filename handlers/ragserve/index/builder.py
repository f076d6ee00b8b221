"""The index builder, write side: read the source, embed only what is new, write an immutable version, publish it.

Public names: refresh, Refresh, RefreshBusy, build_in_memory, builds_windows, write_version, content_sha256, kept_note.
refresh(cfg, encoder) re-reads cfg.corpus.source: a crawl that revalidates the live version's pages
(conditional requests, crawl.py), or the local files. Every page is split again (cheap); every chunk,
sentence window and page record text goes through the embedding cache (embedding/cache.py), so only new
text reaches the encoder, in one call per build (an Encoder in process, or embedding/distributed.py's
RayEncoder on a Ray cluster). The version id hashes the line (line.identity) and each page's content
hash: a source that has not changed gives the live version's id, and nothing is embedded or written.
A new version is written into a staging folder (every file fsynced, manifest last), renamed into
versions/ and published (versions.py); workers that follow the line swap to it between batches (follow.py).
A build killed midway leaves its staging folder; the next refresh deletes it first. A version a rollback held
is not published until the source changes or the hold is lifted (release=True, build_index.py --release).
One refresh per line at a time: a second one raises RefreshBusy at once (cron may start the next before the
last has finished).
Each refresh writes LAST_REFRESH at the line's root: when it ran, the version it found, the known pages it
kept because their server was failing or rate-limiting (crawl.py's Page.kept; in the summary and in
build_index.py --status), and every page's validators (ETag, Last-Modified) with its content hash: a page
whose validators changed while its text did not gives no new version, yet the next refresh must send the
new ones or it downloads that page in full every time. _known_pages lays them over the live version's
sources.jsonl where the content hash matches (versions stay immutable; a rollback's older text keeps its
own). Nothing here runs in a TorchServe worker.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
from langchain_core.documents import Document

from ragserve.config import Config
from ragserve.embedding.cache import EmbeddingCache, cache_key
from ragserve.index.line import FORMAT_VERSION, IndexLine, identity, line_key, read_jsonl, scheme_of, windows_of
from ragserve.index.pages import PAGES_FOLDER, Pages, page_records
from ragserve.index.store import IndexVersion, sha256_file
from ragserve.index.vectorsets import embed_with_progress
from ragserve.index.versions import (
    LAST_REFRESH,
    clean_staging,
    fsync,
    last_refresh,
    lift_holds,
    line_lock,
    prune,
    publish_locked,
    utc_now,
    write_holds,
    write_synced,
)
from ragserve.index.windows import WindowVectors, sentence_windows
from ragserve.ingest.corpus import documents, read_pages, split
from ragserve.ingest.crawl import Page

if TYPE_CHECKING:
    from ragserve.embedding.encoder import Encoder

logger = logging.getLogger(__name__)
SOURCE_FIELDS = ("url", "title", "text", "metadata", "links", "etag", "last_modified", "fetched")


class RefreshBusy(RuntimeError):
    """Another refresh of the same line holds its lock."""


@dataclass
class Refresh:
    """What one refresh did."""

    version: str
    previous: str | None
    pages: int
    chunks: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    revalidated: int = 0  # pages a conditional request (304) let us reuse without downloading
    kept: dict[str, str] = field(default_factory=dict)  # known pages kept through a failing or limiting server: why
    embedded: dict[str, int] = field(default_factory=dict)  # texts the encoder computed: chunks, pages, windows
    written: bool = False  # a new version folder was written
    published: bool = False  # CURRENT moved to `version`
    held: str | None = None  # `version` was not published: a rollback moved away from it (HOLD)
    seconds: float = 0.0

    def summary(self) -> str:
        embedded = ", ".join(f"{n} {what}" for what, n in self.embedded.items()) or "nothing"
        state = "published" if self.published else "unchanged, still live" if not self.written else "written"
        if self.held:
            state = (
                f"held: rolled back from {self.held}; run `make refresh RELEASE=1` / build_index.py --release to lift"
            )
        kept = f"; {kept_note(self.kept)}" if self.kept else ""
        return (
            f"version {self.version} ({state}; previous {self.previous}): {self.pages} pages "
            f"({len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
            f"{self.revalidated} not modified), {self.chunks} chunks; embedded {embedded}; {self.seconds:.1f} s{kept}"
        )


def kept_note(kept: dict[str, str]) -> str:
    """'2 pages kept because their server was failing or rate-limiting: URL (HTTP 429), URL (ReadTimeout...)'."""
    pages = f"{len(kept)} page kept because its" if len(kept) == 1 else f"{len(kept)} pages kept because their"
    return f"{pages} server was failing or rate-limiting: " + ", ".join(
        f"{url} ({why:.80})" for url, why in kept.items()
    )


def refresh(cfg: Config, encoder: Callable[[], Encoder], publish_it: bool = True, release: bool = False) -> Refresh:
    """Re-read cfg's source and make its line's live version match it (see the module docstring).

    encoder: called only if some text is not in the embedding cache. release: lift a rollback's hold first."""
    line = IndexLine.of(cfg)
    start = time.perf_counter()
    with _refresh_lock(line):
        clean_staging(line)
        if release:
            lift_holds(line)
        previous = line.current()
        known = _known_pages(line, previous)
        pages = read_pages(cfg.corpus, known)
        version = version_id(cfg, pages)
        report = Refresh(version, previous, len(pages), 0, revalidated=sum(page.revalidated for page in pages))
        report.kept = {page.url: page.kept for page in pages if page.kept}
        _diff(report, known, pages)
        folder = line.folder(version)
        if publish_it and version in line.holds():
            report.held = version  # nothing to build: it will not be published
            built = (folder / "manifest.json").is_file()  # it may have been pruned since
            report.chunks = json.loads((folder / "manifest.json").read_text())["count"] if built else 0
        elif not (folder / "manifest.json").is_file():
            cache = EmbeddingCache(Path(cfg.index.dir) / "embed-cache" / f"{cache_key(cfg.embedding)}.sqlite", encoder)
            try:
                chunks = split(documents(pages), cfg.corpus, cfg.embedding.model_path)
                index, report.embedded = build_in_memory(chunks, cache, cfg)
            finally:
                cache.close()
            report.chunks = len(index)
            head = {**_manifest_head(cfg, version), "changes": _changes(report)}
            head["build_s"] = round(time.perf_counter() - start, 1)  # with the embedding cache as it was
            write_version(folder, index, pages, head)
            report.written = True
        else:
            report.chunks = json.loads((folder / "manifest.json").read_text())["count"]
        if publish_it and not report.held:
            _publish_unless_held(line, report)
        prune(line, cfg.index.keep_versions)
        _write_last_refresh(line, report, pages)
    report.seconds = time.perf_counter() - start
    logger.info("refresh of %s: %s", line.root, report.summary())
    return report


def build_in_memory(
    chunks: list[Document], encoder: Encoder | EmbeddingCache, cfg: Config | None = None
) -> tuple[IndexVersion, dict[str, int]]:
    """An IndexVersion in memory: the chunks with their page level (and sentence windows when cfg uses them).

    With an EmbeddingCache for encoder, every text it lacks is embedded first, in one encoder call, and the
    result says how many texts of each kind that was ({} otherwise)."""
    cfg = cfg or Config()
    cached = isinstance(encoder, EmbeddingCache)
    size, stride = cfg.index.window_sentences, cfg.index.window_stride
    windows, pooled_new = None, 0
    with_windows = builds_windows(cfg, len(chunks))
    if with_windows and cfg.index.window_mode == "pooled":  # first: its one pass embeds the chunks too
        before = encoder.embedded if cached else 0
        windows = WindowVectors.embed(chunks, encoder, size, stride, "pooled")
        pooled_new = encoder.embedded - before if cached else 0
    embedded = encoder.fill(_texts(chunks, cfg, with_windows)) if cached else {}
    if windows is not None and cached:
        embedded = {"chunks with pooled windows": pooled_new, **embedded}
    vectors = embed_with_progress(encoder, [chunk.page_content for chunk in chunks], "chunks")
    index = IndexVersion.from_vectors(chunks, vectors, cfg.index.metric, scheme_of(cfg), cfg=cfg.index)
    index.pages = Pages.build(chunks, encoder, scheme_of(cfg))
    if with_windows:
        index.windows = windows or WindowVectors.embed(chunks, encoder, size, stride)
    return index, embedded


def builds_windows(cfg: Config, chunks: int) -> bool:
    """Whether a version of this many chunks gets sentence windows: the config uses them, and the version is not
    larger than index.window_max_chunks (past it, their encoder passes cost more than they were measured to give)."""
    if not windows_of(cfg):
        return False
    if chunks > cfg.index.window_max_chunks:
        logger.info("no sentence windows: %d chunks > index.window_max_chunks %d", chunks, cfg.index.window_max_chunks)
        return False
    return True


def _texts(chunks: Sequence[Document], cfg: Config, with_windows: bool) -> dict[str, list[str]]:
    """Every text build_in_memory embeds, by kind, as Pages.build and WindowVectors.embed make them (a
    text missed here is still embedded there, only not in the one call)."""
    texts = {
        "chunks": [chunk.page_content for chunk in chunks],
        "page records": [text for record in page_records(chunks) for text in record.dense_texts()],
    }
    if with_windows and cfg.index.window_mode == "encoded":
        size, stride = cfg.index.window_sentences, cfg.index.window_stride
        texts["sentence windows"] = [w for chunk in chunks for w in sentence_windows(chunk.page_content, size, stride)]
    return texts


def version_id(cfg: Config, pages: Sequence[Page]) -> str:
    """The line plus every page's source and content hash, in order: the same content, the same id."""
    content = [[page.url, content_sha256(page)] for page in pages]
    return hashlib.sha256(json.dumps([line_key(cfg), content]).encode()).hexdigest()[:16]


def content_sha256(page: Page) -> str:
    """What a page says: title, metadata and text (not when or how it was fetched)."""
    return hashlib.sha256(json.dumps([page.title, page.metadata, page.text], sort_keys=True).encode()).hexdigest()


def write_version(folder: Path, index: IndexVersion, pages: Sequence[Page], manifest: dict[str, Any]) -> None:
    """Write every file into a staging folder, the manifest last, then rename it to folder (atomic)."""
    staging = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    faiss.write_index(index.store.index, str(staging / "index.faiss"))
    _write_jsonl(
        staging / "chunks.jsonl", ({"text": d.page_content, "metadata": d.metadata} for d in index.documents())
    )
    rows = ({**{name: getattr(page, name) for name in SOURCE_FIELDS}, "sha256": content_sha256(page)} for page in pages)
    _write_jsonl(staging / "sources.jsonl", rows)
    saved = index.bm25.save(staging / index.bm25.scheme.folder)
    saved += index.pages.save(staging / PAGES_FOLDER) if index.pages is not None else []
    if index.windows is not None:
        saved += index.windows.save(staging / manifest["identity"]["windows"])
    files = ["index.faiss", "chunks.jsonl", "sources.jsonl", *(str(p.relative_to(staging)) for p in saved)]
    manifest = {**manifest, "count": len(index), "metric": index.metric}
    manifest["sha256"] = {name: sha256_file(staging / name) for name in files}
    for name in files:  # on disk before the manifest that vouches for them
        fsync(staging / name)
    with open(staging / "manifest.json", "w", encoding="utf-8") as f:  # last: it makes the folder a version
        f.write(json.dumps(manifest, indent=2))
        f.flush()
        os.fsync(f.fileno())
    shutil.rmtree(folder, ignore_errors=True)  # a folder without a manifest: a crash left it, nobody reads it
    staging.replace(folder)
    fsync(folder.parent)  # the rename itself


def _publish_unless_held(line: IndexLine, report: Refresh) -> None:
    """Publish report.version unless a rollback holds it (checked under the lock: one may have landed during the
    build). A version not held means the source changed since the rollback: its holds are lifted."""
    with line_lock(line):
        holds = line.holds()
        if report.version in holds:
            report.held = report.version
            logger.warning("refresh of %s: %s is held (%s)", line.root, report.version, holds[report.version])
            return
        if holds:
            write_holds(line, [])
            logger.info("refresh of %s: the source changed; lifted the hold on %s", line.root, ", ".join(holds))
        if line.current() != report.version:
            publish_locked(line, report.version, "refresh")
            report.published = True


def _manifest_head(cfg: Config, version: str) -> dict[str, Any]:
    return {
        "version": version,
        "line": line_key(cfg),
        "identity": identity(cfg),
        "format": FORMAT_VERSION,
        "source": cfg.corpus.source,
        "created": utc_now(),
    }


def _changes(report: Refresh) -> dict[str, Any]:
    fields = ("previous", "added", "changed", "removed", "revalidated", "kept", "embedded")
    return {name: getattr(report, name) for name in fields}


def _known_pages(line: IndexLine, version: str | None) -> dict[str, Page]:
    """The live version's pages by URL (or path), to revalidate and to compare against."""
    if version is None or not (line.folder(version) / "sources.jsonl").is_file():
        return {}
    rows = read_jsonl(line.folder(version) / "sources.jsonl")
    pages = [Page(**{**{n: row.get(n) for n in SOURCE_FIELDS}, "links": tuple(row.get("links") or ())}) for row in rows]
    newer = (last_refresh(line) or {}).get("validators", {})
    for i, page in enumerate(pages):  # validators a refresh saw after this version was written, for the same text
        seen = newer.get(page.url)
        if seen and seen.get("sha256") == content_sha256(page):
            pages[i] = dataclasses.replace(page, etag=seen.get("etag"), last_modified=seen.get("last_modified"))
    return {page.url: page for page in pages}


def _write_last_refresh(line: IndexLine, report: Refresh, pages: Sequence[Page]) -> None:
    validators = {
        page.url: {"sha256": content_sha256(page), "etag": page.etag, "last_modified": page.last_modified}
        for page in pages
        if page.etag or page.last_modified
    }
    record = {"at": utc_now(), "version": report.version, "kept": report.kept, "validators": validators}
    write_synced(line.root / LAST_REFRESH, json.dumps(record, ensure_ascii=False))


def _diff(report: Refresh, known: dict[str, Page], pages: Sequence[Page]) -> None:
    now = {page.url: page for page in pages}
    report.added = [url for url in now if url not in known]
    report.changed = [url for url in now if url in known and content_sha256(known[url]) != content_sha256(now[url])]
    report.removed = [url for url in known if url not in now]


@contextmanager
def _refresh_lock(line: IndexLine) -> Iterator[None]:
    line.root.mkdir(parents=True, exist_ok=True)
    with open(line.root / "refresh.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            lock.seek(0)
            raise RefreshBusy(f"a refresh of {line.root} is already running ({lock.read().strip()})") from err
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} since {utc_now()}")
        lock.flush()
        yield


def _write_jsonl(path: Path, rows: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
