"""Text generation with any Hugging Face causal LM: prompts in, only the new text out.

Public names: Generator, Sampling, Completion.
`generate(prompts, sampling)` runs one left-padded batch per distinct sampling setting and returns
one Completion(text, prompt_tokens, completion_tokens) per prompt; `stream(prompt, sampling)` yields
text pieces as they are decoded. The prompt is wrapped as a user message with the tokenizer's chat
template when the config says so. No TorchServe imports; no compilation (a growing KV cache
changes shapes at every step, so torch.compile would only recompile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

from .config import LLMConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0

    def generate_kwargs(self) -> dict:
        if not self.do_sample:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class Generator:
    """Owns the causal LM and its tokenizer (left padding, for batched decoder-only generation)."""

    def __init__(self, cfg: LLMConfig, device: str = "cpu") -> None:
        self.cfg = cfg
        source = cfg.model_path or cfg.model_id
        start = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(source, revision=cfg.revision, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        placement = {"device_map": cfg.device_map} if cfg.device_map else {}
        self.model = AutoModelForCausalLM.from_pretrained(
            source, revision=cfg.revision, dtype=getattr(torch, cfg.dtype), **placement
        ).eval()
        if not cfg.device_map:
            self.model.to(device)
        self.load_s = time.perf_counter() - start
        logger.info("loaded %s (%s) in %.1f s", source, cfg.dtype, self.load_s)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def max_input_tokens(self) -> int:
        return self.cfg.max_input_tokens or int(self.model.config.max_position_embeddings)

    def format(self, prompt: str) -> str:
        """The text the model sees: the prompt as a chat user message, or unchanged."""
        if not (self.cfg.use_chat_template and self.tokenizer.chat_template):
            return prompt
        messages = [{"role": "system", "content": self.cfg.system_prompt}] if self.cfg.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, prompt: str) -> int:
        return len(self._encode_one(prompt))

    def generate(self, prompts: list[str], sampling: list[Sampling]) -> list[Completion]:
        """One generate() call per distinct sampling setting; results in the order of prompts."""
        results: list[Completion | None] = [None] * len(prompts)
        for setting in dict.fromkeys(sampling):
            members = [i for i, s in enumerate(sampling) if s == setting]
            for i, completion in zip(
                members, self._generate_batch([prompts[i] for i in members], setting), strict=True
            ):
                results[i] = completion
        return results  # type: ignore[return-value]

    def stream(self, prompt: str, sampling: Sampling) -> Iterator[str]:
        """Yield the answer piece by piece while generate() runs in a background thread."""
        inputs = self._tokenize([prompt])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {**inputs, **sampling.generate_kwargs(), "streamer": streamer}
        kwargs["pad_token_id"] = self.tokenizer.pad_token_id
        thread = threading.Thread(target=self._generate_quietly, kwargs=kwargs, daemon=True)
        thread.start()
        yield from (piece for piece in streamer if piece)
        thread.join()

    def _generate_batch(self, prompts: list[str], sampling: Sampling) -> list[Completion]:
        inputs = self._tokenize(prompts)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs, **sampling.generate_kwargs(), pad_token_id=self.tokenizer.pad_token_id
            )  # (n, prompt + new)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]  # (n, new), left padding aligns the prompts
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        return [self._completion(row, int(length)) for row, length in zip(new_tokens, prompt_lengths, strict=True)]

    def _completion(self, tokens: torch.Tensor, prompt_tokens: int) -> Completion:
        eos_ids = self._eos_ids()
        kept = []
        for token in tokens.tolist():
            if token in eos_ids:
                break
            kept.append(token)
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text.strip(), prompt_tokens, len(kept))

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        return ids | {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}

    def _generate_quietly(self, **kwargs) -> None:
        with torch.inference_mode():
            self.model.generate(**kwargs)

    def _tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        # The chat template already holds the special tokens: do not add them twice.
        texts = [self.format(p) for p in prompts]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in encoded.items()}

    def _encode_one(self, prompt: str) -> list[int]:
        return self.tokenizer(self.format(prompt), add_special_tokens=False)["input_ids"]
