"""The provider's own bill (DESIGN §13): pull what OpenAI, Anthropic and OpenRouter say they
billed, keep it in its own ledger, and set it beside what llmtray observed.

No Qt here: the tray app and `llmtray serve` run the same `BillingScheduler`, and the CLI calls
`sync.sync_source` directly.
"""
