"""BatchStreamer on the tiny byte-level BPE (SmolLM2's kind of tokenizer, tests/fixtures): per-row pieces, stop tokens,
padded rows, split UTF-8 characters. The stop-token test needs " yes" and " no" as one token each, as SmolLM2 has
them (the tiny vocabulary splits them): it reads SmolLM2's own tokenizer (`model` mark)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from ragserve.llm.streaming import BatchStreamer
from ragserve_ops.testing import TINY_LLAMA_TOKENIZER


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TINY_LLAMA_TOKENIZER)


@pytest.fixture(scope="module")
def smollm2_tokenizer(llm_dir: Path):
    return AutoTokenizer.from_pretrained(llm_dir)


def feed(tokenizer, rows: list[list[int]], indices: list[int], stop_ids: set[int]) -> dict[int, list[str]]:
    """Drive the streamer as generate() does: the prompts first, then one column of new tokens per step."""
    pieces: dict[int, list[str]] = {i: [] for i in indices}
    streamer = BatchStreamer(tokenizer, stop_ids, indices, lambda i, piece: pieces[i].append(piece))
    streamer.put(torch.zeros(len(rows), 3, dtype=torch.long))  # (n, prompt_len): not part of the answer
    for step in range(len(rows[0])):
        streamer.put(torch.tensor([row[step] for row in rows]))  # (n,)
    streamer.end()
    return pieces


def test_each_row_streams_its_own_text_to_its_index(tokenizer) -> None:
    first, second = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (" Paris is big", " Rome too!"))
    width = max(len(first), len(second))
    pad = tokenizer.eos_token_id
    rows = [first + [pad] * (width - len(first)), second + [pad] * (width - len(second))]
    pieces = feed(tokenizer, rows, [7, 3], {pad})
    assert "".join(pieces[7]) == " Paris is big" and "".join(pieces[3]) == " Rome too!"


@pytest.mark.model
def test_nothing_after_a_stop_token_and_nothing_from_padded_rows(smollm2_tokenizer) -> None:
    tokenizer = smollm2_tokenizer
    words = tokenizer(" yes no", add_special_tokens=False)["input_ids"]
    stop = tokenizer.eos_token_id
    rows = [[words[0], stop, words[1]], [words[0], words[1], words[1]]]  # row 2 is batch padding
    assert feed(tokenizer, rows, [0], {stop}) == {0: [" yes"]}


def test_a_character_split_over_tokens_arrives_whole(tokenizer) -> None:
    ids = tokenizer("日本", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1  # byte-level BPE splits these characters
    pieces = feed(tokenizer, [ids], [0], set())
    assert "".join(pieces[0]) == "日本" and all("\ufffd" not in piece for piece in pieces[0])
