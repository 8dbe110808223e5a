"""Unit tests sign records with a fixed test secret, never a key file in the working tree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batch_bridge import _trust


@pytest.fixture(autouse=True)
def record_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(_trust.SECRET_ENV, "unit-test-secret")
    monkeypatch.setattr(_trust, "_secret", None)
    yield
