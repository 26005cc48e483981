"""Billing keys: one keyring item per source (service `llmtray`, key `billing.<source>`), or the
environment variable of DESIGN §13 — an admin key is never the inference key, never in
config.toml, never in a URL or a log line.

The key's class is checked before anything is sent: an OpenAI project key or an Anthropic
workspace key sent to an admin endpoint only earns a confusing 401/403, so we name the mistake
ourselves. OpenRouter keys carry no class in their text (`sk-or-v1-…` for both kinds); the
provider's 403 "Only management keys…" is turned into the same message by the client.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from llmtray.billing.errors import NotConnected, WrongKeyClass

log = logging.getLogger(__name__)

KEYRING_SERVICE = "llmtray"


@dataclass(frozen=True)
class KeySpec:
    source: str
    env: str
    prefix: str | None  # what an admin key starts with (None: not visible in the text)
    kind: str  # what to ask for, in messages
    wrong_kinds: tuple[tuple[str, str], ...] = ()  # (prefix, what that key is) for a precise message


SPECS: dict[str, KeySpec] = {
    "openai": KeySpec("openai", "LLMTRAY_OPENAI_ADMIN_KEY", "sk-admin-", "an OpenAI admin key (sk-admin-…, "
                      "created by an org Owner, scope api.usage.read)",
                      (("sk-proj-", "a project key"), ("sk-svcacct-", "a service-account key"), ("sk-", "an API key"))),
    "anthropic": KeySpec("anthropic", "LLMTRAY_ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-", "an Anthropic admin key "
                         "(sk-ant-admin01-…, from Console → Settings → Admin keys)",
                         (("sk-ant-api", "a workspace API key"), ("sk-ant-", "not an admin key"))),
    "openrouter": KeySpec("openrouter", "LLMTRAY_OPENROUTER_MANAGEMENT_KEY", None,
                          "an OpenRouter management key (Settings → Management keys)"),
}


def keyring_name(source: str) -> str:
    return f"billing.{source}"


def check_class(source: str, key: str) -> str:
    """The key stripped, or `WrongKeyClass` saying which kind of key it is and which is needed."""
    spec = SPECS[source]
    key = key.strip()
    if not key:
        raise WrongKeyClass(f"{source}: the key is empty; needs {spec.kind}")
    if any(c.isspace() for c in key) or not key.isprintable():
        raise WrongKeyClass(f"{source}: the key contains spaces or control characters; paste it again")
    if spec.prefix and not key.startswith(spec.prefix):
        what = next((name for prefix, name in spec.wrong_kinds if key.startswith(prefix)), "not an admin key")
        raise WrongKeyClass(f"{source}: this is {what}, which cannot read the bill; needs {spec.kind}")
    return key


def load_key(source: str) -> str:
    """The source's key: the environment variable first (headless servers, tests), then the
    keyring; `NotConnected` when neither has one. Keyrings can block: call off the GUI thread."""
    spec = SPECS[source]
    key = os.environ.get(spec.env, "").strip()
    if not key:
        key = _keyring_get(source) or ""
    if not key:
        raise NotConnected(f"{source}: not connected (run `llmtray billing connect {source}` "
                           f"or set {spec.env})")
    return check_class(source, key)


def _keyring_get(source: str) -> str | None:
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    try:
        return keyring.get_password(KEYRING_SERVICE, keyring_name(source))
    except NoKeyringError:  # no keyring on this machine: not connected, nothing to warn about (use the env)
        return None
    except (KeyringError, RuntimeError, OSError) as exc:
        log.warning("%s billing key unavailable: keyring failed (%s)", source, type(exc).__name__)
        return None


def save_key(source: str, key: str | None) -> None:
    """Keep the key in the keyring (None removes it); raises the keyring's error if it can't,
    or RuntimeError when the keyring answered but did not keep it."""
    import keyring
    from keyring.errors import PasswordDeleteError

    if key is None:
        try:
            keyring.delete_password(KEYRING_SERVICE, keyring_name(source))
        except PasswordDeleteError:
            pass
        return
    key = check_class(source, key)
    keyring.set_password(KEYRING_SERVICE, keyring_name(source), key)
    # some backends (the null one, a fail-open chainer) accept a key and keep nothing: saying
    # "connected" then would leave the user with a bill that never syncs
    if keyring.get_password(KEYRING_SERVICE, keyring_name(source)) != key:
        raise RuntimeError(f"the keyring backend {type(keyring.get_keyring()).__name__} did not keep the key")
