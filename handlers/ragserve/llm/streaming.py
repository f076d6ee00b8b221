"""Per-row incremental text of one batched generate() call: the streamer transformers calls each step.

Public names: BatchStreamer, new_text (the text a growing token list adds, also used by inflight.py).
transformers' generate calls put() first with the prompt ids (n, prompt_len), then once per decode
step with the new tokens (n,); BatchStreamer decodes each row's new tokens and hands the text added
since its last call to on_piece(index, text), index being the caller's for that row. A row sends
nothing after its first stop token; rows past len(indices) (batch padding) send nothing at all.
No TorchServe imports.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers.generation.streamers import BaseStreamer


class BatchStreamer(BaseStreamer):
    """Streams every row of a batch at once (transformers' TextStreamer accepts batch size 1 only)."""

    def __init__(self, tokenizer, stop_ids: set[int], indices: list[int], on_piece: Callable[[int, str], None]) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.indices = indices
        self.on_piece = on_piece
        self.tokens: list[list[int]] = [[] for _ in indices]
        self.sent_chars = [0] * len(indices)
        self.done = [False] * len(indices)
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call carries the prompts, which are not part of the answer
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()[: len(self.indices)]):  # (n,)
            if self.done[row]:
                continue
            if token in self.stop_ids:
                self.done[row] = True
                continue
            self.tokens[row].append(token)
            self._flush(row)

    def end(self) -> None:
        """Nothing is held back at the end: _flush only waits for the rest of a multi-byte character."""

    def _flush(self, row: int) -> None:
        piece, self.sent_chars[row] = new_text(self.tokenizer, self.tokens[row], self.sent_chars[row])
        if piece:
            self.on_piece(self.indices[row], piece)


def new_text(tokenizer, tokens: list[int], sent_chars: int) -> tuple[str, int]:
    """The text tokens decode to past its first sent_chars characters, and the new count of characters sent."""
    # Decoding the whole row again (not the new token alone) keeps byte-level BPE characters intact.
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    if text.endswith("\ufffd"):  # half of a multi-byte character: wait for its other bytes
        return "", sent_chars
    return text[sent_chars:], max(len(text), sent_chars)
