"""Fixtures with real parts: a crossbar router and a redis-server on free ports."""

from __future__ import annotations

import pytest

from tests.harness import RedisServer, Router


@pytest.fixture(scope="session")
def router():
    """One router for the session; tests that restart it use `own_router`."""
    r = Router()
    r.start()
    yield r
    r.close()


@pytest.fixture
def own_router():
    """A router of this test's own, free to stop, kill and restart."""
    r = Router()
    r.start()
    yield r
    r.close()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.close()
