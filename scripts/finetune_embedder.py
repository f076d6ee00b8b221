#!/usr/bin/env python3
"""Fine-tune the whole embedder on the live index's own pairs, for a GPU: `make finetune`.

  python scripts/finetune_embedder.py --config configs/rag-docs.yaml                  # 1 epoch, batch 64, write
  python scripts/finetune_embedder.py --config configs/rag-docs.yaml --epochs 2 --out models/mine
  python scripts/finetune_embedder.py --max-steps 3 --batch-size 16 --no-recall --out /tmp/probe   # CPU cost probe

The pairs are `make adapt`'s (embedding/adapter.py corpus_pairs over the chunks of the config's live index
version: heading path or page title -> chunk text; stand-ins for questions, not questions). A seeded share of
the distinct queries is held out, as adapt holds them out (the same rule, not the same queries). The model at
embedding.model_path is trained as sentence-transformers loads it (Transformer -> mean Pooling [-> Normalize])
with MultipleNegativesRankingLoss (in-batch negatives, scale 20) through SentenceTransformerTrainer, a batch
sampler that keeps any text from appearing twice in a batch, AdamW at 2e-5 with 10% warm-up, and bf16 (else
fp16) autocast on CUDA. Held-out recall@1/@10 of the pairs (a held-out query finds any of its chunks among every
distinct chunk, all embedded by the model itself) is printed before and after, with the seconds per step.

It writes a sentence-transformers folder, models/<model>-ft-<line key>/ by default (git-ignored), that the
index builder and the workers load as any embedding.model_path. A new model is a new embedding cache (its
key covers the model folder's name): `make index` with it re-embeds the whole corpus. The last stdout line is
the folder. On 2 CPU cores a step of 16 pairs of all-mpnet-base-v2 took 36 CPU-s, so an epoch over 10,000
pairs ~6 CPU-hours (~7 h on a shared 2-core machine; docs/indexing.md): it is a GPU job.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.training_args import BatchSamplers
from transformers import TrainerCallback

from ragserve.config import Config, config_arguments
from ragserve.embedding.adapter import RECALL_KS, corpus_pairs
from ragserve.index.line import IndexLine, line_key, read_jsonl
from ragserve.runtime import build_device

ROOT = Path(__file__).resolve().parent.parent
PAIRS_FOR_ESTIMATE = 10_000


@dataclasses.dataclass(frozen=True)
class Split:
    """Pair rows for training, and the held-out distinct queries with the chunk positions each one pairs with."""

    train: np.ndarray  # pair rows
    heldout: list[str]  # distinct query texts
    relevant: list[set[int]]  # per held-out query: positions in `chunks`
    chunks: list[str]  # every distinct chunk text, the ranked set


def split_pairs(queries: Sequence[str], texts: Sequence[str], heldout: float, seed: int) -> Split:
    """Hold out a seeded share of the distinct queries (at least 1, all but 1 at most), with all their pairs."""
    distinct = sorted(set(queries))
    held = min(len(distinct) - 1, max(1, round(heldout * len(distinct)))) if heldout > 0 else 0
    kept_out = {distinct[i] for i in np.random.default_rng(seed).permutation(len(distinct))[:held]}
    chunks = sorted(set(texts))
    position = {text: i for i, text in enumerate(chunks)}
    relevant: dict[str, set[int]] = {query: set() for query in sorted(kept_out)}
    for query, text in zip(queries, texts, strict=True):
        if query in kept_out:
            relevant[query].add(position[text])
    train = np.array([i for i, query in enumerate(queries) if query not in kept_out], dtype=np.int64)
    return Split(train, list(relevant), list(relevant.values()), chunks)


def recall(model: SentenceTransformer, split: Split, batch_size: int) -> dict[str, float]:
    """recall@k: the share of held-out queries with any of their chunks in the model's top k of all chunks."""
    if not split.heldout:
        return {f"recall@{k}": float("nan") for k in RECALL_KS}
    model.eval()
    encode = dict(batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    docs = model.encode(split.chunks, **encode)  # (m, dim)
    scores = model.encode(split.heldout, **encode) @ docs.T  # (q, m)
    top = np.argsort(-scores, axis=1, kind="stable")[:, : max(RECALL_KS)]  # (q, 10) chunk positions, best first
    found = np.array(
        [[int(chunk) in relevant for chunk in row] for row, relevant in zip(top, split.relevant, strict=True)]
    )
    return {f"recall@{k}": float(found[:, :k].any(axis=1).mean()) for k in RECALL_KS}


class StepTimer(TrainerCallback):
    """Wall and process CPU seconds of each optimizer step (forward, backward, update of one batch).

    CPU seconds say what a step costs on a shared machine, where wall seconds also count the waits."""

    def __init__(self) -> None:
        self.seconds: list[tuple[float, float]] = []  # (wall, cpu) per step
        self._start = (0.0, 0.0)

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the step's kernels have run, not just been queued
        self.seconds.append((time.perf_counter() - self._start[0], time.process_time() - self._start[1]))

    def per_step(self) -> tuple[float, float]:
        """The mean (wall, cpu) step, leaving out the first (allocator and kernel warm-up) when there are more."""
        steps = self.seconds[1:] or self.seconds
        return tuple(np.mean(steps, axis=0).tolist()) if steps else (float("nan"), float("nan"))


def cost_line(step: tuple[float, float], batch_size: int, pairs: int, device: str, tokens: float) -> str:
    """The measured step and the epoch it extrapolates to: epoch ~= ceil(N / B) * t_step."""
    wall, cpu = step

    def epoch(n: int) -> str:
        return f"{math.ceil(n / batch_size) * wall / 3600:.2f} h"

    return (
        f"{wall:.2f} s/step ({cpu:.1f} CPU-s of this process) at batch {batch_size} on {device}, chunk side "
        f"{tokens:.0f} tokens on average; one epoch over N pairs ~= ceil(N / {batch_size}) x {wall:.2f} s: "
        f"{epoch(pairs)} for these {pairs} pairs, {epoch(PAIRS_FOR_ESTIMATE)} for {PAIRS_FOR_ESTIMATE:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arguments(parser, ROOT, "corpus.split=structure")
    parser.add_argument("--out", type=Path, help="model folder to write; default <root>/models/<model>-ft-<line key>")
    parser.add_argument("--epochs", type=float, default=1.0, help="default 1")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="pairs per step (the in-batch negatives); default 64"
    )
    parser.add_argument("--lr", type=float, default=2e-5, help="AdamW peak learning rate; default 2e-5")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of the steps warming up linearly; default 0.1")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N steps (a cost probe); default: epochs")
    parser.add_argument("--heldout", type=float, default=0.1, help="share of distinct queries held out; default 0.1")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    parser.add_argument(
        "--no-recall", action="store_true", help="skip the held-out recall (it embeds every chunk twice)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    cfg = Config.from_yaml(args.config, args.root, dict(args.set))
    if cfg.embedding.pooling != "mean":
        sys.exit("fine-tuning trains the model's mean pooling: embedding.pooling must be 'mean'")
    line = IndexLine.of(cfg)
    version = line.current()
    if version is None:
        sys.exit(f"no live index version at {line.root}: build it first with `make index` (same --config/--set)")
    name = Path(cfg.embedding.model_path).name
    out = args.out or args.root / "models" / f"{name}-ft-{line_key(cfg)}"
    if out.name == name:  # embedding/cache.py keys the cache by the folder's name (and its weights' size)
        sys.exit(f"--out {out}: name the fine-tuned folder unlike the base model's ({name}), or it shares its cache")
    if out.exists():
        # new weights under the same name keep the cache key: name and weights' size do not change
        sys.exit(f"{out} exists: pick another --out (new weights under the same name would reuse its cached vectors)")
    queries, texts = corpus_pairs(read_jsonl(line.folder(version) / "chunks.jsonl"))
    split = split_pairs(queries, texts, args.heldout, args.seed)
    if not len(split.train):
        sys.exit(f"no training pairs: {len(set(queries))} distinct queries, {len(split.heldout)} held out")
    print(
        f"version {version}: {len(queries)} pairs, {len(set(queries))} distinct queries; "
        f"{len(split.train)} training pairs, {len(split.heldout)} queries held out",
        file=sys.stderr,
    )

    device = build_device(cfg.runtime)
    model = SentenceTransformer(cfg.embedding.model_path, device=device)
    model.max_seq_length = cfg.embedding.max_seq_length  # truncate as the index builder does
    before = None if args.no_recall else recall(model, split, cfg.embedding.batch_size)
    anchors, positives = [queries[i] for i in split.train], [texts[i] for i in split.train]
    # column order is the loss's: (anchor, positive); the other rows' positives are each anchor's negatives
    train = Dataset.from_dict({"anchor": anchors, "positive": positives})
    tokens = float(np.mean([min(len(ids), model.max_seq_length) for ids in model.tokenizer(positives)["input_ids"]]))
    cuda = device == "cuda"
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="finetune-") as scratch:
        training = SentenceTransformerTrainingArguments(
            output_dir=scratch,  # nothing is saved there (save_strategy "no"); the model is saved below
            num_train_epochs=args.epochs,
            max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr,
            warmup_steps=args.warmup,  # < 1: a share of the steps
            bf16=cuda and torch.cuda.is_bf16_supported(),
            fp16=cuda and not torch.cuda.is_bf16_supported(),
            use_cpu=not cuda,  # runtime.device: cpu keeps a GPU host's run on the CPU
            # no text twice in a batch: a title paired with several chunks would be its own false negative
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no",
            report_to="none",
            logging_steps=max(1, min(50, args.max_steps if args.max_steps > 0 else 50)),
            seed=args.seed,
            data_seed=args.seed,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=training,
            train_dataset=train,
            loss=MultipleNegativesRankingLoss(model),
            callbacks=[timer],
        )
        with contextlib.redirect_stdout(sys.stderr):  # its log lines: stdout carries only the folder
            result = trainer.train()
    after = None if args.no_recall else recall(model, split, cfg.embedding.batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    for path in out.rglob("*"):  # the weights file comes out rw-------: make it readable as the base model's
        if path.is_file():
            path.chmod(path.stat().st_mode | 0o044)
    if before is not None and after is not None:
        changes = ", ".join(f"{k} {before[k]:.3f} -> {after[k]:.3f}" for k in before)
        print(
            f"held-out recall ({len(split.heldout)} queries over {len(split.chunks)} chunks): {changes}",
            file=sys.stderr,
        )
    print(
        f"{len(timer.seconds)} steps, training loss {result.training_loss:.3f}; "
        + cost_line(timer.per_step(), args.batch_size, len(split.train), device, tokens),
        file=sys.stderr,
    )
    print(
        f"fine-tuned model written. Use it: `--set embedding.model_path={out}` (scripts, eval), or "
        "`embedding: {model_path: ...}` in the model yaml. A new model is a new embedding cache: `make index` "
        "with it re-embeds the whole corpus. `make eval` with it beside the base model says whether it helps",
        file=sys.stderr,
    )
    print(out)


if __name__ == "__main__":
    main()
