"""Email (DESIGN §14): alert mails and the daily digest over SMTP, with the standard library.

No Qt here: the tray app and `llmtray serve` both run `MailService` on a thread of its own, and
the CLI sends a digest directly.
"""
