"""Entry point of the ``mltrack`` command (also ``python -m mltrack``)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mltrack._version import __version__
from mltrack.cli import config_cmd, insights_cmd, journal_cmd, judge_cmd, pricing_cmd, report_cmd, traces_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mltrack", description="LLM cost and usage tracking for MLflow.")
    parser.add_argument("--version", action="version", version=f"mltrack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    report_cmd.add_parser(sub)
    pricing_cmd.add_parsers(sub)
    config_cmd.add_parser(sub)
    journal_cmd.add_parser(sub)
    traces_cmd.add_parser(sub)
    insights_cmd.add_parser(sub)
    judge_cmd.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # noqa: BLE001 - a CLI prints errors, it does not dump tracebacks
        from mltrack.errors import ConfigError

        if isinstance(exc, (ConfigError, ValueError, OSError, ImportError)):  # ImportError: an install hint
            print(f"mltrack: {exc}", file=sys.stderr)
            return 2
        raise
