"""Fixtures with real parts: a crossbar router and a redis-server on free ports."""

from __future__ import annotations

import pytest

from obsmesh import config
from tests.harness import RedisServer, Router


def _state_under(monkeypatch: pytest.MonkeyPatch, state) -> None:
    monkeypatch.setitem(config.MESH_DEFAULTS, "state_dir", str(state))
    monkeypatch.setenv("OBSMESH_STATE_DIR", str(state))


@pytest.fixture(scope="session", autouse=True)
def state_in_session_tmp(tmp_path_factory):
    """Nothing a test starts writes state (durable stores, simulated data) into
    the repository: session fixtures get a temporary state directory..."""
    with pytest.MonkeyPatch.context() as mp:
        _state_under(mp, tmp_path_factory.mktemp("session-state"))
        yield


@pytest.fixture(scope="module", autouse=True)
def state_in_module_tmp(state_in_session_tmp, tmp_path_factory):
    """...each module's fixtures (a node shared by its tests) one of their own..."""
    with pytest.MonkeyPatch.context() as mp:
        _state_under(mp, tmp_path_factory.mktemp("module-state"))
        yield


@pytest.fixture(autouse=True)
def state_in_tmp(state_in_module_tmp, tmp_path, monkeypatch):
    """...and each test one of its own, for nodes built in the test process (the
    default settings) and for processes it starts (the environment)."""
    state = tmp_path / "obsmesh-state"
    _state_under(monkeypatch, state)
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
