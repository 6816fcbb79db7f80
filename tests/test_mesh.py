"""The foundation's promises through a real router, with nodes as processes."""

from __future__ import annotations

import signal
import time

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from tests.harness import Router, connect, spawn, stop_process, wait_until

GET = "obsmesh.consumer.get_data_node"


def node_proc(router, tmp_path, kind, name, *extra):
    return spawn(["node", kind, "--name", name, *extra], router.env(), tmp_path / f"{name}.log")


async def listed(session):
    return sorted(n["name"] for n in await session.call(GET))


@pytest_twisted.ensureDeferred
async def test_sigkilled_node_disappears_within_two_seconds(router, tmp_path):
    proc = node_proc(router, tmp_path, "sensors", "victim", "--interval", "0.2")
    s = await connect(router.backend_url)
    try:
        await wait_until(lambda: _has(s, "victim"), 30, "the node to be listed")
        gone = []
        await s.subscribe(gone.append, "obsmesh.consumer.data_node_subtracted")
        killed = time.monotonic()
        stop_process(proc, signal.SIGKILL)
        await wait_until(
            lambda: any(g["name"] == "victim" for g in gone), 2.0, "data_node_subtracted"
        )
        assert time.monotonic() - killed < 2.0
        assert "victim" not in await listed(s)
    finally:
        stop_process(proc, signal.SIGKILL)
        s.leave()


async def _has(session, name):
    return name in await listed(session)


@pytest_twisted.ensureDeferred
async def test_sigterm_subtracts_then_leaves(router, tmp_path):
    proc = node_proc(router, tmp_path, "sensors", "polite")
    s = await connect(router.backend_url)
    try:
        await wait_until(lambda: _has(s, "polite"), 30, "the node to be listed")
        gone = []
        await s.subscribe(gone.append, "obsmesh.consumer.data_node_subtracted")
        assert stop_process(proc, signal.SIGTERM) == 0
        await wait_until(lambda: gone, 5, "data_node_subtracted")
        assert "polite" not in await listed(s)
        log = (tmp_path / "polite.log").read_text()
        assert "Traceback" not in log
    finally:
        stop_process(proc, signal.SIGKILL)
        s.leave()


@pytest.mark.slow  # measured 13-37 s
@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_router_restart_everything_comes_back_without_duplicates(tmp_path):
    r = Router()
    r.start()
    procs = [node_proc(r, tmp_path, "sensors", n, "--interval", "0.5") for n in ("one", "two")]
    try:
        s = await connect(r.backend_url)
        await wait_until(lambda: _count(s, 2), 30, "both nodes")
        s.leave()
        r.stop()
        r.start()
        started = time.monotonic()
        s = await connect(r.backend_url)
        await wait_until(lambda: _count(s, 2), 15, "both nodes again")
        assert time.monotonic() - started < 15
        listing = await s.call(GET)
        assert sorted(n["name"] for n in listing) == ["one", "two"]  # no duplicates
        # and they serve again
        fields, _ = await s.call("obsmesh.consumer.one.get_fields", -3600, 0)
        assert "load1" in fields
        s.leave()
    finally:
        for p in procs:
            stop_process(p, signal.SIGKILL)
        r.close()


async def _count(session, n):
    return len(await session.call(GET)) == n


@pytest_twisted.ensureDeferred
async def test_anonymous_consumer_cannot_add_register_or_publish(router):
    for serializer in ("json", "msgpack"):
        s = await connect(router.ws_url, serializer=serializer)
        try:
            with pytest.raises(ApplicationError) as info:
                await s.call("obsmesh.data_node.add", "evil", "", s._session_id)
            assert info.value.error == "wamp.error.not_authorized"
            with pytest.raises(ApplicationError) as info:
                await s.register(lambda: 1, "obsmesh.consumer.evil.get_data")
            assert info.value.error == "wamp.error.not_authorized"
            from autobahn.wamp.types import PublishOptions

            with pytest.raises(ApplicationError) as info:
                await s.publish(
                    "obsmesh.consumer.evil.live", {}, options=PublishOptions(acknowledge=True)
                )
            assert info.value.error == "wamp.error.not_authorized"
            assert await s.call(GET) is not None  # reading is allowed
        finally:
            s.leave()


@pytest_twisted.ensureDeferred
async def test_duplicate_name_is_refused_while_the_holder_lives(router, tmp_path):
    first = node_proc(router, tmp_path, "sensors", "twin")
    s = await connect(router.backend_url)
    second = None
    try:
        await wait_until(lambda: _has(s, "twin"), 30, "the first twin")
        status = await s.call("obsmesh.consumer.twin.get_status")
        second = node_proc(router, tmp_path, "sensors", "twin")
        await wait_until(
            lambda: (
                "name" in (tmp_path / "twin.log").read_text()
                and "taken" in (tmp_path / "twin.log").read_text()
            ),
            30,
            "the conflict to be logged",
        )
        assert [n["name"] for n in await s.call(GET)].count("twin") == 1
        again = await s.call("obsmesh.consumer.twin.get_status")
        assert again["started"] == status["started"]  # still the first one
        # the holder dies: the second takes over on its own
        stop_process(first, signal.SIGKILL)
        await wait_until(
            lambda: _started_changed(s, status["started"]), 30, "the second twin to take over"
        )
    finally:
        stop_process(first, signal.SIGKILL)
        if second is not None:
            stop_process(second, signal.SIGKILL)
        s.leave()


async def _started_changed(session, started):
    try:
        st = await session.call("obsmesh.consumer.twin.get_status")
    except ApplicationError:
        return False
    return st["started"] != started and st["announced"]


@pytest.mark.slow  # measured 13-37 s
@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_standalone_hub(tmp_path):
    r = Router(host_hub=False)
    r.start()
    env = r.env()  # the hub authenticates as `hub` with the secret derived from the secrets file
    hub = spawn(["hub"], env, tmp_path / "hub.log")
    node = node_proc(r, tmp_path, "sensors", "solo")
    try:
        s = await connect(r.backend_url)
        await wait_until(lambda: _has_safe(s, "solo"), 30, "the node listed by the standalone hub")
        # the hub restarts: the node re-announces itself on hub.online
        stop_process(hub, signal.SIGKILL)
        hub = spawn(["hub"], env, tmp_path / "hub.log")
        await wait_until(lambda: _has_safe(s, "solo"), 30, "the node listed again")
        s.leave()
    finally:
        stop_process(node, signal.SIGKILL)
        stop_process(hub, signal.SIGKILL)
        r.close()


async def _has_safe(session, name):
    try:
        return await _has(session, name)
    except ApplicationError:
        return False
