"""Weight quantization of the LLM through torchao (`model.quantization`), and the gate that says whether it
changed the answers.

Public names: METHODS, quantize, token_agreement, Agreement.
quantize(model, method) rewrites every nn.Linear's weight in place with torchao's `quantize_` (the
field's library for this; nothing here reimplements a kernel). Methods:
- "int8_weight_only": int8 weights, activations in the model dtype; CPU and CUDA. Halves the bytes a
  batch-1 decode reads from memory against bfloat16 (a quarter against float32).
- "int4_weight_only": int4 weights in groups of 128 (torchao's tinygemm layout); CUDA only.
- "float8_weight_only" and "float8_dynamic" (float8 activations too): Hopper or newer GPUs (H100, H200).
A method the device cannot run is refused at start with its name and the device's.

token_agreement is the quality gate's measure: the reference model's greedy continuation of each prompt is
fed to the candidate (teacher forcing) and the share of positions where the candidate's greedy choice is the
same token is counted, along with the share a free-running greedy decode keeps before its first divergence.
benchmarks/quant_gate.py runs it on the 40 RAG prompts of ../shared's qa_public (`make quant-gate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ragserve.config import QUANTIZATIONS

METHODS = QUANTIZATIONS
CUDA_ONLY = {"int4_weight_only", "float8_weight_only", "float8_dynamic"}
HOPPER = {"float8_weight_only", "float8_dynamic"}  # float8 matmuls: compute capability 8.9 or newer


def quantize(model: torch.nn.Module, method: str) -> torch.nn.Module:
    """Quantize model's linear weights in place with torchao; returns model. Raises ValueError naming what is
    missing when method cannot run on the model's device."""
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        Int4WeightOnlyConfig,
        Int8WeightOnlyConfig,
        quantize_,
    )

    device = next(model.parameters()).device
    if method not in METHODS:
        raise ValueError(f"model.quantization must be one of {METHODS}, got {method!r}")
    if method in CUDA_ONLY and device.type != "cuda":
        raise ValueError(f"model.quantization: {method} needs a CUDA device; this worker runs on {device.type}")
    if method in HOPPER and torch.cuda.get_device_capability(device) < (8, 9):
        raise ValueError(f"model.quantization: {method} needs compute capability >= 8.9 (Ada, Hopper)")
    config = {
        "int8_weight_only": lambda: Int8WeightOnlyConfig(),
        "int4_weight_only": lambda: Int4WeightOnlyConfig(group_size=128),
        "float8_weight_only": lambda: Float8WeightOnlyConfig(),
        "float8_dynamic": lambda: Float8DynamicActivationFloat8WeightConfig(),
    }[method]()
    quantize_(model, config)
    return model


@dataclass(frozen=True)
class Agreement:
    """positions: reference tokens compared; teacher_forced: the share the candidate predicts the same given the
    reference's prefix; free_running: the share of positions a greedy decode of the candidate matches before it
    first departs from the reference (later positions count as different)."""

    positions: int
    teacher_forced: float
    free_running: float


@torch.inference_mode()
def token_agreement(
    reference: torch.nn.Module, candidate: torch.nn.Module, prompts: Sequence[Sequence[int]], new_tokens: int
) -> Agreement:
    """Greedy token agreement of candidate with reference over prompts (token ids, one prompt at a time)."""
    same_forced = same_free = total = 0
    for prompt in prompts:
        ids = torch.tensor([list(prompt)], device=next(reference.parameters()).device)
        ref = _greedy(reference, ids, new_tokens)  # (1, len(prompt) + n)
        n = ref.shape[1] - ids.shape[1]
        logits = candidate(input_ids=ref).logits[0, ids.shape[1] - 1 : -1]  # (n, vocab): next-token at each place
        same_forced += int((logits.argmax(-1) == ref[0, ids.shape[1] :]).sum())
        free = _greedy(candidate, ids, n)[0, ids.shape[1] :]
        departs = (free[:n] != ref[0, ids.shape[1] : ids.shape[1] + len(free)]).nonzero()
        same_free += int(departs[0]) if len(departs) else len(free)
        total += n
    return Agreement(total, same_forced / max(total, 1), same_free / max(total, 1))


def _greedy(model: torch.nn.Module, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """prompt ids (1, p) -> (1, p + n): up to new_tokens greedy tokens, fewer when an end-of-sequence token comes."""
    pad = model.generation_config.pad_token_id or model.generation_config.eos_token_id
    return model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad
    )
