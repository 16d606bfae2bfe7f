"""pytest fixture: a fresh fake Matomo per test (registered via pytest_plugins)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakematomo.server import FakeMatomo


@pytest.fixture
def fake_matomo() -> Iterator[FakeMatomo]:
    """A started FakeMatomo with the default tokens and sites; stopped after the test."""
    srv = FakeMatomo().start()
    try:
        yield srv
    finally:
        srv.stop()
