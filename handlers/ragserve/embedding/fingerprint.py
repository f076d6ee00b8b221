"""A model folder's content identity: sha256 over its files, computed once and stored beside them.

Public names: RECORD, model_fingerprint.
The embedding cache and every index line are keyed by the model that made their vectors (cache.model_identity).
A folder's name and its weights' size do not say which model that is: a fine-tuned checkpoint saved over the old
folder has the same size, and a new tokenizer changes no weight. So the identity is the sha256 of every file the
folder ships (weights, tokenizer, configs, model card; not our own `onnx/` exports, whose names carry what made
them). Hashing 440 MB takes a second or two; the result is stored in the folder (RECORD) with each file's size
and mtime, and reused while those are unchanged, as make and rsync decide that a file changed. A read-only
folder (an unpacked archive) is hashed at each start instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

RECORD = ".ragserve-fingerprint.json"
OWN_FOLDERS = ("onnx",)  # exports this project writes into the model folder (embedding/onnxrt.py)
CHUNK = 1 << 20


def model_fingerprint(folder: Path) -> str | None:
    """sha256 (hex) over the folder's files, names and contents; None when folder is not a local folder (a hub id)."""
    if not folder.is_dir():
        return None
    files = _files(folder)
    stats = [[name, size, mtime] for name, (size, mtime) in files.items()]
    record = folder / RECORD
    try:
        stored = json.loads(record.read_text(encoding="utf-8"))
        if stored.get("files") == stats:
            return stored["sha256"]
    except (OSError, ValueError, AttributeError):
        pass  # no record yet, or an unreadable one: hash
    digest = hashlib.sha256()
    for name, (size, _) in files.items():
        digest.update(f"{name}\0{size}\0".encode())
        with open(folder / name, "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
    fingerprint = digest.hexdigest()
    _store(record, {"sha256": fingerprint, "files": stats})
    return fingerprint


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every file but dotfiles (our record, download markers, locks) and
    the project's own exports, in sorted order."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if relative.parts[0] in OWN_FOLDERS or any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            stat = path.stat()
            found[relative.as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def _store(record: Path, content: dict) -> None:
    """Written beside, then renamed (two workers hashing at once each write a whole file)."""
    partial = record.with_name(f"{RECORD}.{os.getpid()}.partial")
    try:
        partial.write_text(json.dumps(content) + "\n", encoding="utf-8")
        os.replace(partial, record)
    except OSError as error:  # a read-only folder: hashed again at the next start
        logger.info("model fingerprint not stored in %s (%s): it is computed at every start", record.parent, error)
        partial.unlink(missing_ok=True)
