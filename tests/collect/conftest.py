"""Fixtures of the collectors' tests: a local HTTP server and a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from localserver import LocalServer, VirtualClock


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A fresh local HTTP server for one test."""
    srv = LocalServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def clock() -> VirtualClock:
    """A virtual clock for the client's rate limiter and back-off."""
    return VirtualClock()
