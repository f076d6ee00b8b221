#!/usr/bin/env python3
"""What keeping the knowledge base current costs, on the 33-page blog mirror: `make bench-refresh`.

  .venv/bin/python benchmarks/refresh_bench.py                 # ~3 min with a warm embedding cache
  .venv/bin/python benchmarks/refresh_bench.py --cold          # the first build from an empty cache too (~10 min)

A copy of ../shared/corpus/hf-blog/site is served on 127.0.0.1 and indexed from /blog (depth 3,
configs/rag-docs.yaml's settings, the default embedding backend), as `make index` would. The embedding
cache is seeded from `make eval`'s (.cache/eval-index/embed-cache) unless --cold. Then, in one run:
1. a refresh with nothing changed (seconds, texts embedded);
2. one page edited (a sentence added to /blog/llama31): refresh seconds, texts embedded per kind;
3. TorchServe with 2 workers over that index (as `make run` serves it) under `ab -k -c 16`, another page
   edited and refreshed: failed and non-2xx requests, and seconds from publish until a question about
   the new sentence retrieves it.
Writes report.md, figures.json and setup.json under benchmarks/results/refresh-<date>-<host>/.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from benchlib import apache_bench
from benchlib.model_archive import archive_rag
from benchlib.report import Results, add_out_argument
from ragserve.config import override
from ragserve_ops.client import fresh_key
from ragserve_ops.server import TorchServe, running
from ragserve_ops.testing import MODEL_DIR

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT.parent / "shared" / "corpus" / "hf-blog" / "site"
EDITS = {
    "llama31": "In December 2026 the Llama 3.1 405B checkpoint was re-released with a 512K context window.",
    "gemma2": "In November 2026 Gemma 2 gained an official Okapi-4 tokenizer for weather reports.",
}
QUESTIONS = {
    "gemma2": "Which tokenizer did Gemma 2 gain in November 2026?",
}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """folder on 127.0.0.1 (Python's file server: Last-Modified and 304s), from a daemon thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def edit(site: Path, slug: str) -> None:
    page = site / "blog" / slug / "index.html"
    html = page.read_text()
    first = html.index("<p>", html.index("Tags:"))  # the first paragraph of the article
    page.write_text(html[:first] + f"<p>{EDITS[slug]}</p>\n" + html[first:])
    later = time.time() + 10  # Last-Modified has 1 s resolution: the edit must look newer than the last crawl
    os.utime(page, (later, later))


def refresh(config: Path, workdir: Path) -> dict:
    """scripts/build_index.py (what `make refresh` runs): wall seconds and the summary it prints."""
    start = time.perf_counter()
    cmd = [sys.executable, str(ROOT / "scripts/build_index.py"), "--config", str(config), "--root", str(workdir)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    summary = [line for line in done.stderr.splitlines() if line.startswith("version ")][-1]
    return {"wall_s": round(time.perf_counter() - start, 1), "summary": summary}


def ab_load(server: TorchServe, payload: Path, stop: threading.Event, rounds: list[str]) -> None:
    """`ab -k -c 16 -n 400` rounds, each with a fresh key, until stop is set (and one round after).

    ab's exit status is not checked: a round cut short still counts what it completed and failed."""
    url = f"{server.inference_url}/predictions/rag"
    load = apache_bench.Load(requests=400, concurrency=16, timeout_s=60)
    while True:
        cmd = apache_bench.command(url, payload, fresh_key(server.inference_url, server.keys), load)
        rounds.append(subprocess.run(cmd, capture_output=True, text=True).stdout)
        if stop.is_set():
            return


def ab_totals(outputs: list[str]) -> dict[str, int]:
    """complete, failed, length (of the failed) and non-2xx requests over every round."""
    totals = dict.fromkeys(("complete", "failed", "length", "non2xx"), 0)
    for text in outputs:
        counts = apache_bench.counts(text)
        counts["non2xx"] = counts.pop("non_2xx")
        for name, count in counts.items():
            totals[name] += count
    return totals


def swap_under_load(server: TorchServe, site: Path, config: Path, workdir: Path) -> dict:
    """Step 3: a page edited and refreshed while ab runs; the refresh, the seconds until retrieved, ab's totals."""
    payload = workdir / "question.txt"
    payload.write_text("What's new with Llama 3.1?")
    question = json.dumps({"question": QUESTIONS["gemma2"], "k": 5}).encode()
    assert EDITS["gemma2"] not in server.post("rag", question, "application/json")[2]
    figures: dict = {}
    stop, rounds = threading.Event(), []
    load = threading.Thread(target=ab_load, args=(server, payload, stop, rounds))
    load.start()
    time.sleep(5)
    edit(site, "gemma2")
    figures["swap under load: refresh"] = refresh(config, workdir)
    published = time.monotonic()
    while EDITS["gemma2"] not in server.post("rag", question, "application/json")[2]:
        if time.monotonic() - published > 120:
            raise SystemExit("the workers did not swap within 120 s")
        time.sleep(0.1)
    figures["swap under load: seconds until retrieved"] = round(time.monotonic() - published, 2)
    stop.set()
    load.join()
    figures["swap under load: ab -k -c 16"] = ab_totals(rounds)
    return figures


def model_yaml(url: str) -> dict:
    """configs/rag-docs.yaml crawling the served mirror from /blog (depth 3); workers follow new versions within 1 s."""
    base = yaml.safe_load((ROOT / "configs" / "rag-docs.yaml").read_text())
    changes = {"corpus.source": f"{url}/blog", "corpus.max_depth": 3, "index.follow_s": 1.0}
    base["handler"] = override(base["handler"], {**changes, "embedding.model_path": str(MODEL_DIR)})
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="start from an empty embedding cache")
    add_out_argument(parser, "refresh")
    args = parser.parse_args()
    if not SITE.is_dir():
        raise SystemExit(f"{SITE} is absent: the benchmark needs the shared blog mirror")
    results = Results.create("refresh", args.out)
    workdir = results.folder / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    site = workdir / "site"
    shutil.copytree(SITE, site)
    http, url = serve(site)
    base = model_yaml(url)
    config = workdir / "rag.yaml"
    config.write_text(yaml.safe_dump(base, sort_keys=False))
    seed = ROOT / ".cache" / "eval-index" / "embed-cache"
    if not args.cold and seed.is_dir():
        shutil.copytree(seed, workdir / "index" / "embed-cache")
    figures: dict = {"cache_seeded": not args.cold and seed.is_dir()}
    try:
        figures["first build"] = refresh(config, workdir)
        figures["nothing changed"] = refresh(config, workdir)
        edit(site, "llama31")
        figures["one page edited"] = refresh(config, workdir)
        archive_rag(workdir, base, workdir / "archive.log")  # its refresh finds nothing new
        with running(workdir, ["rag"]) as server:  # a free port block (ragserve_ops/ports.py)
            figures.update(swap_under_load(server, site, config, workdir))
    finally:
        http.shutdown()
    results.write_json("figures.json", figures)
    lines = [f"# Index refresh on the 33-page blog mirror ({results.setup['date']})", ""]
    lines += [f"- **{name}**: {json.dumps(value)}" for name, value in figures.items()]
    results.write_report("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
