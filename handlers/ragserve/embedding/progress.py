"""Progress of long embedding runs (an index build embeds thousands of texts at a few a second on a CPU).

Public names: progress_bar, LOG_EVERY_S.
progress_bar(total, what) is a context manager giving a tqdm bar to `update(n)` as texts are embedded: on a
terminal (stderr is a tty) tqdm's own bar, with count, rate and ETA, log records printed above it; anywhere
else (a log file, CI, TorchServe's worker log) the same status as an INFO log line when it starts, at most
every LOG_EVERY_S seconds while it moves, and when it ends. tqdm computes the rate and the ETA; nothing here does.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

logger = logging.getLogger(__name__)
LOG_EVERY_S = 30.0  # seconds between log lines when stderr is no terminal (tqdm's mininterval)
LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt}{unit} ({percentage:.0f}%) in {elapsed}, {rate_fmt}, {remaining} left"


class _LogLines:
    """A file for tqdm that logs each status it writes (tqdm writes "\\r" + the status, then flushes)."""

    def write(self, text: str) -> int:
        line = text.strip("\r\n\t ")
        if line:
            logger.info(line)
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def progress_bar(total: int, what: str) -> Iterator[tqdm]:
    """A bar over total texts, described by what ("embedding chunks"); closed (its last status shown) on exit."""
    if sys.stderr.isatty():
        with logging_redirect_tqdm(), tqdm(total=total, desc=what, unit=" texts", file=sys.stderr) as bar:
            yield bar
        return
    # miniters=1: print on the first update LOG_EVERY_S after the last line (tqdm's monitor thread would
    # otherwise refresh every maxinterval, 10 s, once it raised miniters)
    with tqdm(
        total=total,
        desc=what,
        unit=" texts",
        file=_LogLines(),
        mininterval=LOG_EVERY_S,
        miniters=1,
        bar_format=LOG_FORMAT,
    ) as bar:
        yield bar
