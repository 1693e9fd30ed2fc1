"""Fixtures for the outgoing-webhook tests: a receiver, an app that may reach it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from tests.integration.outgoing.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hook_app(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """An app whose SSRF guard lets loopback through (the receiver lives there)."""

    def build(**overrides: Any) -> Flask:
        config: dict[str, Any] = {
            "OUTGOING_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "OUTGOING_WEBHOOK_TIMEOUT_SECONDS": 1.0,
        }
        config.update(overrides)
        return make_app(**config)

    return build
