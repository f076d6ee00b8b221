"""An index line's version lifecycle (issue 33, items 4-8): the start-up version is freed after a swap, a failed
load is retried, a rollback holds, every writer of CURRENT takes the line's lock, a killed build's staging folder
is cleaned, and pruning goes by last publish.

Fast: the tiny random MPNet (no download) where a real build is needed, bare version folders where it is not."""

from __future__ import annotations

import fcntl
import gc
import json
import os
import shutil
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ragserve.config import CompileConfig, Config
from ragserve.embedding.encoder import Encoder
from ragserve.index import versions
from ragserve.index.builder import refresh
from ragserve.index.follow import Follower, Live
from ragserve.index.line import IndexLine
from ragserve.index.store import load_current
from ragserve.index.versions import prune, publish, rollback
from ragserve.retrieval.pipeline import RAGPipeline
from ragserve_ops.testing import build_tiny_mpnet

DOCS = Path(__file__).resolve().parent / "fixtures" / "docs"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet"))


@pytest.fixture(scope="module")
def encoder(tiny_dir: Path) -> Encoder:
    return Encoder(config(DOCS, Path("/nonexistent"), tiny_dir).embedding, CompileConfig(enabled=False))


def config(source: Path, index_dir: Path, model_dir: Path, **index: object) -> Config:
    return Config.from_mapping(
        {
            "corpus": {"source": str(source), "chunk_size": 200, "chunk_overlap": 20},
            "embedding": {"model_path": str(model_dir), "batch_size": 8},
            "compile": {"enabled": False},
            "index": {"dir": str(index_dir), "follow_s": 0, **index},
        },
        index_dir,
    )


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    shutil.copytree(DOCS, folder)
    return folder


def built(tmp_path: Path, docs: Path, tiny_dir: Path, encoder) -> tuple[Config, IndexLine, str]:
    """The docs' config, its line and the version its first refresh published."""
    cfg = config(docs, tmp_path / "index", tiny_dir)
    return cfg, IndexLine.of(cfg), refresh(cfg, lambda: encoder).version


def edit(docs: Path, line: str) -> None:
    (docs / "tokens.md").write_text((docs / "tokens.md").read_text() + f"\n{line}\n")


def bare_line(tmp_path: Path, *versions: str) -> IndexLine:
    """A line whose versions are bare folders with a manifest, written a minute apart (oldest first)."""
    line = IndexLine(tmp_path / "line")
    for n, version in enumerate(versions):
        folder = line.folder(version)
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"version": version}))
        stamp = time.time() - 600 + 60 * n
        os.utime(folder / "manifest.json", (stamp, stamp))
    return line


# 4
def test_the_start_up_version_is_freed_once_the_follower_swaps(tmp_path: Path, docs: Path, tiny_dir, encoder) -> None:
    cfg = config(docs, tmp_path / "index", tiny_dir)
    first = refresh(cfg, lambda: encoder).version
    pipeline = RAGPipeline(cfg, encoder, load_current(cfg, encoder))
    start_up = weakref.ref(pipeline.retriever.index)
    follower = pipeline.follow(IndexLine.of(cfg), every_s=0)
    edit(docs, "A second version.")
    second = refresh(cfg, lambda: encoder).version
    assert second != first and follower.check()
    assert pipeline.live.version == second and pipeline.index.version == second
    gc.collect()
    assert start_up() is None  # nothing but a batch in flight may hold the version it replaced


# 5
def test_a_version_that_failed_to_load_is_retried_after_another_swap_and_a_rollback(tmp_path: Path) -> None:
    line = bare_line(tmp_path, "v1", "v2", "v3")
    publish(line, "v1", "test")
    broken = {"v2"}

    def load(version: str) -> str:
        if version in broken:
            raise OSError(f"{version}: shared volume hiccup")
        return f"loaded {version}"

    follower = Follower(line, Live("v1", "loaded v1"), load, every_s=0)
    publish(line, "v2", "test")
    assert not follower.check() and follower.live.version == "v1"
    assert not follower.check()  # CURRENT unchanged: not tried again at every tick
    publish(line, "v3", "test")
    assert follower.check() and follower.live.version == "v3"
    broken.clear()  # the volume is back
    rollback(line, "v2")  # the peers go to v2, and so must this worker
    assert follower.check() and follower.live.version == "v2"


def test_a_failed_version_published_again_is_retried(tmp_path: Path) -> None:
    line = bare_line(tmp_path, "v1", "v2")
    publish(line, "v1", "test")
    tries: list[str] = []

    def load(version: str) -> str:
        tries.append(version)
        if len(tries) == 1:
            raise OSError("transient")
        return version

    follower = Follower(line, Live("v1", "v1"), load, every_s=0)
    publish(line, "v2", "test")
    assert not follower.check()
    publish(line, "v2", "published again")  # CURRENT rewritten with the same id: the operator's retry
    assert follower.check() and follower.live.version == "v2" and tries == ["v2", "v2"]


# 6: the hold
def test_a_rollback_holds_until_the_source_changes_or_the_operator_releases_it(
    tmp_path: Path, docs: Path, tiny_dir, encoder
) -> None:
    cfg, line, good = built(tmp_path, docs, tiny_dir, encoder)
    edit(docs, "A bad edit.")
    bad_text = (docs / "tokens.md").read_text()
    bad = refresh(cfg, lambda: encoder).version
    assert rollback(line) == good and line.current() == good

    again = refresh(cfg, lambda: pytest.fail("the encoder was loaded"))
    assert again.version == bad and again.held == bad and not again.published and line.current() == good
    assert f"held: rolled back from {bad}" in again.summary() and "--release" in again.summary()
    assert "RELEASE=1" in again.summary()

    released = refresh(cfg, lambda: encoder, release=True)
    assert released.published and released.held is None and line.current() == bad

    assert rollback(line) == good
    edit(docs, "The fix.")
    fixed = refresh(cfg, lambda: encoder)
    assert fixed.published and fixed.version not in (good, bad) and line.current() == fixed.version
    (docs / "tokens.md").write_text(bad_text)  # the hold went with the source change: a later decision
    assert refresh(cfg, lambda: encoder).published and line.current() == bad


# 6: the lock
def blocked_on(path: Path) -> int:
    """How many flock requests wait for path's lock now: /proc/locks marks a blocked request "->" (Linux)."""
    st = path.stat()
    key = f" {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
    return sum("->" in entry and key in entry for entry in Path("/proc/locks").read_text().splitlines())


def wait_until_blocked(path: Path, waiters: int) -> None:
    """Until `waiters` requests wait for path's lock: a condition, not a guess at how long a thread takes to start."""
    deadline = time.monotonic() + 10
    while blocked_on(path) < waiters:
        assert time.monotonic() < deadline, f"{waiters} waiter(s) on {path} expected: it was not taken"
        time.sleep(0.01)


def test_rollback_and_prune_wait_for_the_lines_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rollback waits for a writer's lock, then the prune for the rollback's: the prune reads the live version
    only after the rollback moved it, so it keeps v2. The order is set by the test: two threads woken by one unlock
    take the lock in either order (a prune first leaves nothing to roll back to: correct, but another test)."""
    line = bare_line(tmp_path, "v1", "v2", "v3")
    publish(line, "v1", "test")
    publish(line, "v2", "test")
    publish(line, "v3", "test")
    lock = line.root / "line.lock"
    rolling_holds_the_lock, pruning_waits = threading.Event(), threading.Event()

    def publish_when_the_prune_waits(*args: object) -> None:  # the rollback, inside its lock
        rolling_holds_the_lock.set()
        assert pruning_waits.wait(10)
        real_publish_locked(*args)

    real_publish_locked = versions.publish_locked
    monkeypatch.setattr(versions, "publish_locked", publish_when_the_prune_waits)
    with ThreadPoolExecutor(2) as pool:
        try:
            with open(lock, "a+") as held:  # what a writer of CURRENT holds
                fcntl.flock(held, fcntl.LOCK_EX)
                rolling = pool.submit(rollback, line)
                wait_until_blocked(lock, 1)
                assert line.current() == "v3" and not rolling_holds_the_lock.is_set()  # the rollback waits
            assert rolling_holds_the_lock.wait(10)
            pruning = pool.submit(prune, line, 1)
            wait_until_blocked(lock, 1)
            assert line.current() == "v3" and line.versions() == ["v1", "v2", "v3"]  # both are waiting
        finally:
            pruning_waits.set()
        assert rolling.result(10) == "v2" and pruning.result(10) is None
    assert line.current() == "v2"
    assert (line.folder(line.current()) / "manifest.json").is_file()  # CURRENT never names a deleted folder


# 7
def test_a_killed_builds_staging_folder_is_not_a_version_and_the_next_build_removes_it(
    tmp_path: Path, docs: Path, tiny_dir, encoder
) -> None:
    cfg, line, first = built(tmp_path, docs, tiny_dir, encoder)
    stale = line.folder(f".{'f' * 16}.999999.tmp")  # killed after its manifest was written
    shutil.copytree(line.folder(first), stale)
    stale_current = line.root / "CURRENT.999999.tmp"
    stale_current.write_text("ffff\n")
    assert line.versions() == [first]
    edit(docs, "A new version.")
    refresh(cfg, lambda: encoder)
    assert not stale.exists() and not stale_current.exists()
    assert not [p.name for p in (line.root / "versions").iterdir() if p.name.startswith(".")]


def test_the_manifest_and_current_are_fsynced(tmp_path: Path, docs: Path, tiny_dir, encoder, monkeypatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    cfg = config(docs, tmp_path / "index", tiny_dir)
    version = refresh(cfg, lambda: encoder).version
    assert "manifest.json" in synced and any(name.startswith("CURRENT") for name in synced)
    assert "versions" in synced and IndexLine.of(cfg).root.name in synced  # the renames, too
    assert IndexLine.of(cfg).current() == version


# 8
def test_pruning_keeps_the_versions_published_last_and_rollback_finds_them(tmp_path: Path) -> None:
    line = bare_line(tmp_path, "v1", "v2", "v3")
    publish(line, "v1", "refresh")
    publish(line, "v2", "refresh")
    rollback(line, "v1")  # v1 published again: now the newer of the two
    publish(line, "v3", "refresh")
    assert line.versions() == ["v2", "v1", "v3"]
    prune(line, 2)
    assert line.versions() == ["v1", "v3"] and not line.folder("v2").exists()
    assert rollback(line) == "v1"


# 9: a local corpus is keyed by the path from the store to it
def test_two_corpora_of_one_folder_name_under_one_store_keep_two_lines(tmp_path: Path, tiny_dir, encoder) -> None:
    store = tmp_path / "shared-index"
    configs = []
    for owner, words in (("a", "Alpha pages about zebras."), ("b", "Beta pages about walruses.")):
        folder = tmp_path / owner / "docs"  # /a/docs and /b/docs: one folder name
        folder.mkdir(parents=True)
        (folder / "page.md").write_text(f"# {owner}\n{words}\n")
        configs.append(config(folder, store, tiny_dir))
    for cfg in configs:
        refresh(cfg, lambda: encoder)
    for cfg in configs:
        refresh(cfg, lambda: encoder)  # a flip would publish the other corpus over this one
    a, b = (load_current(cfg) for cfg in configs)
    assert IndexLine.of(configs[0]).root != IndexLine.of(configs[1]).root
    assert "zebras" in a.document(0).page_content and "walruses" in b.document(0).page_content


def test_a_tree_moved_elsewhere_or_archived_keeps_its_line(tmp_path: Path, tiny_dir) -> None:
    """The repository, a copy of it, and its archive (whose `index` links the repository's store): relative corpus
    and store resolve under three roots, one line."""
    section = {
        "corpus": {"source": "corpus/docs"},
        "embedding": {"model_path": str(tiny_dir)},
        "index": {"dir": "index"},
    }
    (tmp_path / "repo" / "index").mkdir(parents=True)
    (tmp_path / "model_store" / "rag").mkdir(parents=True)
    (tmp_path / "model_store" / "rag" / "index").symlink_to(tmp_path / "repo" / "index", target_is_directory=True)
    roots = ("repo", "copy", "model_store/rag")
    here, copied, archived = (Config.from_mapping(section, tmp_path / root) for root in roots)
    assert len({here.corpus.source, copied.corpus.source, archived.corpus.source}) == 3
    assert IndexLine.of(here).root.name == IndexLine.of(copied).root.name == IndexLine.of(archived).root.name


def test_the_status_lists_the_other_lines_and_says_which_an_older_format_left(
    tmp_path: Path, docs: Path, tiny_dir, encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from ragserve.index.line import FORMAT_VERSION

    cfg, line, version = built(tmp_path, docs, tiny_dir, encoder)
    old = line.root.parent / "0000000000000000"  # as an upgrade that changed the format leaves a line
    shutil.copytree(line.root, old)
    manifest = old / "versions" / version / "manifest.json"
    written = json.loads(manifest.read_text())
    written["identity"]["format"] = FORMAT_VERSION - 1
    manifest.write_text(json.dumps(written))
    script_path = Path(__file__).resolve().parents[1] / "scripts" / "build_index.py"
    spec = importlib.util.spec_from_file_location("build_index", script_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.other_lines(line)
    out = capsys.readouterr().out
    assert f"other line {old}: live version {version}, format {FORMAT_VERSION - 1}: no worker" in out, out
    assert str(line.root) not in out and "rm -r" in out  # the line itself is not an "other"; how to reclaim the space
    (old / "versions" / version / "manifest.json").unlink()  # not a line this code wrote: listed, no crash
    script.other_lines(line)
    assert f"other line {old}: live version {version}, format None" in capsys.readouterr().out
    shutil.rmtree(old)
    script.other_lines(line)
    assert capsys.readouterr().out == ""
