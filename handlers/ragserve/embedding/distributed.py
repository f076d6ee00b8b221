"""Embedding on a Ray cluster: Ray Data spreads texts over an actor pool, each actor holding one Encoder.

Public names: connect, RayEncoder.
connect(address, runtime) joins the cluster and says where its workers embed ("cuda" when runtime.device is
auto and the cluster has GPUs). RayEncoder.embed(texts) returns (len(texts), dim) float32 unit rows in the
order of texts: each actor runs this package's Encoder, so the vectors are Encoder.embed's. It stands in for
the Encoder behind the builder's embedding cache (cache.py), so only texts the cache lacks travel. Every
node needs the package and the model folder at the same path. No TorchServe; only the builder uses it.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import ray
import ray.data
import torch
from transformers import AutoConfig

from ragserve.config import CompileConfig, EmbeddingConfig, RuntimeConfig
from ragserve.embedding.encoder import Encoder

logger = logging.getLogger(__name__)
BATCHES_PER_WORKER = 4  # Ray batches per actor at least: a slow node does not hold the whole job back
MAX_BATCH_ROWS = 1024  # texts per Ray batch at most (the actor's Encoder batches them again)


def connect(address: str, runtime: RuntimeConfig) -> str:
    """Join the Ray cluster at address ("host:port" or "auto"); the device its workers embed on."""
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    return "cuda" if runtime.device == "auto" and gpus > 0 else "cpu"


class _EmbedBatch:
    """One actor of the pool: loads the Encoder once, then embeds the Ray batches it is given."""

    def __init__(self, cfg: EmbeddingConfig, compile_cfg: CompileConfig, device: str, threads: int) -> None:
        torch.set_num_threads(threads)  # the CPUs Ray reserved for this actor, not the node's
        self.encoder = Encoder(cfg, compile_cfg, device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.embed([str(text) for text in batch["text"]])  # (rows, dim)
        return {"position": batch["position"], "vector": vectors}


class RayEncoder:
    """An Encoder look-alike (embed, dimension) whose embed is one Ray Data job over an actor pool.

    workers: actors (one Encoder each); None: one per GPU on CUDA, else one per node with CPUs, each
    reserving the CPUs of the smallest such node (its torch threads)."""

    def __init__(
        self, cfg: EmbeddingConfig, compile_cfg: CompileConfig, device: str, workers: int | None = None
    ) -> None:
        self.cfg, self.compile_cfg, self.device = cfg, compile_cfg, device
        self.dimension = int(AutoConfig.from_pretrained(cfg.model_path).hidden_size)
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        cpus = [int(resources.get("CPU", 0)) for resources in nodes if resources.get("CPU", 0) >= 1]
        if device == "cuda":
            self.gpus, self.cpus = 1, 1
            self.workers = workers or int(ray.cluster_resources().get("GPU", 0))
        else:
            self.gpus, self.cpus = 0, min(cpus, default=1)
            self.workers = workers or len(cpus)
        if self.workers < 1:
            raise ValueError(f"the Ray cluster has no node to embed on ({device}): {nodes}")

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit rows, in the order of texts."""
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        start = time.perf_counter()
        # Longest first: a Ray batch holds texts of similar length, so the actor pads little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        rows = min(MAX_BATCH_ROWS, max(self.cfg.batch_size, -(-len(texts) // (BATCHES_PER_WORKER * self.workers))))
        items = [{"position": i, "text": texts[i]} for i in order]
        dataset = ray.data.from_items(items, override_num_blocks=-(-len(items) // rows))
        embedded = dataset.map_batches(
            _EmbedBatch,
            fn_constructor_args=(self.cfg, self.compile_cfg, self.device, self.cpus),
            batch_size=rows,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus,
            num_gpus=self.gpus,
        )
        done = np.zeros(len(texts), dtype=bool)
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            vectors[batch["position"]] = batch["vector"]  # (rows, dim): back where each text was asked
            done[batch["position"]] = True
        if not done.all():
            raise RuntimeError(f"the Ray job returned {done.sum()} of {len(texts)} vectors")
        seconds = time.perf_counter() - start
        logger.info(
            "embedded %d texts on %d Ray workers (%s, %d CPUs each) in %.1f s: %.1f texts/s",
            len(texts), self.workers, self.device, self.cpus, seconds, len(texts) / seconds,
        )  # fmt: skip
        return vectors
