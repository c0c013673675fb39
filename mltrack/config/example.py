"""Render `.mltrack.yml.example` and the key reference of docs/configuration.md from the table.

``python -m mltrack.config [REPO_ROOT]`` rewrites both files; tests check they match.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from .keys import CONFIG_ENV, ENABLED_ENVS, KEYS, Key

EXAMPLE_FILE = ".mltrack.yml.example"
DOCS_FILE = "docs/configuration.md"
BEGIN = "<!-- BEGIN GENERATED: keys (python -m mltrack.config) -->"
END = "<!-- END GENERATED: keys -->"

_HEADER = f"""\
# .mltrack.yml -- mltrack configuration. Every key is optional; copy what you need.
# Generated from mltrack/config/keys.py by `python -m mltrack.config`; do not edit by hand.
#
# Found through ${CONFIG_ENV}, else the nearest .mltrack.yml (or .mltrack.yaml) from the working
# directory upwards. Precedence: defaults < this file < environment < mltrack.configure(...).
# {ENABLED_ENVS[0]}=false (or {ENABLED_ENVS[1]}=false) in the environment turns all tracking off.
# Each value below is the default; commented lines show an example.
"""


def yaml_value(value: Any) -> str:
    """A value as inline YAML (null, true, {}, 1.0, text)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def _block(key: Key) -> list[str]:
    lines = [f"# {line}" for line in textwrap.wrap(key.doc, 108)]
    meta = f"# type: {key.kind.label}"
    if key.env:
        meta += f"; env: {key.env}"
    if key.extension:
        meta += "; mltrack extension"
    lines.append(meta)
    lines.append(f"{key.name}: {yaml_value(key.default)}")
    if key.example is not None:
        dumped = yaml.safe_dump({key.name: key.example}, default_flow_style=False, sort_keys=False)
        lines += [f"# {line}" for line in dumped.rstrip("\n").splitlines()]
    return lines


def render_example() -> str:
    """The text of `.mltrack.yml.example`: every key with its doc, type, env var, default and an example."""
    blocks = ["\n".join(_block(key)) for key in KEYS]
    return _HEADER + "\n" + "\n\n".join(blocks) + "\n"


def render_reference() -> str:
    """The Markdown key table of docs/configuration.md."""
    rows = ["| key | type | default | env var | description |", "|---|---|---|---|---|"]
    for key in KEYS:
        doc = key.doc + (" *(mltrack extension)*" if key.extension else "")
        env = f"`{key.env}`" if key.env else "-"
        rows.append(f"| `{key.name}` | {key.kind.label} | `{yaml_value(key.default)}` | {env} | {doc} |")
    return "\n".join(rows) + "\n"


def splice_reference(doc: str) -> str:
    """``doc`` with the text between the BEGIN/END markers replaced by render_reference()."""
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{render_reference()}{END}{tail}"


def generated_reference(doc: str) -> str:
    """The text between the BEGIN/END markers of ``doc``."""
    return doc.split(BEGIN, 1)[1].split(END, 1)[0].lstrip("\n")


def write_generated(root: Path) -> None:
    """Rewrite `.mltrack.yml.example` and the key table in docs/configuration.md under ``root``."""
    (root / EXAMPLE_FILE).write_text(render_example(), encoding="utf-8")
    docs = root / DOCS_FILE
    docs.write_text(splice_reference(docs.read_text(encoding="utf-8")), encoding="utf-8")
