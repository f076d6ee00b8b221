"""A worker's hold on the live index version: a new version is loaded beside the old and swapped in between batches.

Public names: Follower.
A daemon thread reads the line's CURRENT every `every_s` seconds (one small file). When it names another
version, the thread loads it (memory-mapped: a second or two) while the worker keeps answering from the
old one, then replaces `live` (one reference assignment, atomic under the GIL). A batch reads `live`
once, so it is answered wholly from one version; the old version is freed when the last batch holding it
ends. A version that fails to load is logged and tried again when CURRENT is written again (another
publish, a rollback to it, a republish of the same id) or after `retry_s`, never at every tick; a later
successful swap forgets the failure. Meanwhile the worker keeps serving the version it has, and says
which in every JSON response (never stale in silence).
We swap inside the worker rather than through TorchServe's model versions (register, set-default,
unregister): those need the management API, which this project keeps off (config.properties), and a
new worker set per version (encoder loaded again, memory doubled during the overlap).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ragserve.index.line import CURRENT, IndexLine

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Live(Generic[T]):
    """A loaded index version: replaced whole, never changed in place."""

    version: str | None
    value: T


class Follower(Generic[T]):
    """live: (version, value) of the line's CURRENT version as last loaded; check() looks for a newer one."""

    def __init__(
        self, line: IndexLine, live: Live[T], load: Callable[[str], T], every_s: float, retry_s: float = 300.0
    ) -> None:
        self.line = line
        self.live = live
        self._load = load
        self._retry_s = retry_s
        # (version, CURRENT's (inode, mtime) when it failed, monotonic time): skipped until one of them moves
        self._failed: tuple[str, tuple[int, int], float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), name="index-follower", daemon=True)
        if every_s > 0:
            self._thread.start()

    def check(self) -> bool:
        """Load and swap in CURRENT's version if it is not the live one; True when it swapped."""
        stamp = self._stamp()
        version = self.line.current()
        if version is None or version == self.live.version or self._skips(version, stamp):
            return False
        try:
            value = self._load(version)
        except Exception:  # a broken version must not stop the worker: it keeps the one it has
            logger.exception("index version %s of %s failed to load; still serving %s", version, self.line.root,
                             self.live.version)  # fmt: skip
            self._failed = (version, stamp, time.monotonic())
            return False
        previous, self.live, self._failed = self.live.version, Live(version, value), None
        logger.info("index %s: swapped version %s -> %s", self.line.root, previous, version)
        return True

    def _stamp(self) -> tuple[int, int]:
        """CURRENT's (inode, mtime): every publish renames a new file over it, so a republish moves it."""
        try:
            stat = os.stat(self.line.root / CURRENT)
        except FileNotFoundError:
            return (0, 0)
        return (stat.st_ino, stat.st_mtime_ns)

    def _skips(self, version: str, stamp: tuple[int, int]) -> bool:
        """Whether version failed to load from this very CURRENT less than retry_s ago."""
        if self._failed is None:
            return False
        failed, failed_stamp, at = self._failed
        return failed == version and failed_stamp == stamp and time.monotonic() - at < self._retry_s

    def stop(self) -> None:
        self._stop.set()

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self.check()
            except OSError:  # CURRENT unreadable for a moment (a shared volume remounting): try again later
                logger.warning("index %s: cannot read CURRENT", self.line.root, exc_info=True)
