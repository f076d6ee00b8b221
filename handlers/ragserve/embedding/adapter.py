"""A query-side embedding adapter: a learned map on question vectors, so the index never needs re-embedding.

Public names: QueryAdapter, AdapterError, AdapterMetrics, TrainSettings, train_adapter, corpus_pairs.
As LlamaIndex's EmbeddingAdapterFinetuneEngine (linear adapter): y = unit(W x + b), W starting at the
identity (optionally plus a residual ReLU MLP whose output starts at zero), trained on (query, chunk)
vector pairs with in-batch negatives (sentence-transformers' MultipleNegativesRankingLoss) and an L2
pull toward the identity. Vectors: (n, dim) float32 in, (n, dim) float32 unit rows out. Weights are
saved as safetensors (or .npz), never a pickle; `identity` (sha256 of the weights, 16 hex) names them.
Training is torch on CPU; applying is numpy. The pairs (corpus_pairs) are the corpus's own, not questions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

logger = logging.getLogger(__name__)

RECALL_KS = (1, 10)
FORMATS = (".safetensors", ".npz")


class AdapterError(ValueError):
    """An adapter file is missing, unreadable, or does not fit the vectors it is applied to."""


class QueryAdapter:
    """y = unit(x @ weight.T + bias [+ relu(x @ mlp.in.weight.T + mlp.in.bias) @ mlp.out.weight.T + mlp.out.bias]).

    weights: "weight" (dim, dim), "bias" (dim,), and for the residual MLP "mlp.in.weight" (hidden, dim),
    "mlp.in.bias" (hidden,), "mlp.out.weight" (dim, hidden), "mlp.out.bias" (dim,); float32.
    metadata: what it was trained on and how well (saved with it, not part of its identity)."""

    def __init__(self, weights: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
        self.weights = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()}
        self.metadata = dict(metadata or {})
        dim = self.dim
        if self.weights["weight"].shape != (dim, dim) or self.weights["bias"].shape != (dim,):
            raise AdapterError(f"adapter weight {self.weights['weight'].shape} and bias {self.weights['bias'].shape}")

    @classmethod
    def initial(cls, dim: int, hidden: int = 0, seed: int = 0) -> QueryAdapter:
        """The identity map (a residual MLP of `hidden` units, if any, adds zero: its output layer is zero)."""
        weights = {"weight": np.eye(dim, dtype=np.float32), "bias": np.zeros(dim, np.float32)}
        if hidden:
            scale = 1 / np.sqrt(dim)  # nn.Linear's init range
            rng = np.random.default_rng(seed)
            weights["mlp.in.weight"] = rng.uniform(-scale, scale, (hidden, dim)).astype(np.float32)
            weights["mlp.in.bias"] = np.zeros(hidden, np.float32)
            weights["mlp.out.weight"] = np.zeros((dim, hidden), np.float32)
            weights["mlp.out.bias"] = np.zeros(dim, np.float32)
        return cls(weights)

    @property
    def dim(self) -> int:
        return int(self.weights["weight"].shape[1])

    @property
    def identity(self) -> str:
        """sha256 of the weights (names, shapes, float32 bytes; 16 hex): the same map, the same name, in any format."""
        digest = hashlib.sha256()
        for name in sorted(self.weights):
            value = self.weights[name]
            digest.update(f"{name}:{list(value.shape)}:".encode())
            digest.update(value.tobytes())
        return digest.hexdigest()[:16]

    def check(self, dim: int, what: str) -> None:
        """AdapterError unless the adapter maps `dim`-wide vectors (those of `what`)."""
        if dim != self.dim:
            source = self.metadata.get("path", "the query adapter")
            raise AdapterError(
                f"{source} (retrieval.query_adapter) maps {self.dim}-d vectors but {what} holds {dim}-d ones: "
                "train one for this index's embedding model with `make adapt`"
            )

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) question vectors -> (n, dim) float32 unit rows."""
        self.check(vectors.shape[-1], "the vectors given")
        w = self.weights
        x = np.asarray(vectors, dtype=np.float32)
        y = x @ w["weight"].T + w["bias"]  # (n, dim)
        if "mlp.in.weight" in w:
            y += np.maximum(x @ w["mlp.in.weight"].T + w["mlp.in.bias"], 0) @ w["mlp.out.weight"].T + w["mlp.out.bias"]
        return (y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the weights (and metadata) as .safetensors or .npz, by path's suffix; returns path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {**self.metadata, "identity": self.identity}
        metadata.pop("path", None)
        if path.suffix == ".npz":
            np.savez(path, **self.weights, __metadata__=np.array(json.dumps(metadata, sort_keys=True)))
        elif path.suffix == ".safetensors":
            save_file(self.weights, str(path), metadata=metadata)
        else:
            raise AdapterError(f"{path}: an adapter file ends in {' or '.join(FORMATS)}")
        return path

    @classmethod
    def load(cls, path: str | Path) -> QueryAdapter:
        """Read a file save() wrote (no pickle: safetensors, or an .npz read with allow_pickle=False)."""
        path = Path(path)
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as saved:
                    weights = {name: saved[name] for name in saved.files if name != "__metadata__"}
                    metadata = json.loads(str(saved["__metadata__"])) if "__metadata__" in saved.files else {}
            elif path.suffix == ".safetensors":
                with safe_open(str(path), "np") as saved:
                    weights = {name: saved.get_tensor(name) for name in saved.keys()}
                    metadata = saved.metadata() or {}
            else:
                raise AdapterError(f"{path}: an adapter file ends in {' or '.join(FORMATS)}")
        except (OSError, ValueError, KeyError, SafetensorError) as err:
            raise AdapterError(f"retrieval.query_adapter: cannot read {path} ({err})") from err
        if "weight" not in weights or "bias" not in weights:
            raise AdapterError(f"{path} is no query adapter: it lacks 'weight' or 'bias'")
        return cls(weights, {**metadata, "path": str(path)})


@dataclass(frozen=True)
class TrainSettings:
    """How train_adapter trains: defaults for ~10k pairs of 768-d vectors."""

    epochs: int = 8
    batch_size: int = 128  # pairs per step; the other pairs of a batch are each query's negatives
    lr: float = 1e-3  # AdamW
    temperature: float = 0.05  # logits = cosine / temperature (MultipleNegativesRankingLoss's scale 20)
    identity_pull: float = 1e-3  # weight of the squared L2 distance of the parameters from the identity map
    heldout: float = 0.1  # share of the distinct queries held out (never trained on) for the recall report (>= 1)
    hidden: int = 0  # > 0: add a residual MLP of this many ReLU units to the linear map
    seed: int = 0


@dataclass(frozen=True)
class AdapterMetrics:
    """Held-out pair retrieval (a held-out query finds any of its chunks among every distinct chunk)."""

    pairs: int  # training pairs
    heldout_queries: int
    chunks: int  # distinct chunks ranked
    before: dict[str, float]  # recall@k of the identity map
    after: dict[str, float]  # recall@k of the trained adapter
    loss: float  # mean training loss of the last epoch
    seconds_per_epoch: float

    def summary(self) -> str:
        changes = ", ".join(f"{k} {self.before[k]:.3f} -> {self.after[k]:.3f}" for k in self.before)
        return (
            f"held-out recall ({self.heldout_queries} queries over {self.chunks} chunks): {changes}; "
            f"{self.pairs} training pairs, last epoch loss {self.loss:.3f}, {self.seconds_per_epoch:.2f} s/epoch"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def train_adapter(
    query_vecs: np.ndarray, doc_vecs: np.ndarray, settings: TrainSettings | None = None
) -> tuple[QueryAdapter, AdapterMetrics]:
    """Train a QueryAdapter on (n, dim) pair rows (query_vecs[i] should retrieve doc_vecs[i]); seeded, deterministic.

    Equal rows are one query (or one chunk): a query's other chunks are never its in-batch negatives, and
    the held-out split is by distinct query, so no held-out query is trained on under another pair."""
    settings = settings or TrainSettings()
    queries, query_of = np.unique(np.asarray(query_vecs, np.float32), axis=0, return_inverse=True)
    docs, doc_of = np.unique(np.asarray(doc_vecs, np.float32), axis=0, return_inverse=True)
    query_of, doc_of = query_of.reshape(-1), doc_of.reshape(-1)  # (n,) each pair's query and chunk
    pairs = _Pairs(docs, query_of, doc_of, np.unique(query_of * len(docs) + doc_of))
    held = min(len(queries) - 1, max(1, round(settings.heldout * len(queries)))) if settings.heldout > 0 else 0
    heldout = np.random.default_rng(settings.seed).permutation(len(queries))[:held]  # distinct query positions
    train = np.flatnonzero(~np.isin(query_of, heldout))  # pair rows
    if not len(train):
        raise AdapterError(f"no training pairs: {len(queries)} distinct queries, {len(heldout)} held out")
    initial = QueryAdapter.initial(queries.shape[1], settings.hidden, settings.seed)
    before = pairs.recall(initial, queries[heldout], heldout)
    start = time.perf_counter()
    weights, loss = _fit(initial, queries[query_of[train]], train, pairs, settings)
    seconds = (time.perf_counter() - start) / max(settings.epochs, 1)
    adapter = QueryAdapter(weights)
    after = pairs.recall(adapter, queries[heldout], heldout)
    metrics = AdapterMetrics(len(train), len(heldout), len(docs), before, after, loss, seconds)
    logger.info("query adapter %s: %s", adapter.identity, metrics.summary())
    return adapter, metrics


@dataclass(frozen=True)
class _Pairs:
    """Distinct chunks (m, dim), each pair row's query and chunk positions, and every pair's key (query * m + chunk)."""

    docs: np.ndarray
    query_of: np.ndarray
    doc_of: np.ndarray
    keys: np.ndarray  # sorted

    def paired(self, queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """Whether query positions and chunk positions make pairs, element by element (numpy broadcasting)."""
        keys = queries * len(self.docs) + docs
        found = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
        return self.keys[found] == keys

    def recall(self, adapter: QueryAdapter, vectors: np.ndarray, queries: np.ndarray) -> dict[str, float]:
        """recall@k: the share of queries (their vectors and positions) with any of their chunks in the top k."""
        if not len(queries):
            return {f"recall@{k}": float("nan") for k in RECALL_KS}
        hits = {k: 0 for k in RECALL_KS}
        depth = min(max(RECALL_KS), len(self.docs))
        for start in range(0, len(queries), 1024):  # bounded memory: 1024 x chunks scores at a time
            scores = adapter.apply(vectors[start : start + 1024]) @ self.docs.T  # (b, m)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]  # (b, depth)
            found = self.paired(queries[start : start + 1024, None], top)  # (b, depth)
            for k in RECALL_KS:
                hits[k] += int(found[:, :k].any(axis=1).sum())
        return {f"recall@{k}": hits[k] / len(queries) for k in RECALL_KS}


def _fit(
    initial: QueryAdapter, queries: np.ndarray, rows: np.ndarray, pairs: _Pairs, settings: TrainSettings
) -> tuple[dict[str, np.ndarray], float]:
    """AdamW on InfoNCE with in-batch negatives plus the pull toward initial; the weights and the last epoch's loss.

    queries: (len(rows), dim) the query vector of each training pair row. Batches are drawn from a seeded
    numpy generator and every op is a CPU matmul or elementwise: the same inputs give the same weights."""
    start = {name: torch.from_numpy(value) for name, value in initial.weights.items()}
    params = {name: value.clone().requires_grad_(True) for name, value in start.items()}
    optimizer = torch.optim.AdamW(params.values(), lr=settings.lr, weight_decay=0.0)  # the pull replaces decay
    x_all, d_all = torch.from_numpy(queries), torch.from_numpy(pairs.docs[pairs.doc_of[rows]])
    rng = np.random.default_rng(settings.seed + 1)
    steps = max(1, -(-len(rows) // settings.batch_size))
    losses: list[float] = []
    for _ in range(settings.epochs):
        losses = []
        for batch in np.array_split(rng.permutation(len(rows)), steps):
            query_of, doc_of = pairs.query_of[rows[batch]], pairs.doc_of[rows[batch]]
            # another row's chunk that is also this row's query's chunk is no negative of it
            other_pair = pairs.paired(query_of[:, None], doc_of[None, :]) & ~np.eye(len(batch), dtype=bool)
            logits = _forward(params, x_all[batch]) @ d_all[batch].T / settings.temperature  # (b, b)
            logits = logits.masked_fill(torch.from_numpy(other_pair), float("-inf"))
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            loss = loss + settings.identity_pull * sum(((params[n] - start[n]) ** 2).sum() for n in params)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return {name: value.detach().numpy().copy() for name, value in params.items()}, float(np.mean(losses or [0.0]))


def _forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """QueryAdapter.apply in torch: (b, dim) -> (b, dim) unit rows."""
    y = x @ params["weight"].T + params["bias"]
    if "mlp.in.weight" in params:
        hidden = torch.relu(x @ params["mlp.in.weight"].T + params["mlp.in.bias"])  # (b, hidden)
        y = y + hidden @ params["mlp.out.weight"].T + params["mlp.out.bias"]
    return torch.nn.functional.normalize(y, dim=-1)


def corpus_pairs(chunks: Sequence[Mapping]) -> tuple[list[str], list[str]]:
    """(query texts, chunk texts), one per distinct pair, from a version's chunks.jsonl rows {"text", "metadata"}.

    A chunk pairs with its heading path (its first line, when that reads "Title > Section > ...": chunk_header,
    or split "structure") or else with its page's title; a page's first chunk (its lead) pairs with the title too.
    The chunk side is the chunk's text as indexed, so its vector is the index's own (an embedding-cache hit).
    A heading path or a title is a stand-in for a question, not one: it names what the chunk is about the way
    a reader's question might, but it is shorter, never asks, and a chunk that starts with its heading path
    already contains it. An adapter trained on these pairs learns to map names of things to the chunks about
    them; whether that helps real questions is for `make eval` to say, with the adapter as a variant."""
    pairs: dict[tuple[str, str], None] = {}
    pages: set[str] = set()
    for chunk in chunks:
        text, metadata = chunk["text"], chunk.get("metadata") or {}
        title = str(metadata.get("title") or "").strip()
        first_line = text.split("\n", 1)[0].strip()
        query = first_line if " > " in first_line else title
        if query:
            pairs[(query, text)] = None
        page = metadata.get("source", "")
        if title and page not in pages:
            pairs[(title, text)] = None
        pages.add(page)
    return [query for query, _ in pairs], [text for _, text in pairs]
