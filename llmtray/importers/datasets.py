"""How an import (a dataset) reads in a list: the columns `llmtray import --list` prints and the
Import dialog's "Previous imports" table shows, made in one place so the two never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

HEADERS = ("id", "imported at", "format", "file", "rows", "imported", "duplicates", "errors", "replaced", "state")
NUMERIC = frozenset(("rows", "imported", "duplicates", "errors", "replaced"))


def cells(dataset: Mapping[str, Any]) -> tuple[str, ...]:
    """One dataset (a row of `Store.list_datasets`) as text, in `HEADERS` order; local time.
    "imported" is what it has stored now (a crash-cut import never wrote its count); "replaced":
    observed events its `--overlap replace` deleted, which removing it restores."""
    return (str(dataset["id"]), datetime.fromtimestamp(dataset["created"]).strftime("%Y-%m-%d %H:%M"),
            dataset["format"], dataset["name"], f"{dataset['rows_read']:,}", f"{dataset['events']:,}",
            f"{dataset['duplicates']:,}", f"{dataset['errors']:,}", f"{dataset['replaced']:,}", dataset["state"])
