"""The configuration reference (docs/configuration.md): every key, type, default and meaning, from the classes."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing

import yaml

from ragserve.config.llm import LLM_SECTIONS
from ragserve.config.rag import SECTIONS


def reference_markdown() -> str:
    """The configuration reference: every key of both endpoints, its type, default and meaning."""
    lines = []
    for title, sections in (("RAG endpoint (`Config`)", SECTIONS), ("LLM endpoint (`LLMConfig`)", LLM_SECTIONS)):
        lines += [f"### {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, section_cls in sections.items():
            for key, kind, default, doc in _documented_fields(section_cls):
                lines.append(f"| `{name}.{key}` | `{kind}` | `{default}` | {doc} |")
        lines.append("")
    return "\n".join(lines)


def _documented_fields(section_cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, the field's trailing comment) per field, read from the class source."""
    comments = {}
    for line in inspect.getsource(section_cls).splitlines():
        match = re.match(r"    (\w+): [^#]*?#\s*(?:noqa: \w+ - the YAML key;?\s*)?(.*)$", line)
        if match:
            comments[match.group(1)] = match.group(2).replace("|", "\\|")
    hints = typing.get_type_hints(section_cls)
    rows = []
    for f in dataclasses.fields(section_cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = yaml.safe_dump(default, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
        shown = "(see below)" if len(shown) > 60 else shown.replace("|", "\\|")
        kind = str(hints[f.name]).replace("typing.", "").replace("NoneType", "None")
        kind = re.sub(r"<class '(\w+)'>", r"\1", kind).replace("|", "\\|")
        rows.append((f.name, kind, shown, comments.get(f.name, "")))
    return rows
