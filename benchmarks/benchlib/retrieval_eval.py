"""What the retrieval eval's scripts share (eval_retrieval.py, page_signals.py, answer_eval.py): the repository root,
the blog mirror served on 127.0.0.1, a variant's config, the question files and one question's hit test.

Public: `ROOT`, `serve_site`, `variant_config` (the base handler section with a variant's overrides, indexed
under .cache/eval-index with compile off), `score_question` (the rank of the first chunk holding the question's
evidence, whitespace folded, case ignored), `read_questions` (a QA jsonl file). No measuring here.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path
from typing import Any

from benchlib.misses import folded
from ragserve.config import Config, override

ROOT = Path(__file__).resolve().parents[2]


def serve_site(site: Path, port: int) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def variant_config(spec: dict[str, Any], base: dict[str, Any], source: str) -> Config:
    """The base handler section with the variant's overrides merged section by section."""
    merged = override(base, spec.get("handler", {}))
    # eager (compile off): the same vectors, without minutes of compilation
    eval_only = {
        "corpus.source": source,
        "index.dir": str(ROOT / ".cache" / "eval-index"),
        "compile": {"enabled": False},
    }
    return Config.from_mapping(override(merged, eval_only), ROOT)


def score_question(hits: list, question: dict[str, Any]) -> dict[str, Any]:
    row = {"id": question["id"], "answerable": question["answerable"], "top_score": hits[0].score if hits else None}
    if question["answerable"]:
        evidence = folded(question["evidence"])
        ranks = [i + 1 for i, hit in enumerate(hits) if evidence in folded(hit.document.page_content)]
        row["rank"] = ranks[0] if ranks else None
        row["top_source"] = hits[0].document.metadata.get("source") if hits else None
    return row


def read_questions(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
