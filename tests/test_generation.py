"""Generation on the real SmolLM2-135M-Instruct (CPU): greedy, chat template, limits, batching, streaming."""

from __future__ import annotations

import pytest

from ragserve.generation import Sampling

pytestmark = pytest.mark.model

RAG_PROMPT = (
    "Use the following pieces of context to answer the question at the end. If you don't know the answer, "
    "just say that you don't know, don't try to make up an answer.\n\n\nLlama 3 uses a tokenizer with a "
    "vocabulary of 128,256 tokens.\n\n\nQuestion: What is the vocabulary size of Llama 3?\nHelpful Answer:"
)
PROMPTS = [RAG_PROMPT, "What is the capital of France?", "Name a colour."]
GREEDY = Sampling(max_new_tokens=24)


def test_greedy_generation_is_deterministic_and_uses_the_context(generator) -> None:
    first = generator.generate([RAG_PROMPT], [GREEDY])[0]
    second = generator.generate([RAG_PROMPT], [GREEDY])[0]
    assert first == second
    assert "128,256" in first.text
    assert first.prompt_tokens == generator.count_tokens(RAG_PROMPT)


def test_chat_template_wraps_the_prompt_as_a_user_turn(generator) -> None:
    text = generator.format("Hello?")
    assert "<|im_start|>user\nHello?<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


def test_max_new_tokens_is_respected(generator) -> None:
    completion = generator.generate(["Write a long story about a dragon."], [Sampling(max_new_tokens=5)])[0]
    assert completion.completion_tokens == 5


def test_a_batch_of_different_lengths_matches_one_at_a_time(generator) -> None:
    batched = generator.generate(PROMPTS, [GREEDY] * len(PROMPTS))
    alone = [generator.generate([p], [GREEDY])[0] for p in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in alone]


def test_mixed_sampling_settings_keep_the_order(generator) -> None:
    out = generator.generate(PROMPTS[:2], [GREEDY, Sampling(max_new_tokens=3)])
    assert out[0].text == generator.generate([PROMPTS[0]], [GREEDY])[0].text
    assert out[1].completion_tokens <= 3


def test_streaming_yields_pieces_that_add_up_to_the_answer(generator) -> None:
    pieces = list(generator.stream(RAG_PROMPT, GREEDY))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == generator.generate([RAG_PROMPT], [GREEDY])[0].text
