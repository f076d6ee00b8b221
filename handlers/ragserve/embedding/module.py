"""The sentence-embedding module every backend runs: transformer -> pooling -> L2 normalisation.

Public names: SentenceEmbedder.
Torch runs it eagerly or compiled (backends.TorchBackend); onnxrt.py exports this same module to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class SentenceEmbedder(torch.nn.Module):
    """Transformer plus pooling in one module, so torch.compile and the ONNX export see (and fuse) both."""

    def __init__(self, transformer: torch.nn.Module, pooling: str) -> None:
        super().__init__()
        self.transformer = transformer
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        output = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "tokens":
            return output.last_hidden_state  # (n, seq, dim): no pooling (span vectors, encoder.embed_spans)
        if self.pooling == "cls_pooler":
            return output.pooler_output  # (n, dim), the demo's choice: not what the model was trained for
        hidden = output.last_hidden_state  # (n, seq, dim)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (n, seq, 1)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (n, dim)
        return F.normalize(mean, p=2, dim=1)  # (n, dim), unit rows
