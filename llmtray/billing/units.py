"""Billed money, exactly: the literal text of each amount → Decimal → integer nano-dollars, with
the unit of every source explicit (BILLING.md §0).

The ×100 trap: Anthropic's cost report sends cents as decimal strings (`"123.45"` is $1.2345),
OpenAI and OpenRouter send dollars. Pages are parsed with `parse_float=Decimal`, so even a JSON
number reaches us as its literal digits (OpenAI's 39-decimal strings and `"0E-6176"` included),
never through a float.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from llmtray.core.money import usd_to_nanos

Unit = Literal["usd", "cents"]
_PER_USD = {"usd": Decimal(1), "cents": Decimal(100)}


def load_page(text: str) -> Any:
    """A JSON page with every non-integer number kept as the Decimal of its literal text."""
    return json.loads(text, parse_float=Decimal)


def amount_nanos(value: Any, unit: Unit, where: str) -> int:
    """Nano-dollars of a billed amount given as a decimal string or a JSON number in `unit`;
    raises ValueError naming `where` (the field's place in the page) for anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ValueError(f"{where}: expected a decimal amount, got {value!r}")
    try:
        d = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{where}: not a decimal amount: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"{where}: not a finite amount: {value!r}")
    return usd_to_nanos(d / _PER_USD[unit])
