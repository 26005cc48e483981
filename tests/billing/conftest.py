"""Fixtures for the billing tests: a running stub, keys in the environment, a config aimed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmtray.billing.keys import SPECS
from llmtray.config import Config
from tests.billing.stub import KEYS, BillingStub


@pytest.fixture
def stub() -> Iterator[BillingStub]:
    with BillingStub() as s:
        yield s


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for source, key in KEYS.items():
        monkeypatch.setenv(SPECS[source].env, key)
    return KEYS


@pytest.fixture
def config(stub: BillingStub) -> Config:
    return Config(billing_urls={s: stub.url for s in KEYS})
