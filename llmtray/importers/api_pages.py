"""Saved responses of the providers' usage and cost report APIs (OpenAI `/v1/organization/
usage/completions` and `/costs`, Anthropic `usage_report/messages` and `cost_report`).

A file may hold one page, a JSON array of pages, or one page per line (what a `curl` loop
appends). Each page is `{data: [bucket, …]}` and each bucket has `results`; a format maps one
result (with its bucket) to an event. Results are turned into the same string cells a CSV row
has, so the CSV and API importers of a provider share their row mapping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from llmtray.importers.base import Format, Head, ImportFileError, Item, Options, Parsed, RowError, RowProblem, Skipped
from llmtray.importers.textfile import open_text


def cell(value: Any) -> str:
    """A JSON value as the text a CSV export would hold (null → empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def flatten(result: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"cache_creation": {"ephemeral_5m_input_tokens": 3}}` → `{"cache_creation.ephemeral_5m_input_tokens": "3"}`."""
    out: dict[str, str] = {}
    for key, value in result.items():
        if isinstance(value, dict) and key != "tags":
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = cell(value)
    return out


def _pages(path: Path, options: Options) -> Iterator[tuple[int, str, Any]]:
    """(line, label, page) for each page in the file."""
    with open_text(path, options.meter) as text:
        content = text.read()
    stripped = content.strip()
    try:
        doc = json.loads(stripped)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, list):
        for i, page in enumerate(doc):
            yield 1, f"page {i + 1}", page
        return
    if isinstance(doc, dict):
        yield 1, "page 1", doc
        return
    for n, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield n, f"line {n}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportFileError(f"line {n}: not JSON ({exc.msg} at column {exc.colno})") from None


def _is_page(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("data"), list)


def first_result(value: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The first page's first bucket and first result (either may be missing)."""
    page = value[0] if isinstance(value, list) and value else value
    if not _is_page(page):
        return None, None
    bucket = next((b for b in page["data"] if isinstance(b, dict)), None)
    if bucket is None:
        return None, None
    results = bucket.get("results")
    result = next((r for r in results if isinstance(r, dict)), None) if isinstance(results, list) else None
    return bucket, result


class ApiPagesFormat(Format):
    """A report API's saved pages. Subclasses say which bucket/result keys identify them and
    map one flattened result (plus its bucket's start and end) to an event dict."""

    bucket_key: ClassVar[str]  # `start_time` (OpenAI) or `starting_at` (Anthropic)
    bucket_end_key: ClassVar[str]  # `end_time` or `ending_at`
    result_keys: ClassVar[frozenset[str]]  # any of these in a result identifies the format
    empty_page_default: ClassVar[bool] = False  # claims pages with no results at all

    def detect(self, head: Head) -> bool:
        bucket, result = first_result(head.first_json)
        if bucket is None:
            return False
        if self.bucket_key not in bucket:
            return False
        if result is None:
            return self.empty_page_default
        return bool(self.result_keys & set(result))

    def result(self, row: Mapping[str, str], start: str, end: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def items(self, path: Path, options: Options) -> Iterator[Item]:
        for line, label, page in _pages(path, options):
            if not _is_page(page):
                yield RowError(line, label, "not a report page (expected an object with a 'data' array)")
                continue
            for b, bucket in enumerate(page["data"]):
                where = f"{label} data[{b}]"
                if not isinstance(bucket, dict) or not isinstance(bucket.get("results"), list):
                    yield RowError(line, where, "expected a bucket object with a 'results' array")
                    continue
                start, end = cell(bucket.get(self.bucket_key)), cell(bucket.get(self.bucket_end_key))
                if not bucket["results"]:
                    yield Skipped(line, "empty bucket")
                for r, result in enumerate(bucket["results"]):
                    if not isinstance(result, dict):
                        yield RowError(line, f"{where}.results[{r}]", "expected an object")
                        continue
                    try:
                        data = self.result(flatten(result), start, end)
                    except RowProblem as problem:
                        yield RowError(line, f"{where}.results[{r}]", str(problem))
                        continue
                    if data is None:
                        yield Skipped(line, "result without usage")
                    else:
                        yield Parsed(line, data, where=f"{where}.results[{r}]")
