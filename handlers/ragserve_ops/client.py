#!/usr/bin/env python3
"""Small TorchServe client shared by scripts, tests and benchmarks (stdlib only).

  python scripts/tsclient.py wait rag [llm]     # block until each model has a READY worker
  python scripts/tsclient.py key                # print a valid inference key (renewed if it expired)
  python scripts/tsclient.py ready rag          # exit 0 if rag has a READY worker (no key: token auth off)
  python scripts/tsclient.py rotate             # mint a new inference key (the old one stops working), print it

TorchServe writes its keys to key_file.json in the directory it was started from. Inference and
management keys expire (`token_expiration_min`: 1500 in config.properties, 60 by TorchServe's default):
the clients here renew a refused key with the API key and retry once.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ragserve.api.redirects import urlopen

ROOT = Path(__file__).resolve().parents[2]  # the repository (the package is installed editable from it)
INFERENCE_URL = "http://127.0.0.1:8080"
MANAGEMENT_URL = "http://127.0.0.1:8081"
RENEW_LOCK = threading.Lock()
KEY_FILE_READS = 10  # 0.1 s apart


def read_key(kind: str = "inference", key_file: Path = ROOT / "key_file.json") -> str:
    """kind: 'inference', 'management' or 'API' (the key that renews the other two).

    TorchServe rewrites the file in place when a key is renewed, so a read can meet it half
    written: a file that does not parse is read again, 0.1 s apart, up to KEY_FILE_READS times.
    """
    hint = "is TorchServe running?"
    for _ in range(KEY_FILE_READS):
        try:
            keys = json.loads(key_file.read_text())
            break
        except ValueError:
            time.sleep(0.1)
        except OSError as err:
            raise SystemExit(f"cannot read the {kind} key from {key_file} ({err}): {hint}") from err
    else:
        raise SystemExit(f"cannot parse {key_file}: {hint}")
    try:
        return keys[kind]["key"]
    except (KeyError, TypeError) as err:
        raise SystemExit(f"{key_file} holds no {kind} key ({err!r}): {hint}") from err


def management_url_of(inference_url: str) -> str:
    """The management API beside an inference URL: same host, next port (this project's layout)."""
    parts = urllib.parse.urlsplit(inference_url)
    return f"{parts.scheme}://{parts.hostname}:{(parts.port or 80) + 1}"


def is_key_refused(status: int, text: str) -> bool:
    """TorchServe 0.12 refuses a missing, wrong or expired key with HTTP 400 InvalidKeyException."""
    return status == 400 and "InvalidKeyException" in text


@dataclass
class Keys:
    """TorchServe's key_file.json, renewed with the API key when the server refuses an expired key.

    Inference and management keys expire after `token_expiration_min` (60 by default); the API
    key does not, and `GET <management>/token?type=<kind>` with it issues a new key of that kind
    and rewrites key_file.json.
    """

    key_file: Path = ROOT / "key_file.json"
    management_url: str = MANAGEMENT_URL

    def get(self, kind: str = "inference") -> str:
        return read_key(kind, self.key_file)

    def renew(self, kind: str, refused: str) -> str:
        """A key of this kind that is not `refused`: the file's, if another client renewed it already.

        TorchServe keeps one key per kind, so each renewal revokes the one before: threads that were
        refused together must renew once, not once each (RENEW_LOCK).
        """
        with RENEW_LOCK:
            current = self.get(kind)
            if current != refused:
                return current
            url = f"{self.management_url}/token?type={kind}"
            status, _, text = request(url, key=self.get("API"), timeout_s=10)
            if status != 200:
                raise SystemExit(f"renewing the {kind} key at {url} failed: HTTP {status} {text[:200]}")
            return self.get(kind)


def call(
    url: str,
    body: bytes | None = None,
    keys: Keys | None = None,
    kind: str = "inference",
    content_type: str = "text/plain",
    timeout_s: float = 120.0,
) -> tuple[int, str, str]:
    """`request` with the key of `kind` from keys; a refused key is renewed and the call retried once."""
    keys = keys or Keys()
    key = keys.get(kind)
    status, reply_type, text = request(url, body, key, content_type, timeout_s)
    if is_key_refused(status, text):
        status, reply_type, text = request(url, body, keys.renew(kind, key), content_type, timeout_s)
    return status, reply_type, text


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
        with urlopen(req, timeout=timeout_s) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode(errors="replace")


def fresh_key(inference_url: str = INFERENCE_URL, keys: Keys | None = None) -> str:
    """An inference key the server accepts now (renewed if it had expired), for clients like curl or ab."""
    keys = keys or Keys(management_url=management_url_of(inference_url))
    status, _, text = call(f"{inference_url}/ping", keys=keys, timeout_s=10)
    if status != 200:
        raise SystemExit(f"{inference_url}/ping answered HTTP {status}: {text[:200]}")
    return keys.get("inference")


def stream(
    url: str, body: bytes, keys: Keys, content_type: str = "application/json", timeout_s: float = 300.0
) -> Iterator[str]:
    """POST and yield the response body piece by piece as the server flushes it (chunked transfer)."""
    key = keys.get("inference")
    for attempt in range(2):
        req = urllib.request.Request(
            url, data=body, headers={"Content-Type": content_type, "Authorization": f"Bearer {key}"}, method="POST"
        )
        try:
            with urlopen(req, timeout=timeout_s) as response:
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                while piece := response.read1(4096):
                    yield decoder.decode(piece)
                return
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            if attempt == 0 and is_key_refused(err.code, text):
                key = keys.renew("inference", key)
                continue
            raise SystemExit(f"{url} answered HTTP {err.code}: {text}") from err


def count_ready(description: list[dict]) -> int:
    """READY workers in a management API model description (`GET /models/<name>`)."""
    return sum(w.get("status") == "READY" for entry in description for w in entry.get("workers", []))


def describe(model: str, keys: Keys, token_auth: bool = True) -> list[dict]:
    """The management API's description of a model (`GET /models/<name>`); [] when it answers anything but 200.
    token_auth False: no key is sent (a server with `disable_token_authorization=true`)."""
    url = f"{keys.management_url}/models/{model}"
    status, _, text = call(url, keys=keys, kind="management", timeout_s=5) if token_auth else request(url, timeout_s=2)
    return json.loads(text) if status == 200 else []


def ready_workers(model: str, keys: Keys) -> int:
    return count_ready(describe(model, keys))


def is_serving(description: list[dict], all_workers: bool = False) -> bool:
    """Whether a model description has a READY worker; all_workers: as many READY workers as its minWorkers."""
    wanted = sum(entry.get("minWorkers", 1) for entry in description) if all_workers else 1
    return count_ready(description) >= max(wanted, 1)


def server_pid(tmp_dir: Path) -> int | None:
    """The frontend's pid from the pid file `torchserve --start` writes in its TMPDIR."""
    try:
        return int((tmp_dir / ".model_server.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited child nobody has reaped yet is still "there" for kill(0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# Log lines that say why the frontend stopped, most specific first.
FAILURE_MARKERS = ("Failed to bind", "Address already in use", "Exception", "ERROR", "Error")


def failure_reason(log_dir: Path) -> str:
    """The log line that says why TorchServe stopped (torchserve.out, then ts_log.log)."""
    lines = []
    for name in ("torchserve.out", "ts_log.log"):
        path = log_dir / name
        if path.is_file():
            lines += path.read_text(errors="replace").splitlines()
    for marker in FAILURE_MARKERS:
        for line in lines:
            if marker in line:
                return line.strip()[:500]
    return f"no error line in {log_dir}"


STARTED_LINE = "Model server started."  # TorchServe prints it once REST and gRPC servers are bound


def has_started(console: Path, offset: int = 0) -> bool:
    """Whether TorchServe's console output, from byte offset on, says every server is listening."""
    try:
        with open(console, "rb") as f:
            f.seek(offset)
            return STARTED_LINE.encode() in f.read()
    except OSError:
        return False


def wait_ready(
    models: list[str],
    timeout_s: float = 1800,
    keys: Keys | None = None,
    log_dir: Path = ROOT / "logs",
    tmp_dir: Path | None = None,
    console_offset: int = 0,
    token_auth: bool = True,
    all_workers: bool = False,
) -> float:
    """Wait until TorchServe has bound all its ports and every model has a ready worker; returns seconds.

    Fails within a second or two when the frontend exits (a port taken, a bad config), with the log
    line that says why, instead of waiting out the timeout. tmp_dir holds the pid file (TMPDIR);
    log_dir/torchserve.out is the console output, read from console_offset on. token_auth False:
    a server with `disable_token_authorization=true`, which writes no key file. all_workers: wait
    until each model has its minWorkers READY, not just one.
    """
    keys = keys or Keys()
    tmp_dir = tmp_dir or Path(tempfile.gettempdir())
    start = time.monotonic()
    pending, started = list(models), False
    while pending or not started:
        pid = server_pid(tmp_dir)
        if pid is not None and not is_running(pid):
            raise SystemExit(f"TorchServe (pid {pid}) exited while starting: {failure_reason(log_dir)}")
        if time.monotonic() - start > timeout_s:
            raise SystemExit(f"models {pending} not ready after {timeout_s:.0f} s; see {log_dir / 'model_log.log'}")
        started = started or has_started(log_dir / "torchserve.out", console_offset)
        try:
            pending = [m for m in pending if not is_serving(describe(m, keys, token_auth), all_workers)]
        except (SystemExit, OSError):
            pass  # server still starting: no key file or no listener yet
        if pending or not started:
            time.sleep(0.5)
    return time.monotonic() - start


def is_ready(model: str, management_url: str = MANAGEMENT_URL) -> bool:
    """One look, without a key, at whether a model has a READY worker (servers with token auth off).

    Not `/ping`: TorchServe 0.12 answers it 200 while the worker is still loading (seen in the
    access log of `make test-scale`), so it tells that the frontend is up, not that it can answer.
    """
    try:
        status, _, text = request(f"{management_url}/models/{model}", timeout_s=2)
    except OSError:
        return False
    return status == 200 and count_ready(json.loads(text)) > 0


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "wait":
        waited = wait_ready(sys.argv[2:] or ["rag"])
        print(f"ready: {', '.join(sys.argv[2:] or ['rag'])} after {waited:.1f} s")
    elif len(sys.argv) == 2 and sys.argv[1] == "key":
        print(fresh_key())
    elif len(sys.argv) == 2 and sys.argv[1] == "rotate":  # a new inference key; the old one stops working
        keys = Keys()
        print(keys.renew("inference", keys.get("inference")))
    elif len(sys.argv) >= 3 and sys.argv[1] == "ready":  # a pod's readiness probe: exit status only
        sys.exit(0 if all(is_ready(model) for model in sys.argv[2:]) else 1)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
