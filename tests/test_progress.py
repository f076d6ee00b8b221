"""progress.py: a tqdm bar on a terminal, INFO log lines (at most every LOG_EVERY_S) anywhere else."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from ragserve.embedding import progress
from ragserve.embedding.progress import progress_bar

LOGGER = "ragserve.embedding.progress"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def test_without_a_terminal_the_bar_logs_its_start_and_end_and_not_every_update(caplog, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger=LOGGER)
    with progress_bar(300, "embedding chunks") as bar:
        for _ in range(100):
            bar.update(3)
    lines = _lines(caplog)
    assert len(lines) == 2, lines  # 100 updates within LOG_EVERY_S: the first status and the last
    assert lines[0].startswith("embedding chunks: 0/300 texts (0%)")
    assert lines[1].startswith("embedding chunks: 300/300 texts (100%)") and "texts/s" in lines[1]
    assert sys.stderr.getvalue() == ""


def test_without_a_terminal_a_line_comes_once_log_every_s_has_passed(caplog, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)  # every update is LOG_EVERY_S after the last line
    caplog.set_level(logging.INFO, logger=LOGGER)
    with progress_bar(3, "embedding sentence windows") as bar:
        for _ in range(3):
            bar.update(1)
    counts = [line.split(": ", 1)[1].split(" ")[0] for line in _lines(caplog)]
    assert counts[:4] == ["0/3", "1/3", "2/3", "3/3"], counts
    assert "left" in _lines(caplog)[1]  # tqdm's ETA


def test_on_a_terminal_the_bar_draws_on_stderr_and_logs_nothing(caplog, monkeypatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    caplog.set_level(logging.INFO, logger=LOGGER)
    with progress_bar(4, "embedding new texts") as bar:
        bar.update(4)
    assert "embedding new texts" in terminal.getvalue() and "4/4" in terminal.getvalue()
    assert _lines(caplog) == []
