"""Scope flags shared by `budgets add`, `block` and `guards add`: one spelling everywhere."""

from __future__ import annotations

import argparse

from llmtray.core.budgets import SCOPE_FIELDS, Scope, parse_tag

_METAVARS = {"provider": "P", "model": "M", "feature": "F", "user": "U", "project": "P", "env": "E"}


def add_scope_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """`--provider P … --env E` and a repeatable `--tag K=V`; `verb` completes "…only events with this X"."""
    for dim in SCOPE_FIELDS:
        parser.add_argument(f"--{dim}", metavar=_METAVARS[dim], help=f"{verb} only calls with this {dim}")
    parser.add_argument("--tag", action="append", default=[], metavar="K=V",
                        help=f"{verb} only calls carrying this tag (repeat for several)")


def scope_from_args(args: argparse.Namespace) -> Scope:
    return Scope(**{d: getattr(args, d) for d in SCOPE_FIELDS}, tags=tuple(parse_tag(t) for t in args.tag))
