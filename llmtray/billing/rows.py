"""The normalised billed row: what one source says about one UTC day and one set of dimensions.

Tokens follow the event schema's convention (DESIGN §3): `input_tokens` is *all* input, with the
cache reads and writes as parts of it, so billed and observed quantities compare column by
column whatever each provider calls them (OpenAI includes cached tokens in `input_tokens`,
Anthropic reports them apart).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date

COST, USAGE = "cost", "usage"
# categories of cost rows: model tokens, server-side tools/storage, and spend the source does
# not charge itself (OpenRouter BYOK: on the upstream provider's bill)
TOKENS, TOOL, BYOK = "tokens", "tool", "byok"
QUANTITIES = ("requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")


@dataclass
class BilledRow:
    day: date
    kind: str  # COST (money) or USAGE (quantities only)
    model: str = ""
    project: str = ""  # OpenAI project_id, Anthropic workspace_id
    item: str = ""  # line item / description / upstream endpoint
    category: str = TOKENS
    tier: str = ""  # batch, flex, priority… ('' = standard)
    context: str = ""  # Anthropic context_window ('200k-1M' is the long-context tier)
    amount_nanos: int | None = None
    requests: int | None = None  # None: the source does not count requests
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0

    @property
    def key(self) -> tuple[object, ...]:
        return (self.day, self.kind, self.model, self.project, self.item, self.category, self.tier, self.context)

    def absorb(self, other: BilledRow) -> None:
        """Add a row with the same key (a provider may split one key over several results)."""
        if other.amount_nanos is not None:
            self.amount_nanos = (self.amount_nanos or 0) + other.amount_nanos
        if other.requests is not None:
            self.requests = (self.requests or 0) + other.requests
        for name in QUANTITIES[1:]:
            setattr(self, name, getattr(self, name) + getattr(other, name))


COLUMNS = tuple(f.name for f in fields(BilledRow))


def merge(rows: Iterable[BilledRow]) -> list[BilledRow]:
    """One row per key, sums exact."""
    out: dict[tuple[object, ...], BilledRow] = {}
    for row in rows:
        if row.key in out:
            out[row.key].absorb(row)
        else:
            out[row.key] = row
    return list(out.values())
