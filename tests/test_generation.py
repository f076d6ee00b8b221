"""Generation: a tiny random Llama for batching, streaming, loop breakers and the compiled decode (no weights);
the real SmolLM2-135M-Instruct (CPU, `model` mark) for greedy answers, the chat template and limits."""

from __future__ import annotations

import pytest
import torch

from ragserve.compilation import compiled_graph_count
from ragserve.config import ConfigError
from ragserve.llm.generation import Generator, Sampling
from ragserve_ops.testing import tiny_llm_config

RAG_PROMPT = (
    "Use the following pieces of context to answer the question at the end. If you don't know the answer, "
    "just say that you don't know, don't try to make up an answer.\n\n\nLlama 3 uses a tokenizer with a "
    "vocabulary of 128,256 tokens.\n\n\nQuestion: What is the vocabulary size of Llama 3?\nHelpful Answer:"
)
PROMPTS = [RAG_PROMPT, "What is the capital of France?", "Name a colour."]
GREEDY = Sampling(max_new_tokens=24)


@pytest.mark.model
def test_greedy_generation_is_deterministic_and_uses_the_context(generator) -> None:
    first = generator.generate([RAG_PROMPT], [GREEDY])[0]
    second = generator.generate([RAG_PROMPT], [GREEDY])[0]
    assert first == second
    assert "128,256" in first.text
    assert first.prompt_tokens == generator.count_tokens(RAG_PROMPT)


@pytest.mark.model
def test_chat_template_wraps_the_prompt_as_a_user_turn(generator) -> None:
    text = generator.format("Hello?")
    assert "<|im_start|>user\nHello?<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


@pytest.mark.model
def test_max_new_tokens_is_respected(generator) -> None:
    completion = generator.generate(["Write a long story about a dragon."], [Sampling(max_new_tokens=5)])[0]
    assert completion.completion_tokens == 5


@pytest.mark.model
def test_a_batch_of_different_lengths_matches_one_at_a_time(generator) -> None:
    batched = generator.generate(PROMPTS, [GREEDY] * len(PROMPTS))
    alone = [generator.generate([p], [GREEDY])[0] for p in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in alone]


@pytest.mark.model
def test_mixed_sampling_settings_keep_the_order(generator) -> None:
    out = generator.generate(PROMPTS[:2], [GREEDY, Sampling(max_new_tokens=3)])
    assert out[0].text == generator.generate([PROMPTS[0]], [GREEDY])[0].text
    assert out[1].completion_tokens <= 3


@pytest.mark.model
def test_streaming_yields_pieces_that_add_up_to_the_answer(generator) -> None:
    pieces = list(generator.stream(RAG_PROMPT, GREEDY))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == generator.generate([RAG_PROMPT], [GREEDY])[0].text


# --- tiny random Llama: no weights, seconds ---

TINY = Sampling(max_new_tokens=12)
TINY_PROMPTS = ["What is the capital of France?", "Name a colour.", "Count to ten, slowly, one number a line."]


def test_tiny_batch_of_different_lengths_matches_one_at_a_time(tiny_generator) -> None:
    batched = tiny_generator.generate(TINY_PROMPTS, [TINY] * 3)
    alone = [tiny_generator.generate([p], [TINY])[0] for p in TINY_PROMPTS]
    assert batched == alone
    assert all(c.completion_tokens == 12 and c.text for c in batched)


def test_tiny_mixed_settings_keep_the_order_and_their_limits(tiny_generator) -> None:
    out = tiny_generator.generate(TINY_PROMPTS[:2], [TINY, Sampling(max_new_tokens=3)])
    assert out[0] == tiny_generator.generate(TINY_PROMPTS[:1], [TINY])[0]
    assert out[1].completion_tokens == 3


def test_on_piece_streams_every_row_of_one_batch(tiny_generator) -> None:
    pieces: dict[int, list[str]] = {0: [], 1: [], 2: []}
    out = tiny_generator.generate(TINY_PROMPTS, [TINY] * 3, lambda i, piece: pieces[i].append(piece))
    assert all(len(pieces[i]) > 1 for i in pieces)
    assert ["".join(pieces[i]).strip() for i in pieces] == [c.text for c in out]


def test_stream_yields_the_pieces_of_the_answer(tiny_generator) -> None:
    pieces = list(tiny_generator.stream(TINY_PROMPTS[0], TINY))
    assert len(pieces) > 1 and "".join(pieces).strip() == tiny_generator.generate(TINY_PROMPTS[:1], [TINY])[0].text


def test_loop_breakers_stop_a_greedy_loop(looping_llm) -> None:
    generator = Generator(tiny_llm_config(), model=looping_llm)
    plain = _new_tokens(generator, TINY_PROMPTS[0], Sampling(32))
    no_repeat = _new_tokens(generator, TINY_PROMPTS[0], Sampling(32, no_repeat_ngram_size=2))
    penalised = _new_tokens(generator, TINY_PROMPTS[0], Sampling(32, repetition_penalty=1.5))
    assert _repeated_pairs(plain) > 10  # the loop
    assert _repeated_pairs(no_repeat) == 0 and len(no_repeat) == 32
    assert len(set(penalised)) > len(set(plain))


def _repeated_pairs(tokens: list[int]) -> int:
    pairs = list(zip(tokens, tokens[1:], strict=False))
    return len(pairs) - len(set(pairs))


def _new_tokens(generator: Generator, prompt: str, sampling: Sampling) -> list[int]:
    """The token ids generate() decodes with this Sampling (text does not re-tokenize to the same ids)."""
    inputs = generator.tokenizer([generator.format(prompt)], return_tensors="pt", add_special_tokens=False)
    kwargs = {**inputs, **sampling.generate_kwargs(), "pad_token_id": generator.tokenizer.pad_token_id}
    with torch.inference_mode():
        return generator.model.generate(**kwargs)[0, inputs["input_ids"].shape[1] :].tolist()


def test_cache_buckets_must_hold_the_longest_request(tiny_llm) -> None:
    cfg = tiny_llm_config({"compile.enabled": True, "decode.cache_buckets": [128]})  # 192 + 64 do not fit
    with pytest.raises(ConfigError, match="cache_buckets"):
        Generator(cfg, model=tiny_llm)


# --- compiled decode (static KV cache + torch.compile), tiny model on CPU ---


@pytest.mark.compile
def test_compiled_decode_equals_eager_in_float32(tiny_compiled_generator, tiny_generator) -> None:
    """Batch 3 runs as buckets 2 + 1 (the second padded with nothing); greedy tokens must match exactly."""
    compiled = tiny_compiled_generator.generate(TINY_PROMPTS, [TINY] * 3)
    assert compiled == tiny_generator.generate(TINY_PROMPTS, [TINY] * 3)


@pytest.mark.compile
def test_compiled_decode_equals_eager_with_loop_breakers(tiny_compiled_generator, tiny_generator) -> None:
    setting = Sampling(40, repetition_penalty=1.3, no_repeat_ngram_size=3)
    prompt = ["Write a long story about a dragon. " * 6]  # longer prompt: the 256-token cache bucket
    assert tiny_compiled_generator.generate(prompt, [setting]) == tiny_generator.generate(prompt, [setting])


@pytest.mark.compile
def test_nothing_recompiles_after_warm_up(tiny_compiled_generator) -> None:
    before = compiled_graph_count()
    caches = dict(tiny_compiled_generator._caches)  # warm-up built one per (batch, cache length) bucket
    assert len(caches) == 4
    for size in (1, 2, 3):  # batch buckets 1 and 2 (3 = 2 + 1), both cache buckets, sampling on and off
        tiny_compiled_generator.generate(TINY_PROMPTS[:size], [TINY] * size)
        # " token" is one token of the tiny vocabulary: with the chat turn about 190, + 50 new in the 256 bucket.
        tiny_compiled_generator.generate(["token " * 150], [Sampling(50, do_sample=True, temperature=0.7, top_p=0.9)])
    pieces: list[str] = []
    tiny_compiled_generator.generate(TINY_PROMPTS[:2], [TINY] * 2, lambda i, piece: pieces.append(piece))
    assert pieces and compiled_graph_count() == before
    assert tiny_compiled_generator._caches == caches  # the same cache objects: static inputs never move


@pytest.mark.compile
def test_warm_up_compiled_every_bucket(tiny_compiled_generator) -> None:
    assert tiny_compiled_generator.compiled and len(tiny_compiled_generator.warm_up_s) == 4  # 2 batch x 2 cache


def test_compile_defaults_to_cuda_only(tiny_generator, tiny_llm) -> None:
    assert not Generator(tiny_llm_config({"compile.enabled": None}), model=tiny_llm).compiled  # CPU here
    assert torch.device("cpu") == tiny_generator.device
