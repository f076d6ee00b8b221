"""The int8 embedder for ONNX Runtime (`embedding.precision: int8`): smoothed, outliers kept in float32.

Public names: INT8_RECIPE, INT8_IDENTITY, TORCH_INT8_IDENTITY, ALONE_MIN_TOKENS, int8_identity, calibration_texts,
prepare_int8, quantize_export, quantize_torch.
ONNX Runtime's dynamic quantization (int8 weights per output channel, activations per tensor at run time:
VNNI on x86, i8mm/NEON on arm64) breaks all-mpnet-base-v2 when applied as is: min cosine to float32 0.77
over corpus chunks and questions (docs/benchmarking.md). The loss is in the activations: a few input
channels of every Linear carry values 10-70x the median (the post-GELU input of the FFN down-projection
most of all), and one per-tensor scale crushes every other channel. Two known remedies, applied before
the export:
- the FFN down-projection's K outlier input channels (largest |x| on calibration texts) stay a small
  float32 Linear, the other channels go through the int8 one (LLM.int8()'s decomposition, with channels
  fixed at calibration: in BERT-like models they are the same dimensions for every input);
- every other Linear is smoothed (SmoothQuant): x / s and W * s with s = max|x|^alpha / max|W|^(1 - alpha)
  per input channel, which moves the activations' range into the per-channel weights.
Measured on 112 pydocs/blog chunks and questions (2026-12-06): plain dynamic int8 min cosine 0.77, the
split alone 0.984, split + smoothing 0.995 (mean 0.998). ONNX Runtime's quantizer itself is used as is.
The torch backend (aarch64's default, torch.compile) runs the same rewrite through torchao's int8 dynamic
quantization instead (quantize_torch): activations per token, so a text's vector never depends on its batch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

ALPHA = 0.5  # SmoothQuant's migration strength (the paper's default; 0.5 and 0.75 measured alike here)
OUTLIER_CHANNELS = 32  # FFN down-projection input channels kept in float32 (of 3,072 for mpnet-base)
CALIBRATION_TEXTS = 64
# Enters the file name and the model identity: a change of recipe is another model (bump v when the
# calibration texts or the rewrite change; v2: the outlier channels moved last, sliced rather than gathered).
INT8_RECIPE = f"int8-v2-sq{ALPHA}-o{OUTLIER_CHANNELS}"
# A text of at least this many tokens runs alone (onnxrt.OnnxRunner: batch-invariant, no padding). Measured on
# this 2-core x86 at 1 thread, 8 texts alone against batched: 1.56x the time at 16 tokens, 1.18x at 32 and 64,
# 0.97x at 128, 0.92x at 256.
ALONE_MIN_TOKENS = 128
# The vectors' identity: the recipe and how it runs (batched int8 vectors, as built before session 11, moved with
# their batch and are another model's)
INT8_IDENTITY = f"{INT8_RECIPE}-alone{ALONE_MIN_TOKENS}"
# torchao on the torch backend: per-token activation scales, other vectors than ONNX Runtime's per-tensor ones
TORCH_INT8_IDENTITY = f"{INT8_RECIPE}-torchao-per-token"
# Beside the model card's paragraphs: sentences of the kinds the encoder sees (questions, prose, code, tables)
BUILT_IN_TEXTS = [
    "What's new with Llama 3.1?",
    "How do I serialize a Python object to JSON with sorted keys?",
    "The batch size and the maximum batch delay decide how many requests TorchServe groups into one call.",
    "json.dumps(obj, *, skipkeys=False, ensure_ascii=True, indent=None, sort_keys=False, **kw)",
    "| model | req/s | p99 |\n|---|---:|---:|\n| compiled | 141.9 | 201 ms |",
    "def fetch(url: str, timeout: float = 10.0) -> bytes:\n    return urlopen(url, timeout=timeout).read()",
    "The collections module provides specialized container datatypes: namedtuple, deque, Counter and OrderedDict.",
    "Retrieval-augmented generation gives a language model passages it was never trained on.",
]


def int8_identity(backend: str) -> str:
    """The identity of int8 vectors made by this embedding.backend (each quantizes activations its own way)."""
    return INT8_IDENTITY if backend == "onnxruntime" else TORCH_INT8_IDENTITY


def calibration_texts(model_path: str) -> list[str]:
    """The model card's paragraphs (README.md, shipped with every sentence-transformers folder) and the
    built-in sentences: CALIBRATION_TEXTS at most, the same for every build of this model folder."""
    card = Path(model_path) / "README.md"
    paragraphs = card.read_text(encoding="utf-8").split("\n\n") if card.is_file() else []
    texts = BUILT_IN_TEXTS + [p.strip() for p in paragraphs if len(p.strip()) >= 40]
    return texts[:CALIBRATION_TEXTS]


class _Smoothed(torch.nn.Module):
    """linear(x / s) with the linear's weight already multiplied by s: the same output, a narrower x."""

    def __init__(self, linear: torch.nn.Linear, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("inverse", 1.0 / scale)
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inverse)


class _OutlierSplit(torch.nn.Module):
    """A Linear as two: its last input channels, the outliers (float32, left out of quantization by their small K),
    and the rest (int8). The sum is the original Linear. prepare_int8 first moves the outlier channels last, so the
    two inputs are slices: ONNX Runtime's Gather over 3,040 of 3,072 channels had taken a quarter of the int8
    encoder's time (24.6% at 8 questions, 1 thread)."""

    def __init__(self, linear: torch.nn.Linear, outliers: int) -> None:
        super().__init__()
        self.first_outlier = linear.in_features - outliers
        self.rest = torch.nn.Linear(self.first_outlier, linear.out_features)
        self.rest.weight.data = linear.weight.data[:, : self.first_outlier].clone()
        self.rest.bias.data = linear.bias.data.clone()
        self.outliers = torch.nn.Linear(outliers, linear.out_features, bias=False)
        self.outliers.weight.data = linear.weight.data[:, self.first_outlier :].clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(x[..., : self.first_outlier]) + self.outliers(x[..., self.first_outlier :])


def _move_to_the_end(up: torch.nn.Linear, down: torch.nn.Linear, channels: torch.Tensor) -> None:
    """Reorder the FFN's hidden channels (up's outputs, down's inputs; the activation between is elementwise) so
    `channels` come last: the same function."""
    rest = torch.ones(down.in_features, dtype=torch.bool)
    rest[channels] = False
    order = torch.cat([rest.nonzero().squeeze(1), channels])
    up.weight.data = up.weight.data[order].clone()
    up.bias.data = up.bias.data[order].clone()
    down.weight.data = down.weight.data[:, order].clone()


def _input_ranges(
    model: torch.nn.Module, linears: dict[str, torch.nn.Linear], tokenizer, texts: list[str], max_len: int
) -> dict[str, torch.Tensor]:
    """max |x| per input channel of every Linear, over the calibration texts' tokens (one text at a time: no
    padding tokens in the statistics)."""
    ranges: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            seen = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            ranges[name] = torch.maximum(ranges[name], seen) if name in ranges else seen

        return record

    handles = [linear.register_forward_pre_hook(hook(name)) for name, linear in linears.items()]
    try:
        with torch.inference_mode():
            for text in texts:
                ids = torch.tensor([tokenizer(text, truncation=True, max_length=max_len)["input_ids"]])
                model(ids, torch.ones_like(ids))
    finally:
        for handle in handles:
            handle.remove()
    return ranges


def _is_down_projection(name: str, linear: torch.nn.Linear) -> bool:
    """The FFN's second Linear (BERT/MPNet name it `output.dense`; its input is the post-GELU activation)."""
    return name.endswith("output.dense") and ".attention." not in name and linear.in_features > linear.out_features


def _up_projection(model: torch.nn.Module, down_name: str) -> torch.nn.Linear:
    """The FFN's first Linear beside a down-projection (BERT/MPNet: `intermediate.dense`), unwrapped."""
    name = down_name.removesuffix("output.dense") + "intermediate.dense"
    up = model.get_submodule(name)  # AttributeError names the path a model of another layout lacks
    return up.linear if isinstance(up, _Smoothed) else up


def prepare_int8(model: torch.nn.Module, tokenizer, texts: list[str], max_len: int) -> int:
    """Rewrite the encoder's Linears in place for int8 (smoothed, outliers split off; float32 outputs unchanged
    up to rounding); the number of outlier channels per down-projection (quantize_export keeps those in float32)."""
    linears = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layer." in name  # the encoder's blocks, not a pooler
    }
    ranges = _input_ranges(model, linears, tokenizer, texts, max_len)
    kept = 0
    with torch.no_grad():
        for name, linear in linears.items():
            parent_name, attribute = name.rsplit(".", 1)
            parent = model.get_submodule(parent_name)
            x_max = ranges[name].clamp(min=1e-5)
            if _is_down_projection(name, linear):
                kept = min(OUTLIER_CHANNELS, linear.in_features // 4)
                _move_to_the_end(_up_projection(model, name), linear, x_max.topk(kept).indices.sort().values)
                setattr(parent, attribute, _OutlierSplit(linear, kept))  # its last `kept` inputs: the outliers
            else:
                scale = (x_max**ALPHA / linear.weight.abs().amax(0).clamp(min=1e-5) ** (1 - ALPHA)).clamp(min=1e-5)
                linear.weight.mul_(scale)
                setattr(parent, attribute, _Smoothed(linear, scale))
    dims = {linear.in_features for linear in linears.values()} | {linear.out_features for linear in linears.values()}
    if kept in dims:  # quantize_export tells the outlier Linears by their K: it must be theirs alone
        raise ValueError(f"int8: {kept} outlier channels equal a Linear's width in this model; change OUTLIER_CHANNELS")
    return kept


def quantize_export(float_file: Path, path: Path, outlier_channels: int) -> None:
    """ONNX Runtime's dynamic int8 quantization of an exported prepare_int8 model: every MatMul with a constant
    weight, per output channel, except the outlier Linears (K == outlier_channels), which stay float32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(float_file), load_external_data=False).graph
    dims = {init.name: tuple(init.dims) for init in graph.initializer}
    keep_float = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and node.input[1] in dims and dims[node.input[1]][0] == outlier_channels
    ]
    quantize_dynamic(
        str(float_file), str(path), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep_float
    )
    logger.info("quantized %s (%s; %d outlier MatMuls in float32)", path.name, INT8_RECIPE, len(keep_float))


def quantize_torch(model: torch.nn.Module, outlier_channels: int) -> None:
    """torchao's int8 dynamic quantization of a prepare_int8 model, in place: int8 weights per output channel and
    activations per token at run time (eager, or Inductor's int8 kernels under torch.compile), every encoder
    Linear but the outlier ones (K == outlier_channels), which stay float32."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    def chosen(module: torch.nn.Module, name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and ".layer." in name and module.in_features != outlier_channels

    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=chosen)
    logger.info("quantized the encoder's Linears with torchao (%s, per-token activations)", INT8_RECIPE)
