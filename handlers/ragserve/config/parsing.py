"""Reading a handler mapping into sections, and checking values: the parser every config class goes through.

Public names: ConfigError, override, assignment, config_arguments, sections_of; the config classes also use
check, group_sections, build_section, handler_section, absolute and local_or_hub (underscored: not for callers).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

IGNORED_KEYS = {"profile"}  # TorchServe's own `handler.profile` switch


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message names the YAML key."""


def sections_of(config_cls: type) -> dict[str, type]:
    """A whole config's sections, {yaml key: section dataclass}, read from its fields."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def override(mapping: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a handler mapping with changes applied: dotted keys ({"retrieval.top_k": 3}) or sections
    ({"retrieval": {"top_k": 3}}), a section merged into the one it changes, any other value replacing."""
    result = copy.deepcopy(dict(mapping or {}))
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node = result
        for part in path:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = override(node[last], value)
        else:
            node[last] = copy.deepcopy(value)
    return result


def config_arguments(parser: Any, root: Path, example: str = "corpus.max_pages=500") -> None:
    """The command-line arguments every config-reading script shares: --config, --set KEY=VALUE (repeatable, through
    `assignment`) and --root (where the yaml's relative paths resolve)."""
    parser.add_argument("--config", default="configs/rag-docs.yaml")
    parser.add_argument("--set", type=assignment, action="append", default=[], metavar="KEY=VALUE",
                        help=f"change a handler setting, e.g. --set {example} (repeatable)")  # fmt: skip
    parser.add_argument("--root", type=Path, default=root, help="resolve the yaml's relative paths here")


def assignment(text: str) -> tuple[str, Any]:
    """A command line's `--set retrieval.top_k=3` as (dotted key, YAML value), for override()."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. retrieval.top_k=3), got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _sections(
    mapping: Mapping[str, Any] | None, sections: Mapping[str, type], flat: Mapping[str, tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """The handler mapping grouped by section (a bare `compile: bool` is compile.enabled)."""
    grouped: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for key, value in (mapping or {}).items():
        if key in IGNORED_KEYS:
            continue
        if key == "compile" and isinstance(value, bool):
            grouped["compile"]["enabled"] = value
        elif key in sections and isinstance(value, dict):
            grouped[key].update(value)
        elif key in flat:
            section, name = flat[key]
            grouped[section][name] = value
        else:
            raise ConfigError(f"unknown handler key {key!r}{_moved(key, sections)}; sections: {', '.join(sections)}")
    return grouped


def _moved(key: str, sections: Mapping[str, type]) -> str:
    """Where a flat key of an older config now lives (LLM keys were flat before the sections)."""
    for name, section_cls in sections.items():
        for f in dataclasses.fields(section_cls):
            if key in (f.name, f"{name}_{f.name}", f"model_{f.name}", f"compile_{f.name}", f"rag_{f.name}"):
                return f" (now {name}.{f.name})"
    return ""


def _handler_section(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    return doc.get("handler") or {}


def _build(section_cls: type, name: str, values: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in handler.{name}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(section_cls)
    for key, value in values.items():
        if not _is_a(value, hints[key]):
            shown = str(hints[key]).replace("typing.", "").replace("NoneType", "None")
            shown = re.sub(r"<class '(\w+)'>", r"\1", shown)
            raise ConfigError(f"handler.{name}.{key} must be {shown}, got {value!r} ({type(value).__name__})")
    return section_cls(**values)


def _is_a(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a field's type hint (an int is a float; a bool is not an int)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_is_a(v, typing.get_args(hint)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _absolute(path: str, root: Path) -> str:
    """A relative path made absolute under root, symlinks kept as written: an archive's `index` is a link to the
    repository's store, and the line key (index/line.py corpus_key) is the path from it to the corpus."""
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else os.path.abspath(root / expanded))


def _local_or_hub(name: str | None, root: Path) -> str | None:
    """A folder that exists under root (or an absolute path) becomes absolute; anything else is a hub id."""
    if name is None or Path(name).expanduser().is_absolute():
        return name and str(Path(name).expanduser())
    return str((root / name).resolve()) if (root / name).is_dir() else name


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
