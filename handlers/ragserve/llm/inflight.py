"""In-flight decoding: prompts join and leave one running decode instead of waiting for a whole batch.

Public names: InFlight, Update.
InFlight wraps transformers' ContinuousBatchingManager (paged KV cache, chunked prefill, a background
decode thread) around a Generator's model and tokenizer. submit(key, prompt, sampling) queues a prompt
(formatted as Generator.format does); poll(wait_s) returns {key: Update(piece, completion, error)}, the
text each request added since the last poll; cancel(key) drops one; stop() ends the decode thread.
The manager decodes every request in one mode (the config's do_sample): per request it honours
max_new_tokens, and temperature/top_p when sampling; unsupported_field names any other setting a request
changes, so that the caller rejects it instead of ignoring it. No TorchServe imports.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch
from transformers import GenerationConfig
from transformers.generation.configuration_utils import ContinuousBatchingConfig

from ragserve.compilation import allow_recompiles
from ragserve.llm.generation import Completion, Generator, Prompt, Sampling
from ragserve.llm.streaming import new_text

logger = logging.getLogger(__name__)

PAGE_TOKENS = 64  # KV cache page (tokens); small pages waste little memory per short request
INFLIGHT_GRAPHS = 32  # compiled graphs allowed to the in-flight steps' code (11 measured on the tiny Llama)


@dataclass(frozen=True)
class Update:
    piece: str  # text added since the last poll ("" when a multi-byte character is incomplete)
    completion: Completion | None = None  # set once the request has finished
    error: str | None = None  # set when the decode failed this request

    def then(self, later: Update) -> Update:
        """This update followed by a later one of the same request: their pieces joined, the later's end."""
        return Update(self.piece + later.piece, later.completion, later.error)


@dataclass
class _Progress:
    prompt_tokens: int
    tokens: list[int] = field(default_factory=list)
    sent_chars: int = 0


class InFlight:
    """One in-flight decode over a Generator's model, for up to max_requests prompts at a time."""

    def __init__(self, generator: Generator, max_requests: int) -> None:
        self.generator = generator
        cfg = generator.cfg
        self.sampling = cfg.generate.do_sample
        cuda = generator.device.type == "cuda"
        self.compiled = cfg.compile.on(cuda)
        self.cuda_graphs = cuda and (cfg.decode.inflight_cuda_graphs is not False)
        defaults = (
            {"temperature": cfg.generate.temperature, "top_p": cfg.generate.top_p} if cfg.generate.do_sample else {}
        )
        generation = GenerationConfig(
            max_new_tokens=cfg.generate.max_new_tokens,
            do_sample=cfg.generate.do_sample,
            eos_token_id=sorted(generator.eos_ids()),
            pad_token_id=generator.tokenizer.pad_token_id,
            **defaults,
        )
        # The cache holds every admitted request at its longest: no request is ever evicted mid-answer.
        max_input = generator.max_input_tokens
        pages = max_requests * math.ceil((max_input + cfg.generate.max_new_tokens_limit) / PAGE_TOKENS)
        batching = ContinuousBatchingConfig(
            page_size=PAGE_TOKENS,
            num_blocks=pages,
            max_batch_tokens=cfg.decode.inflight_step_tokens,
            max_requests_per_batch=max_requests,
            per_request_processors=cfg.generate.do_sample,  # per-request temperature/top_p
            # compile.enabled (default: on with CUDA) compiles the forward steps (level 1: Inductor's default mode,
            # dynamic shapes; transformers pads steps to a few sizes); decode.inflight_cuda_graphs replays them as
            # CUDA graphs. Off, transformers runs eager steps (on an H200: 13.7 tok/s for one request).
            default_compile_level=1 if self.compiled else 0,
            use_cuda_graph=self.cuda_graphs,
        )
        model = generator.model
        self.manager = model.init_continuous_batching(generation_config=generation, continuous_batching_config=batching)
        if self.compiled:  # transformers pads steps to a few sizes, but the warm-up compiles 11 graphs on a tiny Llama
            self._allow_recompiles_in_the_decode_thread()
        start, warm = time.perf_counter(), self.compiled or self.cuda_graphs
        if warm:  # record the graphs at the largest step sizes now, not on a request
            self.manager.warmup()
        self.supported = set(self.manager.logit_processor.supported_keys)  # e.g. {"temperature", "top_p"}
        self.progress: dict[str, _Progress] = {}
        self.manager.start()
        self._wait_until_ready()
        if self.compiled:
            self._warm_up_requests()
        self.warm_up_s = time.perf_counter() - start if warm else 0.0
        logger.info("in-flight decode: %d requests, %d cache pages of %d tokens", max_requests, pages, PAGE_TOKENS)

    def unsupported_field(self, sampling: Sampling) -> str | None:
        """The request field whose setting this decode cannot honour, or None."""
        cfg = self.generator.cfg
        if sampling.do_sample != self.sampling:
            return "temperature"  # a request turns sampling on or off with its temperature
        if sampling.repetition_penalty != 1.0:
            return "repetition_penalty"
        if sampling.no_repeat_ngram_size != 0:
            return "no_repeat_ngram_size"
        if sampling.stop:
            return "stop"
        for name in ("temperature", "top_p"):
            if self.sampling and name not in self.supported and getattr(sampling, name) != getattr(cfg, name):
                return name
        return None

    def submit(self, key: str, prompt: Prompt, sampling: Sampling) -> None:
        """Queue prompt under key (unique among running requests); it joins the decode at its next step."""
        unsupported = self.unsupported_field(sampling)
        if unsupported:
            raise ValueError(f"{unsupported}: not available in the in-flight decode")
        ids = self.generator.encode(prompt)
        kwargs = {n: getattr(sampling, n) for n in ("temperature", "top_p") if self.sampling and n in self.supported}
        added = self.manager.add_request(
            ids, request_id=key, max_new_tokens=sampling.max_new_tokens, streaming=True, **kwargs
        )
        if added is None:
            raise RuntimeError("the in-flight decode does not accept requests (stopped or failed)")
        self.progress[key] = _Progress(len(ids))

    def poll(self, wait_s: float) -> dict[str, Update]:
        """Wait up to wait_s for news of any request, then return the news of all of them."""
        updates: dict[str, Update] = {}
        output = self.manager.get_result(timeout=wait_s)
        while output is not None:
            if output.request_id in self.progress:  # not cancelled meanwhile
                update = self._update(output)
                # Several outputs of one request may wait here (the decode outran the poller): each piece
                # is new text past the previous one, so they are joined in order, never replaced.
                earlier = updates.get(output.request_id)
                updates[output.request_id] = earlier.then(update) if earlier else update
            output = self.manager.get_result(timeout=0)
        if not updates and self.progress and not self.manager.is_running():
            raise RuntimeError("the in-flight decode thread has stopped")
        return updates

    def cancel(self, key: str) -> None:
        if self.progress.pop(key, None) is not None:
            self.manager.cancel_request(key)

    def stop(self) -> None:
        self.manager.stop(block=True, timeout=30)

    def _allow_recompiles_in_the_decode_thread(self) -> None:
        """dynamo's settings are per thread (torch 2.13): raise the recompile limit here (warmup() compiles in this
        thread) and in the manager's decode thread, whose loop is wrapped for it. At dynamo's default (8) the
        warm-up's 9th graph of one function would be its last: later shapes would run eager, silently."""
        allow_recompiles(INFLIGHT_GRAPHS)
        limit = torch._dynamo.config.recompile_limit
        loop = self.manager._run_generation_loop  # transformers' thread target (a private method: checked by a test)

        def loop_with_limit(**kwargs: object) -> None:
            torch._dynamo.config.recompile_limit = limit
            loop(**kwargs)

        self.manager._run_generation_loop = loop_with_limit

    def _warm_up_requests(self) -> None:
        """Two requests of different lengths, decoded together and dropped: the compiled steps meet a second shape
        here (dynamo then compiles them for dynamic shapes), not on the first real requests."""
        cfg = self.generator.cfg.generate
        sampling = Sampling(4, do_sample=self.sampling, temperature=cfg.temperature, top_p=cfg.top_p)
        for key, words in (("warm-up-1", 4), ("warm-up-2", 24)):
            self.submit(key, "warm up " * words, sampling)
        finished: set[str] = set()
        deadline = time.monotonic() + 600
        while len(finished) < 2 and time.monotonic() < deadline:
            for key, update in self.poll(wait_s=5).items():
                if update.error is not None:
                    raise RuntimeError(f"in-flight warm-up failed: {update.error}")
                if update.completion is not None:
                    finished.add(key)
        for key in ("warm-up-1", "warm-up-2"):
            self.cancel(key)

    def _wait_until_ready(self, timeout_s: float = 300) -> None:
        """Return once the decode thread has built its cache, or raise if it failed.

        Building it also reseeds torch's global RNG (transformers seeds its sampler with torch.manual_seed): done
        here, inside __init__, it cannot land in the middle of someone else's seeded work (e.g. a model's init).
        """
        deadline = time.monotonic() + timeout_s
        while self.manager.batch_processor is None:
            if not self.manager.is_running() or time.monotonic() > deadline:
                raise RuntimeError("the in-flight decode thread did not start (see the log above)")
            time.sleep(0.01)

    def _update(self, output) -> Update:
        progress = self.progress[output.request_id]
        stop_ids = self.generator.eos_ids()
        progress.tokens = [t for t in output.generated_tokens if t not in stop_ids]  # streamed outputs are cumulative
        piece, progress.sent_chars = new_text(self.generator.tokenizer, progress.tokens, progress.sent_chars)
        if output.error is not None:
            del self.progress[output.request_id]
            return Update(piece, error=output.error)
        if not output.is_finished():
            return Update(piece)
        del self.progress[output.request_id]
        return Update(piece, self.generator.completion(output.generated_tokens, progress.prompt_tokens))
