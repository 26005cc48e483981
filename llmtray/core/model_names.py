"""A model's alias and its dated snapshots: `gpt-4o-mini` and `gpt-4o-mini-2024-07-18` are one model.

Providers answer with the snapshot a request resolved to (`gpt-4o-mini-2024-07-18`,
`claude-sonnet-4-20250514`), while people write the alias in curl, budgets and blocks. This is the
one place that knows the relation; views group a snapshot under its alias, and filters, budget
scopes and block scopes naming an alias match its snapshots (naming a snapshot matches only it),
in Python (`same_model`) and in SQL (`model_clause`) alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A dated snapshot suffix: `-2024-07-18` (OpenAI) or `-20250514` (Anthropic, Gemini previews).
_SNAPSHOT = re.compile(r"^(?P<alias>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{8})$")
_GLOB_SUFFIXES = ("-" + "[0-9]" * 4 + "-" + "[0-9]" * 2 + "-" + "[0-9]" * 2, "-" + "[0-9]" * 8)


def alias_of(model: str) -> str:
    """The alias a dated snapshot belongs to; any other name is its own alias."""
    found = _SNAPSHOT.match(model)
    return found.group("alias") if found else model


def same_model(wanted: str, model: str | None) -> bool:
    """Whether a scope naming `wanted` covers a call to `model` (exactly, or as its snapshot)."""
    return model is not None and (model == wanted or alias_of(model) == wanted)


def _glob_literal(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def model_clause(column: str, wanted: Sequence[str]) -> tuple[str, list[str]]:
    """SQL true when `column` is one of `wanted` or a dated snapshot of one (GLOB is exact-case
    like `=`, so the results agree with `same_model`)."""
    parts = [f"{column} IN ({','.join('?' * len(wanted))})"]
    args: list[str] = list(wanted)
    for name in wanted:
        if alias_of(name) == name:  # a snapshot has no snapshots of its own
            for suffix in _GLOB_SUFFIXES:
                parts.append(f"{column} GLOB ?")
                args.append(_glob_literal(name) + suffix)
    return "(" + " OR ".join(parts) + ")", args
