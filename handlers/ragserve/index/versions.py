"""Publish, roll back, hold and prune an index line's versions; fsynced writes and the line's lock.

Public names: publish, rollback, lift_holds, last_refresh, LAST_REFRESH; for builder.py, which writes versions:
publish_locked, write_holds, prune, clean_staging, line_lock, write_synced, fsync, utc_now.
builder.py writes a version and publishes it here; scripts/build_index.py rolls back and lifts holds. A publish
replaces CURRENT in one rename (the file and the rename fsynced) and appends to history.jsonl. The
index.keep_versions versions published last stay on disk for rollback(). A rollback holds: the version it moved
away from is not published again by a refresh until the source changes (another version id) or the operator lifts
it (lift_holds: refresh(release=True), build_index.py --release). Every writer of CURRENT, history.jsonl or HOLD
(publish, rollback, the prune) takes the line's lock (line.lock) for those few milliseconds, so a rollback never
lands between the prune's reading of the live version and its deletes. A refresh first deletes what killed builds
and publishes left (clean_staging). LAST_REFRESH is what the line's last refresh recorded (builder.py writes it,
last_refresh reads it). Nothing here runs in a TorchServe worker.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ragserve.index.line import CURRENT, HOLD, IndexLine
from ragserve.index.store import IndexStoreError

logger = logging.getLogger(__name__)
LAST_REFRESH = "last_refresh.json"  # the last refresh's kept pages and every page's newest validators


def publish(line: IndexLine, version: str, reason: str) -> None:
    """Make version the live one, under the line's lock: CURRENT is replaced in one rename; history.jsonl records it."""
    with line_lock(line):
        publish_locked(line, version, reason)


def rollback(line: IndexLine, version: str | None = None) -> str:
    """Publish `version`, or the version live before the current one, and hold the one it replaces (HOLD: a refresh
    does not publish it again until the source changes or lift_holds()); returns the version now live."""
    with line_lock(line):
        current = line.current()
        if version is None:
            earlier = [e["version"] for e in reversed(line.history()) if e["version"] != current]
            kept = [v for v in earlier if (line.folder(v) / "manifest.json").is_file()]
            if not kept:
                raise IndexStoreError(f"{line.root}: no earlier version on disk to roll back to")
            version = kept[0]
        publish_locked(line, version, f"rollback from {current}")
        held = [entry for v, entry in line.holds().items() if v not in (version, current)]
        if current is not None and current != version:
            held.append({"version": current, "to": version, "at": utc_now()})
        write_holds(line, held)
    return version


def lift_holds(line: IndexLine) -> list[str]:
    """Lift every rollback hold of line; returns the versions that were held."""
    with line_lock(line):
        held = list(line.holds())
        write_holds(line, [])
    if held:
        logger.info("released the hold on %s in %s", ", ".join(held), line.root)
    return held


def publish_locked(line: IndexLine, version: str, reason: str) -> None:
    """publish() for a caller that holds the line's lock."""
    if not (line.folder(version) / "manifest.json").is_file():
        raise IndexStoreError(f"{line.folder(version)} is not a complete version")
    write_synced(line.root / CURRENT, version + "\n")
    entry = {"version": version, "at": utc_now("microseconds"), "reason": reason}  # orders versions for the prune
    with open(line.root / "history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())
    logger.info("published %s in %s (%s)", version, line.root, reason)


def write_holds(line: IndexLine, held: list[dict[str, Any]]) -> None:
    if held:
        write_synced(line.root / HOLD, json.dumps({"held": held}, indent=2))
    elif (line.root / HOLD).exists():
        (line.root / HOLD).unlink()
        fsync(line.root)


def last_refresh(line: IndexLine) -> dict[str, Any] | None:
    """What the line's last refresh recorded (LAST_REFRESH): at, version, kept {url: why}, validators; None if none
    (or unreadable: it only saves downloads and reports)."""
    try:
        return json.loads((line.root / LAST_REFRESH).read_text())
    except (OSError, ValueError):
        return None


def prune(line: IndexLine, keep: int) -> None:
    """Delete all but the `keep` versions published last (never the live one), under the line's lock: no
    rollback can move CURRENT between the read of the live version and the deletes. A worker that still maps
    a deleted version's files keeps reading them: Linux frees them when the last mapping goes."""
    with line_lock(line):
        live = line.current()
        versions = line.versions()
        old = [v for v in versions if v != live][: max(0, len(versions) - keep)]
        for version in old:
            shutil.rmtree(line.folder(version), ignore_errors=True)
            logger.info("pruned version %s of %s", version, line.root)


def clean_staging(line: IndexLine) -> None:
    """Delete what killed builds and publishes left: `.<version>.<pid>.tmp` folders (a whole index's disk each),
    `CURRENT.<pid>.tmp` and `HOLD.<pid>.tmp`. The caller holds the refresh lock, so no build of this line is
    writing one; the line's lock keeps a rollback's CURRENT.<pid>.tmp in flight out of reach."""
    for staging in (line.root / "versions").glob(".*.tmp"):
        shutil.rmtree(staging, ignore_errors=True)
        logger.info("removed %s, left by a build that did not finish", staging)
    for staged in line.root.glob(f"{LAST_REFRESH}.*.tmp"):  # written under the refresh lock only
        staged.unlink(missing_ok=True)
    with line_lock(line):
        for staged in [*line.root.glob(f"{CURRENT}.*.tmp"), *line.root.glob(f"{HOLD}.*.tmp")]:
            staged.unlink(missing_ok=True)


@contextmanager
def line_lock(line: IndexLine) -> Iterator[None]:
    """The line's lock, held by every writer of CURRENT, history.jsonl and HOLD: blocking, held for milliseconds."""
    line.root.mkdir(parents=True, exist_ok=True)
    with open(line.root / "line.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def write_synced(path: Path, text: str) -> None:
    """Replace path with text in one rename, the file and the rename on disk when this returns."""
    staged = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(staged, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    staged.replace(path)
    fsync(path.parent)


def fsync(path: Path) -> None:
    """Flush a file, or a folder's entries (renames), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def utc_now(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).isoformat(timespec=timespec)
