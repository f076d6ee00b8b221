#!/usr/bin/env python3
"""Small TorchServe client shared by scripts, tests and benchmarks (stdlib only).

  python scripts/tsclient.py wait rag [llm]     # block until each model has a READY worker
  python scripts/tsclient.py key                # print the inference key

TorchServe writes its tokens to key_file.json in the directory it was started from.
"""

from __future__ import annotations

import codecs
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFERENCE_URL = "http://127.0.0.1:8080"
MANAGEMENT_URL = "http://127.0.0.1:8081"


def read_key(kind: str = "inference", key_file: Path = ROOT / "key_file.json") -> str:
    """kind: 'inference' or 'management'."""
    try:
        return json.loads(key_file.read_text())[kind]["key"]
    except (OSError, KeyError, ValueError) as err:
        raise SystemExit(f"cannot read the {kind} key from {key_file} ({err}): is TorchServe running?") from err


def request(
    url: str,
    body: bytes | None = None,
    key: str | None = None,
    content_type: str = "text/plain",
    timeout_s: float = 120.0,
) -> tuple[int, str, str]:
    """POST body (or GET when None); returns (status, content type, text). HTTP errors are returned."""
    headers = {"Content-Type": content_type} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode(errors="replace")


def stream(
    url: str, body: bytes, key: str | None, content_type: str = "application/json", timeout_s: float = 300.0
) -> Iterator[str]:
    """POST and yield the response body piece by piece as the server flushes it (chunked transfer)."""
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as response:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            while piece := response.read1(4096):
                yield decoder.decode(piece)
    except urllib.error.HTTPError as err:
        raise SystemExit(f"{url} answered HTTP {err.code}: {err.read().decode(errors='replace')}") from err


def ready_workers(model: str, key: str, management_url: str = MANAGEMENT_URL) -> int:
    status, _, text = request(f"{management_url}/models/{model}", key=key, timeout_s=5)
    if status != 200:
        return 0
    return sum(w.get("status") == "READY" for entry in json.loads(text) for w in entry.get("workers", []))


def wait_ready(
    models: list[str],
    timeout_s: float = 1800,
    management_url: str = MANAGEMENT_URL,
    key_file: Path = ROOT / "key_file.json",
    log: Path = ROOT / "logs" / "model_log.log",
) -> float:
    """Poll the management API until every model has a ready worker; returns seconds waited."""
    start = time.monotonic()
    pending = list(models)
    while pending:
        if time.monotonic() - start > timeout_s:
            raise SystemExit(f"models {pending} not ready after {timeout_s:.0f} s; see {log}")
        try:
            key = read_key("management", key_file)
            pending = [m for m in pending if ready_workers(m, key, management_url) == 0]
        except (SystemExit, OSError):
            pass  # server still starting
        time.sleep(1)
    return time.monotonic() - start


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "wait":
        waited = wait_ready(sys.argv[2:] or ["rag"])
        print(f"ready: {', '.join(sys.argv[2:] or ['rag'])} after {waited:.1f} s")
    elif len(sys.argv) == 2 and sys.argv[1] == "key":
        print(read_key())
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
