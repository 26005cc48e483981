"""What can go wrong talking to a billing API, as data states a user can act on.

Each error's message is what `llmtray billing status` and the Settings section show, so it says
what to do ("needs an admin key") rather than what the HTTP layer saw. No message ever holds a
key: they are built from the provider's error text and our own words only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from llmtray.core.errors import LLMTrayError


class BillingError(LLMTrayError):
    """Base: `state` is the short per-source state ('needs_key', 'rate_limited', …)."""

    state = "error"


class NotConnected(BillingError):
    state = "not_connected"


class WrongKeyClass(BillingError):
    """The key is not an admin/management key (named before anything is sent, or from the
    provider's 'missing scopes' / 'only management keys' answer — never reported as revoked)."""

    state = "needs_admin_key"


class AuthFailed(BillingError):
    """The provider refused the key itself (revoked, mistyped)."""

    state = "auth_failed"


class RateLimited(BillingError):
    state = "rate_limited"

    def __init__(self, source: str, retry_at: float):
        self.retry_at = retry_at
        when = datetime.fromtimestamp(retry_at, UTC).strftime("%H:%M:%S UTC")
        super().__init__(f"{source}: rate-limited, retrying at {when}")


class Unavailable(BillingError):
    """5xx, a timeout or a network error: the provider may answer next round."""

    state = "unavailable"


class MalformedPage(BillingError):
    """A page that is not what the API documents (or a page that repeats): nothing of the
    window it belongs to is written."""

    state = "malformed"
