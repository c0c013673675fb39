"""``mltrack config check``: which file is used, every key's value and where it came from, and any problem."""

from __future__ import annotations

import argparse


def cmd_config_check(args: argparse.Namespace) -> int:
    from mltrack.config import check, format_check

    result = check(args.file)
    print(format_check(result))
    return result.exit_code


def add_parser(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="configuration tools")
    verbs = config.add_subparsers(dest="verb", required=True)
    chk = verbs.add_parser("check", help="validate .mltrack.yml and the environment, show effective settings")
    chk.add_argument("--file", help="check this file instead of the one mltrack would find")
    chk.set_defaults(func=cmd_config_check)
