"""Importing usage files: the known formats, and recognising which one a file is.

Detection reads only the head of the file (a CSV header or the first JSON value), tries the
formats from the most specific to the most general, and falls back to a column mapping saved
for the file's header. The import itself lives in `llmtray.importers.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmtray.importers.anthropic import AnthropicCostApi, AnthropicCostCsv, AnthropicUsageApi, AnthropicUsageCsv
from llmtray.importers.base import Format, Head, ImportFileError
from llmtray.importers.generic import GenericCsv
from llmtray.importers.litellm import LiteLLMSpendLogsCsv, LiteLLMUiCsv
from llmtray.importers.llmtray_export import LlmtrayCsv, LlmtrayJsonl
from llmtray.importers.mapping import ColumnMapping, MappingStore
from llmtray.importers.openai import OpenAICostCsv, OpenAICostsApi, OpenAIUsageApi, OpenAIUsageCsv
from llmtray.importers.openrouter import OpenRouterActivityCsv, OpenRouterGenerationsCsv
from llmtray.importers.textfile import read_head

GENERIC = GenericCsv()
# Detection order: formats whose identifying columns are a superset of another's come first.
FORMATS: tuple[Format, ...] = (
    LlmtrayCsv(), LlmtrayJsonl(),
    OpenAICostCsv(), OpenAIUsageCsv(), OpenAIUsageApi(), OpenAICostsApi(),
    AnthropicCostCsv(), AnthropicUsageCsv(), AnthropicUsageApi(), AnthropicCostApi(),
    OpenRouterGenerationsCsv(), OpenRouterActivityCsv(),
    LiteLLMSpendLogsCsv(), LiteLLMUiCsv(),
    GENERIC,
)
BY_NAME: dict[str, Format] = {f.name: f for f in FORMATS}


@dataclass(frozen=True)
class Detection:
    """A file's format, its head, and (for a generic CSV) the mapping saved for its header."""

    format: Format
    head: Head
    mapping: ColumnMapping | None = None


def get_format(name: str) -> Format:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ImportFileError(f"unknown format {name!r}; known: {', '.join(BY_NAME)}") from None


def detect(path: Path, *, format_name: str | None = None, mappings: MappingStore | None = None) -> Detection:
    """Recognise `path` (or take `format_name` as given); raises `ImportFileError` saying what
    the file looked like when nothing matches."""
    head = read_head(path)
    saved = mappings.get(head.header) if mappings is not None and head.header else None
    if format_name is not None:
        fmt = get_format(format_name)
        return Detection(fmt, head, saved if fmt is GENERIC else None)
    for fmt in FORMATS:
        if fmt.detect(head):
            return Detection(fmt, head)
    if saved is not None:
        return Detection(GENERIC, head, saved)
    if not head.text.strip():
        raise ImportFileError(f"{path.name}: the file is empty")
    if head.header:
        shown = ", ".join(head.header[:12]) + (", …" if len(head.header) > 12 else "")
        raise ImportFileError(
            f"{path.name}: unknown CSV columns ({shown}); map them with --format generic-csv --map FIELD=COLUMN "
            "or in the Import dialog"
        )
    raise ImportFileError(f"{path.name}: not a usage export llmtray knows (neither a known CSV nor JSON report)")


__all__ = ["BY_NAME", "FORMATS", "ColumnMapping", "Detection", "Format", "ImportFileError", "MappingStore",
           "detect", "get_format"]
