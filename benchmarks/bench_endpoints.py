#!/usr/bin/env python3
"""Throughput of the RAG endpoint through a real TorchServe under Apache Bench: `make benchmark`'s engine.

  .venv/bin/python benchmarks/bench_endpoints.py                   # benchmarks/profile.yaml (~15 min, 2 cores)
  .venv/bin/python benchmarks/bench_endpoints.py --quick           # one eager cell, 50 requests (~2 min)
  .venv/bin/python benchmarks/bench_endpoints.py --profile benchmarks/profile-seed.yaml   # the demo's, 16 cores

Reproduces the original demo's table (OMP_NUM_THREADS x eager/compile, requests/s from
`ab -k -n N -c C`) for this project. The profile names the matrix: modes x threads x workers x
batch settings, plus a `seed-design` cell (the demo's configuration: eager, batch size 1, one worker
per core, default threads) that the best cell is reported against.

Per cell: a copy of the base model yaml with minWorkers/maxWorkers/batchSize/maxBatchDelay and
handler.compile.enabled changed is archived into a private model store and served by a private
TorchServe on ports 28080-28084 (worker sockets /tmp/.ts.sock.29080+). The index is built once up
front (its key does not depend on the cell settings; each cell's archive step refreshes it, which
finds nothing to do, so the archive ships the index of the cell's yaml). Warm-up requests, then the
measured ab run, sampling the workers' RSS; then TorchServe stops.

TorchServe's own latency comes from the cell's logs: 0.12.0 runs with metrics_mode=log, where the
metrics endpoint (:28082/metrics) answers an empty body, so the numbers are read from
logs/model_metrics.log (HandlerTime per handler call = per batch; RAGEmbedTime/RAGSearchTime, which
TorchServe only keeps with model_metrics_auto_detect=true, set in the private config) and
logs/ts_metrics.log (ts_inference_latency_microseconds, ts_queue_latency_microseconds per request).

Modules (benchlib/): endpoint_profile.py (the profile and its cells), endpoint_runner.py (workdir, index,
archive, server, ab per cell), endpoint_report.py (results.csv, report.md, throughput.png), report.py (the
results folder and set-up every benchmark shares).

Output (default benchmarks/results/endpoints-<date>-<host>/): report.md, setup.json, results.csv,
throughput.png, and cells/<cell>/ with the cell yaml, the archive step's log, ab's output and TorchServe's
logs. Needs `ab` (apt-get install -y apache2-utils). No timing is asserted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchlib import apache_bench, endpoint_report
from benchlib.endpoint_profile import Profile
from benchlib.endpoint_runner import prepare_workdir, run_cells
from benchlib.report import Results, add_out_argument

BENCHMARK = "endpoints"
DEFAULT_PROFILE = Path(__file__).resolve().parent / "profile.yaml"


def check_prerequisites() -> None:
    apache_bench.require()
    if not endpoint_report.has_matplotlib():  # said now, not after the run: results.csv and report.md are still written
        print(
            "note: matplotlib is missing: throughput.png will be skipped (pip install -r benchmarks/requirements.txt)"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", type=Path, default=DEFAULT_PROFILE)
    add_out_argument(parser, BENCHMARK)
    parser.add_argument("--quick", action="store_true", help="one tiny eager cell: check the set-up")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    check_prerequisites()
    profile = Profile.from_yaml(args.profile.resolve())
    profile = profile.quick() if args.quick else profile
    results = Results.create(BENCHMARK, args.out)
    results.setup["ab"] = apache_bench.version()
    workdir, base = prepare_workdir(profile, results.folder)
    rows = run_cells(profile, base, workdir, results.folder)
    path = endpoint_report.write(rows, profile, results)
    minutes = (time.monotonic() - results.started) / 60
    print(f"{path}  ({minutes:.1f} min)\n\n{endpoint_report.ratio_line(rows)}")


if __name__ == "__main__":
    main()
