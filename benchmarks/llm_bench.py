#!/usr/bin/env python3
"""LLM decode speed, eager vs compiled, through ragserve.llm.generation.Generator: `make bench-llm`.

  .venv/bin/python benchmarks/llm_bench.py                  # CUDA: Llama-3-8B shape, fp16; CPU: SmolLM2 shape
  .venv/bin/python benchmarks/llm_bench.py --shape tiny --batches 1 4 --prompt-tokens 128 --new-tokens 16

Random weights (no download): on CUDA a Llama-3-8B-shaped model (32 layers, hidden 4096, 32/8 heads,
MLP 14336, Llama-3's vocabulary of 128,256: 8.03 B parameters, float16); on CPU SmolLM2-135M's shape
(float32), or `--shape tiny`. The tokenizer is SmolLM2's (models/smollm2-135m-instruct; its ids fit the
larger vocabulary). Both modes share the weights. The compiled mode uses production's cache buckets
(2048 and 4096 tokens for the Llama shape, as configs/llama3-8b-instruct.yaml) and the batch sizes asked
for as its batch buckets. Per mode: warm-up (compile) seconds, tok/s (all sequences, greedy) per batch
size, time to first token of one `--prompt-tokens` prompt, peak memory (GPU allocated on CUDA, reset
between modes; process RSS on CPU). Then a "realistic requests" row: after warm-up, prompts of other
lengths at batch sizes between the buckets, as requests arrive, with the graphs compiled meanwhile
(a recompile) and, on CUDA, the CUDA graphs recorded meanwhile (a re-record): both should stay 0.
Quantized modes (`--modes compiled+int8 compiled+fp8`: model.quantization int8_weight_only or float8_weight_only
through torchao, on a copy of the weights) run compiled at `--quantized-batches` only (batch 1 by default: the
bandwidth-bound case weight quantization speeds up); on CUDA they are in the default modes (fp8 from compute
capability 8.9, e.g. H100/H200). Their answer quality is `make quant-gate`'s job (trained weights).
Then the in-flight table (`--inflight 1 16 64`, the default on CUDA): ragserve.llm.inflight.InFlight (transformers'
continuous batching, compiled steps and CUDA graphs by default on CUDA) driven as llm_handler.py drives it, N
requests of `--prompt-tokens` submitted at once: aggregate tok/s, time to first token p50 and max, warm-up s.
Greedy tokens from random weights are not compared here (near-ties flip); tests/test_generation.py
checks equality.
Writes report.md, figures.json (tok/s per batch size, TTFT, warm-up, peak memory per mode) and setup.json
under benchmarks/results/llm-<date>-<host>/.
"""

from __future__ import annotations

import argparse
import copy
import resource
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from benchlib.report import Results, add_out_argument
from ragserve.compilation import compiled_graph_count
from ragserve.config import LLMConfig, override
from ragserve.llm.generation import Generator, Sampling
from ragserve.llm.inflight import InFlight

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "models" / "smollm2-135m-instruct"
SHAPES = {  # (layers, hidden, heads, kv heads, MLP)
    "llama3-8b": (32, 4096, 32, 8, 14336),
    "smollm2": (30, 576, 9, 3, 1536),
    "tiny": (2, 64, 4, 2, 128),
}
VOCAB = {"llama3-8b": 128_256}  # the real vocabulary (the LM head is 1 GB of it); others: the tokenizer's
CACHE_BUCKETS = {"llama3-8b": [2048, 4096]}  # production's (configs/llama3-8b-instruct.yaml)
# After warm-up: (share of --prompt-tokens, batch size), lengths and batch sizes the loop above never ran.
REALISTIC = [(0.3, 1), (0.7, 3), (0.95, 1), (0.45, 5), (0.85, 2)]
QUANTIZED = {"compiled+int8": "int8_weight_only", "compiled+fp8": "float8_weight_only"}  # mode -> model.quantization


def quantized_modes() -> list[str]:
    """The quantized modes this device runs: int8 anywhere, fp8 from compute capability 8.9 (H100, H200)."""
    fp8 = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)
    return ["compiled+int8", *(["compiled+fp8"] if fp8 else [])]


def default_modes() -> list[str]:
    return ["eager", "compiled", *quantized_modes()] if torch.cuda.is_available() else ["eager", "compiled"]


def random_model(shape: str, dtype: torch.dtype, device: str, vocab: int) -> LlamaForCausalLM:
    layers, hidden, heads, kv_heads, mlp = SHAPES[shape]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=8192,
        tie_word_embeddings=shape != "llama3-8b",
    )
    torch.manual_seed(0)
    with torch.device(device):  # built where it runs: 16 GB of fp16 weights never pass through host memory
        return LlamaForCausalLM._from_config(config, dtype=dtype).eval()


def prompt_of(tokenizer, tokens: int) -> str:
    """A text of about `tokens` tokens, shaped like a RAG prompt (prose, then a question)."""
    prose = "Llama 3 uses a tokenizer with a vocabulary of 128,256 tokens and grouped-query attention. " * tokens
    ids = tokenizer(prose, add_special_tokens=False)["input_ids"][: tokens - 12]
    return tokenizer.decode(ids) + "\nQuestion: What is the vocabulary size?\nHelpful Answer:"


def measure(generator: Generator, prompt: str, batches: list[int], new_tokens: int) -> dict:
    """tok/s per batch size (new tokens of all sequences / wall time) and the first token's latency."""
    greedy = Sampling(new_tokens)
    generator.generate([prompt], [Sampling(2)])  # first eager prefill of this shape: allocator, kernels
    row: dict = {}
    for batch in batches:
        _sync()
        start = time.perf_counter()
        completions = generator.generate([prompt] * batch, [greedy] * batch)
        _sync()
        row[batch] = sum(c.completion_tokens for c in completions) / (time.perf_counter() - start)
    first: list[float] = []
    start = time.perf_counter()
    generator.generate([prompt], [greedy], lambda _, piece: first or first.append(time.perf_counter()))
    row["ttft_ms"] = (first[0] - start) * 1e3 if first else float("nan")
    return row


def realistic(generator: Generator, tokenizer, prompt_tokens: int, new_tokens: int) -> dict:
    """tok/s over requests of new lengths and batch sizes, and the recompiles / CUDA graph records they caused."""
    graphs, records = compiled_graph_count(), cuda_graph_records()
    tokens, start = 0, time.perf_counter()
    for share, batch in REALISTIC:
        prompt = prompt_of(tokenizer, int(share * prompt_tokens))
        _sync()
        completions = generator.generate([prompt] * batch, [Sampling(new_tokens)] * batch)
        tokens += sum(c.completion_tokens for c in completions)
    _sync()
    return {
        "tok_s": tokens / (time.perf_counter() - start),
        "recompiles": compiled_graph_count() - graphs,
        "cuda_graph_records": cuda_graph_records() - records,
    }


def inflight_rows(args: argparse.Namespace, model, device: str, prompt: str) -> dict[int, dict]:
    """Per N of --inflight: N requests submitted at once to one warmed InFlight; aggregate tok/s and TTFT."""
    changes = {"decode.continuous_batching": True, "compile.enabled": None}  # compiled steps where CUDA is
    generator = Generator(bench_config(args, False, [1], None, changes), device, model=model)
    decode = InFlight(generator, max_requests=max(args.inflight))
    rows = {}
    try:
        for n in args.inflight:
            greedy = Sampling(args.new_tokens)
            graphs, records = compiled_graph_count(), cuda_graph_records()
            start = time.perf_counter()
            for i in range(n):
                decode.submit(f"r{n}-{i}", prompt, greedy)
            first: dict[str, float] = {}
            tokens, done = 0, 0
            while done < n:
                for key, update in decode.poll(wait_s=60).items():
                    if update.error is not None:
                        raise RuntimeError(update.error)
                    if update.piece and key not in first:
                        first[key] = time.perf_counter() - start
                    if update.completion is not None:
                        tokens, done = tokens + update.completion.completion_tokens, done + 1
            ttft = sorted(first.values()) or [float("nan")]
            rows[n] = {
                "tok_s": tokens / (time.perf_counter() - start),
                "ttft_p50_ms": ttft[len(ttft) // 2] * 1e3,
                "ttft_max_ms": ttft[-1] * 1e3,
                "recompiles": compiled_graph_count() - graphs,
                "cuda_graph_records": cuda_graph_records() - records,
                "warm_up_s": decode.warm_up_s,
            }
            print(inflight_table({n: rows[n]}, f"in-flight, {n} requests"), flush=True)
    finally:
        decode.stop()
    return rows


def inflight_table(rows: dict[int, dict], description: str) -> str:
    lines = [
        description,
        "",
        "| requests at once | aggregate tok/s | TTFT p50 ms | TTFT max ms | recompiles | CUDA graph records "
        "| warm-up s |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in rows.items():
        lines.append(
            f"| {n} | {r['tok_s']:.1f} | {r['ttft_p50_ms']:.0f} | {r['ttft_max_ms']:.0f} | {r['recompiles']} | "
            f"{r['cuda_graph_records']} | {r['warm_up_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def cuda_graph_records() -> int:
    """CUDA graphs Inductor's cudagraph trees have recorded so far (0 on CPU)."""
    from torch._dynamo.utils import counters

    return int(sum(v for k, v in counters["inductor"].items() if "cudagraph" in k and "record" in k))


def peak_memory_gb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def table(rows: dict[str, dict], batches: list[int], description: str) -> str:
    lines = [
        description,
        "",
        "| mode | warm-up s | "
        + " | ".join(f"batch {b} tok/s" for b in batches)
        + " | TTFT ms | peak memory GB | realistic requests tok/s | recompiles | CUDA graph records |",
        "|---" * (len(batches) + 7) + "|",
    ]
    for mode, row in rows.items():
        speeds = " | ".join(f"{row[b]:.1f}" if b in row else "-" for b in batches)
        real = row["realistic"]
        lines.append(
            f"| {mode} | {row['warm_up_s']:.1f} | {speeds} | {row['ttft_ms']:.0f} | {row['peak_gb']:.2f} | "
            f"{real['tok_s']:.1f} | {real['recompiles']} | {real['cuda_graph_records']} |"
        )
    lines += ["", f"Realistic requests (share of the prompt length, batch size), after warm-up: {REALISTIC}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b" if cuda else "smollm2")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64] if cuda else [1, 4])
    parser.add_argument("--prompt-tokens", type=int, default=1024 if cuda else 256)
    parser.add_argument("--new-tokens", type=int, default=128 if cuda else 32)
    parser.add_argument(
        "--modes",
        nargs="*",
        choices=["eager", "compiled", *QUANTIZED, "quantized"],
        default=default_modes(),
        help="'quantized': the quantized modes this device runs; none: only the in-flight table",
    )
    parser.add_argument("--inflight", type=int, nargs="*", default=[1, 16, 64] if cuda else [], help="in-flight loads")
    parser.add_argument("--quantized-batches", type=int, nargs="+", default=[1], help="batch sizes of quantized modes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (the machine may be shared)")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER, help="a tokenizer folder (SmolLM2's by default)")
    add_out_argument(parser, "llm")
    args = parser.parse_args()
    args.modes = [m for mode in args.modes for m in (quantized_modes() if mode == "quantized" else [mode])]
    torch.set_num_threads(args.threads)
    results = Results.create("llm", args.out)
    device, dtype = ("cuda", torch.float16) if cuda else ("cpu", torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    model = random_model(args.shape, dtype, device, VOCAB.get(args.shape, len(tokenizer)))
    prompt = prompt_of(tokenizer, args.prompt_tokens)
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    rows = {}
    for mode in args.modes:
        if cuda:
            torch.cuda.reset_peak_memory_stats()  # each mode's own peak, not the run's
        batches = args.quantized_batches if mode in QUANTIZED else args.batches
        weights = copy.deepcopy(model) if mode in QUANTIZED else model  # quantized in place: a copy
        generator = Generator(bench_config(args, mode != "eager", batches, QUANTIZED.get(mode)), device, model=weights)
        row = measure(generator, prompt, batches, args.new_tokens)
        row["realistic"] = realistic(generator, tokenizer, args.prompt_tokens, args.new_tokens)
        rows[mode] = {**row, "warm_up_s": sum(generator.warm_up_s), "peak_gb": peak_memory_gb(device)}
        print(table({mode: rows[mode]}, args.batches, mode), flush=True)
        del generator, weights
        if cuda:
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name() if cuda else "CPU"
    description = (
        f"{args.shape} shape, random weights, {str(dtype).removeprefix('torch.')}, {name}, torch {torch.__version__}; "
        f"prompt {prompt_tokens} tokens, {args.new_tokens} new tokens greedy; "
        f"threads {torch.get_num_threads()}."
    )
    inflight = inflight_rows(args, model, device, prompt) if args.inflight else {}
    report = table(rows, args.batches, description) if rows else description + "\n"
    if inflight:
        report += "\n" + inflight_table(inflight, f"In-flight decode (InFlight), {args.new_tokens} new tokens each:")
    results.write_json("figures.json", {"description": description, "modes": rows, "inflight": inflight})
    results.write_report(report)
    print(report)


def bench_config(
    args: argparse.Namespace,
    compiled: bool | None,
    batches: list[int],
    quantization: str | None,
    changes: dict = {},  # noqa: B006
) -> LLMConfig:
    """Buckets fitted to the run: every batch size, one cache length for prompt + new tokens (production's for
    the Llama shape)."""
    need = args.prompt_tokens + args.new_tokens + 16  # the chat template adds a few tokens
    settings = {
        "model.path": str(args.tokenizer),
        "generate.max_input_tokens": args.prompt_tokens + 16,
        "generate.max_new_tokens": args.new_tokens,
        "generate.max_new_tokens_limit": args.new_tokens,
        "generate.use_chat_template": False,  # the prompt is exactly --prompt-tokens long
        "compile.enabled": compiled,
        "decode.batch_buckets": sorted(batches),
        "model.quantization": quantization,
        "decode.cache_buckets": CACHE_BUCKETS.get(args.shape, [-(-need // 256) * 256]),  # else rounded up to 256
    }
    return LLMConfig.from_mapping(override({}, {**settings, **changes}), ROOT)


if __name__ == "__main__":
    main()
