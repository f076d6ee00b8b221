"""A worker's hold on the live index version: a new version is loaded beside the old and swapped in between batches.

Public names: Follower.
A daemon thread reads the line's CURRENT every `every_s` seconds (one small file). When it names another
version, the thread loads it (memory-mapped: a second or two) while the worker keeps answering from the
old one, then replaces `live` (one reference assignment, atomic under the GIL). A batch reads `live`
once, so it is answered wholly from one version; the old version is freed when the last batch holding it
ends. A version that fails to load is logged and not retried until CURRENT changes again; the worker
keeps serving the version it has, and says which in every JSON response (never stale in silence).
We swap inside the worker rather than through TorchServe's model versions (register, set-default,
unregister): those need the management API, which this project keeps off (config.properties), and a
new worker set per version (encoder loaded again, memory doubled during the overlap).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ragserve.index.store import IndexLine

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Live(Generic[T]):
    """A loaded index version: replaced whole, never changed in place."""

    version: str | None
    value: T


class Follower(Generic[T]):
    """live: (version, value) of the line's CURRENT version as last loaded; check() looks for a newer one."""

    def __init__(self, line: IndexLine, live: Live[T], load: Callable[[str], T], every_s: float) -> None:
        self.line = line
        self.live = live
        self._load = load
        self._failed: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), name="index-follower", daemon=True)
        if every_s > 0:
            self._thread.start()

    def check(self) -> bool:
        """Load and swap in CURRENT's version if it is not the live one; True when it swapped."""
        version = self.line.current()
        if version is None or version in (self.live.version, self._failed):
            return False
        try:
            value = self._load(version)
        except Exception:  # a broken version must not stop the worker: it keeps the one it has
            logger.exception("index version %s of %s failed to load; still serving %s", version, self.line.root,
                             self.live.version)  # fmt: skip
            self._failed = version
            return False
        previous, self.live = self.live.version, Live(version, value)
        logger.info("index %s: swapped version %s -> %s", self.line.root, previous, version)
        return True

    def stop(self) -> None:
        self._stop.set()

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self.check()
            except OSError:  # CURRENT unreadable for a moment (a shared volume remounting): try again later
                logger.warning("index %s: cannot read CURRENT", self.line.root, exc_info=True)
