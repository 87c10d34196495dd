"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.secrets import REGISTRY
from bridge.simulators.webhook_receiver import WebhookReceiver
from tests.schema_check import SchemaCheck


@pytest.fixture(autouse=True)
def webhook_schema_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[SchemaCheck]:
    """Every default webhook body a test receiver gets must match its published schema."""
    check = SchemaCheck()
    monkeypatch.setattr(WebhookReceiver, "default_check", check)
    yield check
    assert not check.problems, (
        "webhook bodies do not match their published JSON Schema (bridge/webhooks/catalog.py; "
        "`bridge schema TYPE`):\n  " + "\n  ".join(check.problems))


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """The process's secret registry starts empty in every test: what one test's config
    registered must not mask another test's output."""
    REGISTRY.clear()
    yield
    REGISTRY.clear()
