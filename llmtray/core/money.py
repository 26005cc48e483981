"""Exact money: costs are integer nano-dollars everywhere; Decimal only at the edges."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

NANOS_PER_USD = 1_000_000_000
_NANO = Decimal(1) / NANOS_PER_USD


def usd_to_nanos(value: Decimal | int | str) -> int:
    """Round a dollar amount to the nearest nano-dollar (banker's rounding, so sums don't drift)."""
    d = value if isinstance(value, Decimal) else Decimal(value)
    return int((d * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def nanos_to_decimal(nanos: int) -> Decimal:
    """The exact Decimal dollar value of a nano-dollar amount, without trailing-zero noise."""
    d = Decimal(nanos) / NANOS_PER_USD
    return d.quantize(_NANO).normalize() if nanos else Decimal(0)


def nanos_to_str(nanos: int | None) -> str | None:
    """Decimal string for JSON/CSV (plain notation, never exponent); None stays None (unpriced)."""
    if nanos is None:
        return None
    return format(nanos_to_decimal(nanos), "f")


def parse_usd(text: str) -> Decimal:
    """Parse a user-written dollar amount (`12.5`, `$1,200.00`); raises ValueError with the text."""
    cleaned = text.strip().replace(",", "").lstrip("$").strip()
    try:
        d = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"not a dollar amount: {text!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite dollar amount: {text!r}")
    return d


def format_usd(nanos: int | None, *, precise: bool = False) -> str:
    """Human display: `$12.34`, small amounts with more digits (`$0.0042`), unpriced as `—`."""
    if nanos is None:
        return "—"
    d = nanos_to_decimal(nanos)
    sign = "-" if d < 0 else ""
    d = abs(d)
    if precise or (0 < d < Decimal("0.01")):
        text = f"{d:,.6f}".rstrip("0")
        if text.endswith("."):
            text += "00"
        elif len(text.split(".")[1]) < 2:
            text += "0"
        return f"{sign}${text}"
    return f"{sign}${d:,.2f}"
