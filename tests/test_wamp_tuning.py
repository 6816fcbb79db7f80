"""Process and socket tuning the mesh's latency figures depend on."""

from __future__ import annotations

import socket

import pytest_twisted

from consumers.client import Mesh
from obsmesh.memtune import keep_freed_memory
from tests.harness import connect, wait_until
from tests.nodes_for_tests import probe


def _no_delay(session) -> int:
    sock = session._transport.transport.getHandle()
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_malloc_keeps_freed_memory_on_glibc():
    # Debian's glibc accepts both settings; a refusal would bring back the page faults.
    assert keep_freed_memory() is True


@pytest_twisted.ensureDeferred
async def test_node_and_harness_sessions_switch_nagle_off(router):
    node = probe(router, "nodelay")
    await node.launch()
    s = await connect(router.backend_url)
    try:
        await wait_until(lambda: node.session is not None, 20, "the node to join")
        assert _no_delay(node.session) != 0
        assert _no_delay(s) != 0
    finally:
        s.leave()
        await node.shutdown()


def test_client_library_switches_nagle_off(router):
    with Mesh(router.backend_url, router.realm) as mesh:
        mesh.nodes()
        session = mesh._core.conn._transport_session
        assert _no_delay(session) != 0
