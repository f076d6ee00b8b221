"""LLM weight quantization through torchao (model.quantization) and the token-agreement gate that judges it.
The tiny random Llama runs in every tier; SmolLM2 (the `model` mark) checks int8 weights keep its greedy answers."""

from __future__ import annotations

import copy

import pytest
import torch

from ragserve.config import ConfigError
from ragserve.llm.generation import Generator, Sampling
from ragserve.llm.quantization import quantize, token_agreement
from ragserve_ops.testing import build_tiny_llm, tiny_llm_config

PROMPTS = [[1, 17, 250, 33, 90], [1, 400, 401, 402], [1, 5, 6, 7, 8, 9, 10, 600]]


def test_agreement_is_one_for_the_same_model_and_low_for_another() -> None:
    model = build_tiny_llm(0.5)
    same = token_agreement(model, model, PROMPTS, 12)
    assert same.positions == 36 and same.teacher_forced == 1.0 and same.free_running == 1.0
    other = copy.deepcopy(model)
    with torch.no_grad():  # another model: the output rows shuffled
        other.lm_head.weight.copy_(other.lm_head.weight[torch.randperm(other.lm_head.weight.shape[0])])
    different = token_agreement(model, other, PROMPTS, 12)
    assert different.teacher_forced < 0.3 and different.free_running < 0.3  # the gate can fail


def test_int8_weights_replace_every_linear_and_keep_the_tiny_models_answers() -> None:
    reference = build_tiny_llm(0.5)
    quantized = quantize(copy.deepcopy(reference), "int8_weight_only")
    weight = quantized.model.layers[0].mlp.up_proj.weight
    assert type(weight).__name__ == "Int8Tensor" and weight.dtype == torch.float32  # int8 inside, float outside
    agreement = token_agreement(reference, quantized, PROMPTS, 16)
    # 44 of 48 here: a random model's logits sit close together, so rounding flips more near-ties than in a
    # trained model (SmolLM2 below, and the 40-prompt gate of `make quant-gate`)
    assert agreement.teacher_forced >= 0.9, agreement


def test_the_generator_applies_model_quantization_and_answers() -> None:
    generator = Generator(tiny_llm_config({"model.quantization": "int8_weight_only"}), model=build_tiny_llm(0.5))
    assert type(generator.model.model.layers[1].self_attn.q_proj.weight).__name__ == "Int8Tensor"
    reply = generator.generate(["What is new?"], [Sampling(max_new_tokens=6)])[0]
    assert reply.completion_tokens > 0 and reply.text


def test_a_method_the_device_cannot_run_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="int4_weight_only needs a CUDA device; this worker runs on cpu"):
        quantize(build_tiny_llm(0.5), "int4_weight_only")
    with pytest.raises(ConfigError, match="model.quantization must be null or one of"):
        tiny_llm_config({"model.quantization": "int3"})


@pytest.mark.model
def test_smollm2_int8_weights_keep_its_greedy_tokens(llm_dir) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    reference = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32).eval()
    quantized = quantize(copy.deepcopy(reference), "int8_weight_only")
    questions = ["What is FAISS used for?", "Name three uses of a GPU.", "What does a tokenizer do?"]
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    agreement = token_agreement(reference, quantized, prompts, 24)
    assert agreement.positions >= 30 and agreement.teacher_forced >= 0.9, agreement


@pytest.mark.compile
def test_compiled_int8_decode_equals_eager_int8_and_never_recompiles() -> None:
    """The quantized weights go through the same compiled, bucketed decode (issue: no recompile after warm-up)."""
    from ragserve.compilation import compiled_graph_count

    prompts = ["What is the capital of France?", "Name a colour.", "Count to ten, slowly, one number a line."]
    settings = {"model.quantization": "int8_weight_only", "decode.batch_buckets": [1, 2]}
    eager = Generator(tiny_llm_config(settings), model=build_tiny_llm(0.5))
    compiled_cfg = {**settings, "compile.enabled": True, "compile.cache_dir": None, "decode.cache_buckets": [256]}
    compiled = Generator(tiny_llm_config(compiled_cfg), model=build_tiny_llm(0.5))
    before = compiled_graph_count()
    greedy = [Sampling(max_new_tokens=12)] * 3
    assert compiled.generate(prompts, greedy) == eager.generate(prompts, greedy)
    compiled.generate(prompts[:1], greedy[:1])
    assert compiled_graph_count() == before
