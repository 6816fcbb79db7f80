"""Fixtures with real parts (a crossbar router and a redis-server on free ports),
and the test lanes: every test is marked `router` (it starts a real server or
process) or `unit` (it does not); `make test-fast` runs `unit and not slow`."""

from __future__ import annotations

import os
import subprocess
import sys

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


# Fixtures that start a real server or process (crossbar, redis-server, a node or
# simulator process, Chromium). `item.fixturenames` is a test's whole fixture
# closure, so a fixture built on one of these (`bridge(router, ...)`) counts too.
# A module whose tests or generically named fixtures start processes says so
# itself: `pytestmark = pytest.mark.router`.
PROCESS_FIXTURES = frozenset(
    {
        "router",
        "own_router",
        "redis_server",
        "sisock_router",  # test_sisock, test_client_encoding: a router of their own
        "cached_hours",  # test_das2_cache: a redis-server of its own
        "mesh_up",  # test_whole_mesh: `obsmesh up` as a process
        "lane",  # test_hosts: simulated hosts in network namespaces
        "browser",  # test_web, test_web_reading: Chromium through playwright
        "page",
    }
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("router") is None and PROCESS_FIXTURES.intersection(
            item.fixturenames
        ):
            item.add_marker(pytest.mark.router)
        if item.get_closest_marker("router") is None:
            item.add_marker(pytest.mark.unit)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _UnitGuard(item) as guard:
        outcome = yield
    guard.judge(outcome)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _UnitGuard(item) as guard:
        outcome = yield
    guard.judge(outcome)


class _UnitGuard:
    """While a `unit` test (and the fixtures it sets up) runs, starting any process
    fails loudly, so the marking cannot silently rot. Every way Python starts one
    goes through these: subprocess (asyncio's and playwright's too), Twisted's
    spawnProcess (posix_spawnp or fork), multiprocessing (fork). The refusal is
    raised where the process is started, printed at once (Twisted may swallow it
    into a Deferred nobody waits on, and the test then hangs until its timeout),
    and fails the test even when the test itself caught it."""

    SPAWNERS = ((subprocess.Popen, "_execute_child"),) + tuple(
        (os, name)
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp")
        if hasattr(os, name)
    )

    def __init__(self, item: pytest.Item) -> None:
        self.active = item.get_closest_marker("unit") is not None
        self.nodeid = item.nodeid
        self.refusals: list[str] = []
        self.patch = pytest.MonkeyPatch()

    def __enter__(self) -> _UnitGuard:
        if self.active:
            for owner, name in self.SPAWNERS:
                self.patch.setattr(owner, name, self.refuse)
        return self

    def __exit__(self, *exc: object) -> None:
        self.patch.undo()

    def refuse(self, *args: object, **kwargs: object) -> None:
        # (Popen's) _execute_child(args, executable, ...), posix_spawnp(path, argv, ...), fork()
        command = args[:2]
        message = (
            f"{self.nodeid} is marked `unit` but starts a process ({command!r}): a unit "
            "test starts no router, redis-server, node, reader or browser. Mark it "
            "`@pytest.mark.router` (or its module: `pytestmark = pytest.mark.router`), or "
            "add the fixture that starts it to PROCESS_FIXTURES in tests/conftest.py."
        )
        self.refusals.append(message)
        print(f"\n{message}", file=sys.__stderr__, flush=True)
        raise RuntimeError(message)

    def judge(self, outcome) -> None:
        if self.refusals and outcome.excinfo is None:
            outcome.force_exception(RuntimeError(self.refusals[0]))
