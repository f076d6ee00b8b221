#!/usr/bin/env python3
"""A short request that arrives while a long one decodes: batch path vs in-flight, through a real TorchServe.

  .venv/bin/python benchmarks/inflight_bench.py            # SmolLM2, CPU (~2 min)
  .venv/bin/python benchmarks/inflight_bench.py --runs 5 --long-tokens 128

Per mode, one private TorchServe (ports 48200-48204, worker sockets 49200+; not beside
tests/test_llm_inflight_server.py) serves the offline SmolLM2 with the same settings (batchSize 4, greedy,
repetition_penalty 1.0, which the in-flight decode requires), once with TorchServe's batches
(`batch`) and once with `continuousBatching: true` + `handler.continuous_batching: true` (`inflight`).
Each run streams a long answer (--long-tokens); at its first piece a short streamed request
(--short-tokens) is sent. Reported (medians over --runs): the short request's time to first piece and
to its end, counted from its sending, and the long request's whole time. Writes report.md, figures.json
and setup.json under benchmarks/results/inflight-<date>-<host>/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchlib.report import Results, add_out_argument
from ragserve.config import override
from ragserve_ops.client import stream
from ragserve_ops.server import TorchServe, prepare_llm_archive, running

ROOT = Path(__file__).resolve().parent.parent

MODEL = ROOT / "models" / "smollm2-135m-instruct"
FRONTEND = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 4, "maxBatchDelay": 50, "responseTimeout": 300}
LONG_PROMPT = "Write a long story about a dragon who guards a library."
SHORT_PROMPT = "What is the capital of France? Answer in one sentence."


def handler(inflight: bool, args: argparse.Namespace) -> dict:
    generate = {"max_new_tokens": args.short_tokens, "max_new_tokens_limit": args.long_tokens, "max_input_tokens": 512}
    generate["repetition_penalty"] = 1.0  # the in-flight decode has none: both modes run without
    changes = {"runtime.threads": args.threads, "decode.continuous_batching": inflight}
    return override({}, {"model.path": str(MODEL), "generate": generate, **changes})


def timed_stream(server: TorchServe, body: dict, first: threading.Event | None = None) -> tuple[float, float]:
    """(seconds to the first piece, seconds to the end) of one streamed request."""
    url = f"{server.inference_url}/predictions/llm"
    start, first_s = time.perf_counter(), None
    for _ in stream(url, json.dumps({**body, "stream": True}).encode(), server.keys):
        if first_s is None:
            first_s = time.perf_counter() - start
            if first:
                first.set()
    return first_s or 0.0, time.perf_counter() - start


def one_run(server: TorchServe, args: argparse.Namespace) -> dict[str, float]:
    started, result = threading.Event(), {}

    def run_long() -> None:
        result["long"] = timed_stream(server, {"prompt": LONG_PROMPT, "max_new_tokens": args.long_tokens}, started)

    thread = threading.Thread(target=run_long)
    thread.start()
    started.wait(timeout=300)
    first_s, total_s = timed_stream(server, {"prompt": SHORT_PROMPT, "max_new_tokens": args.short_tokens})
    thread.join()
    return {"short_first_s": first_s, "short_total_s": total_s, "long_total_s": result["long"][1]}


def measure(mode: str, args: argparse.Namespace) -> dict[str, float]:
    inflight = mode == "inflight"
    with tempfile.TemporaryDirectory(prefix=f"inflight-bench-{mode}-") as tmp:
        workdir = Path(tmp)
        prepare_llm_archive(workdir, handler(inflight, args), {**FRONTEND, "continuousBatching": inflight})
        with running(workdir, ["llm"], args.port) as server:
            one_run(server, args)  # warm-up: first-request costs (allocation, tokenizer caches) out of the numbers
            runs = [one_run(server, args) for _ in range(args.runs)]
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def table(rows: dict[str, dict[str, float]], description: str) -> str:
    lines = [
        description,
        "",
        "| mode | short: first piece s | short: complete s | long: complete s |",
        "|---|---|---|---|",
    ]
    for mode, row in rows.items():
        lines.append(
            f"| {mode} | {row['short_first_s']:.2f} | {row['short_total_s']:.2f} | {row['long_total_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--long-tokens", type=int, default=96)
    parser.add_argument("--short-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the worker (shared machine)")
    parser.add_argument("--modes", nargs="+", choices=["batch", "inflight"], default=["batch", "inflight"])
    parser.add_argument(
        "--port", type=int, help="TorchServe's first port (default: a free block, ragserve_ops/ports.py)"
    )
    add_out_argument(parser, "inflight")
    args = parser.parse_args()
    results = Results.create("inflight", args.out)
    rows = {mode: measure(mode, args) for mode in args.modes}
    description = (
        f"SmolLM2-135M-Instruct, CPU float32, {args.threads} torch thread(s), greedy; long {args.long_tokens} new "
        f"tokens streamed, short {args.short_tokens} new tokens sent at the long one's first piece; "
        f"medians of {args.runs} runs after one warm-up."
    )
    results.write_json("figures.json", {"description": description, "modes": rows})
    results.write_report(table(rows, description))
    print(table(rows, description))


if __name__ == "__main__":
    main()
