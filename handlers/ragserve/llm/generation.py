"""Text generation with any Hugging Face causal LM: prompts in, only the new text out.

Public names: Generator, Sampling, Completion.
`generate(prompts, sampling, on_piece=None)` runs one left-padded batch per distinct sampling setting
and returns one Completion(text, prompt_tokens, completion_tokens) per prompt; with on_piece, every
row's text is also handed over as it is decoded (streamed and plain requests decode together).
`stream(prompt, sampling)` yields one prompt's pieces. The prompt is wrapped as a user message with
the tokenizer's chat template when the config says so.
Compiled decode (`compile`): a static KV cache sized to a declared bucket (batch_buckets x
cache_buckets; batches are padded up to a bucket) and transformers' own compiled decode step, every
bucket warmed in __init__, so no request compiles. Eager (a growing cache) otherwise. No TorchServe.
"""

from __future__ import annotations

import bisect
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StaticCache

from ragserve.compilation import decode_compile_config, warm_up
from ragserve.config import ConfigError, GenerateConfig, LLMConfig
from ragserve.llm.quantization import quantize
from ragserve.llm.streaming import BatchStreamer

logger = logging.getLogger(__name__)
Prompt = str | Sequence[dict[str, str]]  # a text prompt (one user message) or a chat's messages


@dataclass(frozen=True)
class Sampling:
    """How one request decodes. The defaults are generate's (config/llm.py GenerateConfig), their one home."""

    max_new_tokens: int
    do_sample: bool = GenerateConfig.do_sample
    temperature: float = GenerateConfig.temperature
    top_p: float = GenerateConfig.top_p
    repetition_penalty: float = GenerateConfig.repetition_penalty  # 1 = off
    no_repeat_ngram_size: int = GenerateConfig.no_repeat_ngram_size  # 0 = off
    stop: tuple[str, ...] = ()  # generation ends once the text holds one of these (the caller cuts it off)

    def generate_kwargs(self) -> dict:
        kwargs = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        if self.stop:  # transformers' StopStringCriteria (generate also needs the tokenizer)
            kwargs["stop_strings"] = list(self.stop)
        return kwargs


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class Generator:
    """Owns the causal LM and its tokenizer (left padding, for batched decoder-only generation)."""

    def __init__(self, cfg: LLMConfig, device: str = "cpu", model: torch.nn.Module | None = None) -> None:
        """model: an already built causal LM (tests, benchmarks); None loads cfg's weights."""
        self.cfg = cfg
        source = cfg.model.path or cfg.model.id
        start = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(source, revision=cfg.model.revision, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = (model or self._load(source, device)).eval()
        if cfg.model.quantization:  # before compiling: the compiled graphs read the quantized weights
            quantize(self.model, cfg.model.quantization)
        self.load_s = time.perf_counter() - start
        weights = f"{self.model.dtype}, {cfg.model.quantization or 'not quantized'}"
        logger.info("loaded %s (%s) in %.1f s", source, weights, self.load_s)
        # The in-flight decode (inflight.py) has its own paged cache and compiles its own steps (compile.enabled
        # applies there): the static-cache buckets would go unused.
        self.compiled = not cfg.decode.continuous_batching and cfg.compile.on(self.device.type == "cuda")
        self.warm_up_s: list[float] = []
        self._caches: dict[tuple[int, int], StaticCache] = {}  # (padded batch, cache length) -> its reused cache
        if self.compiled:
            self._compile_and_warm_up()

    def _load(self, source: str, device: str) -> torch.nn.Module:
        placement = {"device_map": self.cfg.model.device_map} if self.cfg.model.device_map else {}
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=self.cfg.model.revision, dtype=getattr(torch, self.cfg.model.dtype), **placement
        )
        return model if self.cfg.model.device_map else model.to(device)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def max_input_tokens(self) -> int:
        return self.cfg.generate.max_input_tokens or self.context_tokens

    @property
    def context_tokens(self) -> int:
        """The most tokens the model reads and writes together: its context length."""
        return int(self.model.config.max_position_embeddings)

    def format(self, prompt: Prompt) -> str:
        """The text the model sees: the prompt as a chat user message (or a whole chat: a sequence of
        {"role", "content"} messages) through the tokenizer's chat template; a text prompt unchanged without one."""
        chat = not isinstance(prompt, str)
        if not (self.cfg.generate.use_chat_template and self.tokenizer.chat_template):
            if not chat:
                return prompt
            lines = [f"{m['role'].capitalize()}: {m['content']}" for m in prompt]  # no template: a plain transcript
            return "\n".join([*lines, "Assistant:"])
        messages = list(prompt) if chat else [{"role": "user", "content": prompt}]
        if self.cfg.generate.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.cfg.generate.system_prompt})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self.encode(prompt))

    def generate(
        self, prompts: list[Prompt], sampling: list[Sampling], on_piece: Callable[[int, str], None] | None = None
    ) -> list[Completion]:
        """One decode per distinct sampling setting; results in the order of prompts.

        on_piece(i, text) receives prompt i's answer piece by piece while it is decoded.
        """
        results: list[Completion | None] = [None] * len(prompts)
        for setting in dict.fromkeys(sampling):
            members = [i for i, s in enumerate(sampling) if s == setting]
            for start in range(0, len(members), self._largest_batch()):
                chunk = members[start : start + self._largest_batch()]
                for i, completion in zip(chunk, self._decode(prompts, chunk, setting, on_piece), strict=True):
                    results[i] = completion
        return results  # type: ignore[return-value]

    def stream(self, prompt: str, sampling: Sampling) -> Iterator[str]:
        """Yield one prompt's answer piece by piece while generate() runs in a background thread."""
        pieces: queue.Queue[str | None] = queue.Queue()

        def run() -> None:
            try:
                self.generate([prompt], [sampling], lambda _, piece: pieces.put(piece))
            finally:
                pieces.put(None)  # the end, also when generate() failed

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield from iter(pieces.get, None)
        thread.join()

    def _largest_batch(self) -> int:
        # Eager decodes any batch size at once; the compiled path splits batches past its largest bucket.
        return max(self.cfg.decode.batch_buckets) if self.compiled else 1 << 30

    def _decode(
        self, prompts: list[Prompt], members: list[int], sampling: Sampling, on_piece: Callable[[int, str], None] | None
    ) -> list[Completion]:
        texts = [prompts[i] for i in members]
        if self.compiled:  # duplicates fill the batch bucket: the same work, their results are dropped
            texts += texts[:1] * (_bucket(len(texts), self.cfg.decode.batch_buckets) - len(texts))
        inputs = self._tokenize(texts)
        kwargs: dict[str, Any] = {**inputs, **sampling.generate_kwargs(), "pad_token_id": self.tokenizer.pad_token_id}
        if sampling.stop:
            kwargs["tokenizer"] = self.tokenizer
        if on_piece is not None:
            kwargs["streamer"] = BatchStreamer(self.tokenizer, self.eos_ids(), members, on_piece)
        with torch.inference_mode():  # also around the cache: inference tensors, as in warm-up (else a recompile)
            if self.compiled:
                rows, prompt_length = inputs["input_ids"].shape
                length = _bucket(prompt_length + sampling.max_new_tokens, self.cfg.decode.cache_buckets)
                kwargs.update(cache=self._cache(rows, length), compile_config=self._compile_config)
            output = self.model.generate(**kwargs)  # (n, prompt + new)
        new_tokens = output[: len(members), inputs["input_ids"].shape[1] :]  # (n, new), left padding aligns them
        prompt_lengths = inputs["attention_mask"][: len(members)].sum(dim=1).tolist()
        rows = zip(new_tokens.tolist(), prompt_lengths, strict=True)
        return [self.completion(row, int(length)) for row, length in rows]

    def _cache(self, rows: int, length: int) -> StaticCache:
        """The static KV cache of one (batch bucket, cache bucket): built once, zeroed in place for every
        request after. A new cache per request would move the decode step's static inputs, and CUDA graph
        trees would record the graph again on every request instead of replaying it (measured on an H200:
        13 of 15 requests re-recorded). Its batch size is fixed at its first forward: rows is the padded batch."""
        cache = self._caches.get((rows, length))
        if cache is None:
            cache = self._caches[(rows, length)] = StaticCache(config=self.model.config, max_cache_len=length)
        else:
            cache.reset()
        return cache

    def _compile_and_warm_up(self) -> None:
        """Compile the decode step for every (batch, cache length) bucket now, not on a request."""
        need = self.max_input_tokens + self.cfg.generate.max_new_tokens_limit
        if max(self.cfg.decode.cache_buckets) < need:
            raise ConfigError(
                f"handler.decode.cache_buckets: the largest ({max(self.cfg.decode.cache_buckets)}) must hold "
                f"generate.max_input_tokens + generate.max_new_tokens_limit = {need} tokens"
            )
        graphs = len(self.cfg.decode.batch_buckets) * len(self.cfg.decode.cache_buckets)
        mode = self.cfg.compile.mode or ("reduce-overhead" if self.device.type == "cuda" else None)
        self._compile_config = decode_compile_config(mode, graphs, self.cfg.compile.cache_dir)
        shapes = [(rows, length) for rows in self.cfg.decode.batch_buckets for length in self.cfg.decode.cache_buckets]
        self.warm_up_s = warm_up(self._warm_bucket, shapes)

    def _warm_bucket(self, shape: tuple[int, int]) -> None:
        rows, length = shape
        prompt = torch.full((rows, 8), self.tokenizer.eos_token_id, device=self.device)  # (rows, 8)
        # The first new token comes from the (eager) prefill; the next three run the compiled step, which
        # CUDA graph trees record on its second run, so the first request replays a recorded graph (with the
        # very cache tensors this bucket's requests use: self._cache keeps them).
        cache = self._cache(rows, length)
        self.model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            cache=cache,
            compile_config=self._compile_config,
        )

    def completion(self, tokens: list[int], prompt_tokens: int) -> Completion:
        """The answer in tokens (new tokens only), cut at the first stop token."""
        eos_ids = self.eos_ids()
        kept = []
        for token in tokens:
            if token in eos_ids:
                break
            kept.append(token)
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text.strip(), prompt_tokens, len(kept))

    def eos_ids(self) -> set[int]:
        """Every token id that ends an answer (the model's EOS ids, the tokenizer's EOS and pad)."""
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        return ids | {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}

    def _tokenize(self, prompts: list[Prompt]) -> dict[str, torch.Tensor]:
        # The chat template already holds the special tokens: do not add them twice.
        texts = [self.format(p) for p in prompts]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in encoded.items()}

    def encode(self, prompt: Prompt) -> list[int]:
        """The prompt's token ids as the model sees them (formatted, no special tokens added twice)."""
        return self.tokenizer(self.format(prompt), add_special_tokens=False)["input_ids"]


def _bucket(size: int, buckets: list[int]) -> int:
    """The smallest bucket that holds size."""
    ordered = sorted(buckets)
    position = bisect.bisect_left(ordered, size)
    if position == len(ordered):
        raise ValueError(f"{size} is more than the largest bucket, {ordered[-1]}")
    return ordered[position]
