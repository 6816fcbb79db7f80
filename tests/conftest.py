"""Fixtures with real parts: a crossbar router and a redis-server on free ports."""

from __future__ import annotations

import pytest

from obsmesh import config
from tests.harness import RedisServer, Router


@pytest.fixture(autouse=True)
def state_in_tmp(tmp_path, monkeypatch):
    """Every test's state (durable stores, simulated data) under its own temporary
    directory, never in the repository: for nodes built in the test process (the
    default) and for processes it starts (the environment)."""
    state = tmp_path / "obsmesh-state"
    monkeypatch.setitem(config.MESH_DEFAULTS, "state_dir", str(state))
    monkeypatch.setenv("OBSMESH_STATE_DIR", str(state))
    return state


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
