"""A TorchServe Context as the backend builds it, for handler tests without a server."""

from __future__ import annotations

from pathlib import Path

import ts
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl


def make_context(model_dir: Path, handler_yaml: dict, content_types: list[str]) -> Context:
    """One request slot per content type; the handler section as TorchServe passes the model yaml."""
    ctx = Context("test", str(model_dir), {}, len(content_types), None, "0.12.0")
    ctx.model_yaml_config = {"handler": handler_yaml}
    ctx.request_processor = [RequestProcessor({"body": {"content-type": ct}}) for ct in content_types]
    ctx.request_ids = {i: f"request-{i}" for i in range(len(content_types))}
    ctx.metrics = MetricsCacheYamlImpl(config_file_path=str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
    ctx.metrics.initialize_cache()
    ctx.metrics.model_name = "test"
    return ctx
