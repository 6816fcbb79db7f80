"""Per-node authorisation through a real router, in every order.

crossbar caches an authoriser's answer per (realm, role, URI, action), whoever
asked. These sequences run against one router, never restarted, so an answer
for one node that the router kept would show up as the wrong answer for the
next one: X refused on Y's URIs, then Y allowed on its own; X allowed on its
own, then Z refused on X's.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from tests.harness import backend_credentials, connect

P = "obsmesh"
ACK = PublishOptions(acknowledge=True)


async def refused(action) -> None:
    with pytest.raises(ApplicationError) as info:
        await action
    assert info.value.error == "wamp.error.not_authorized", info.value


async def listing(session) -> list[str]:
    return [n["name"] for n in await session.call(f"{P}.consumer.get_data_node")]


@pytest_twisted.async_yield_fixture
async def nodes(own_router):
    """Three nodes X, Y, Z on one router (authenticated as ox, oy, oz)."""
    sessions = {}
    for name in ("ox", "oy", "oz"):
        sessions[name] = await connect(
            own_router.backend_url, authentication=backend_credentials(name)
        )
    yield sessions
    for s in sessions.values():
        s.leave()


def uri(node: str, suffix: str) -> str:
    return f"{P}.consumer.{node}.{suffix}"


@pytest_twisted.ensureDeferred
async def test_register_in_every_order(nodes):
    x, y, z = nodes["ox"], nodes["oy"], nodes["oz"]
    await refused(x.register(lambda: "x", uri("oy", "get_data")))
    await y.register(lambda: "y", uri("oy", "get_data"))  # the refusal was X's alone
    assert await z.call(uri("oy", "get_data")) == "y"
    spare = await x.register(lambda: "x", uri("ox", "spare"))  # X on its own
    await spare.unregister()
    await refused(z.register(lambda: "z", uri("ox", "spare")))  # X's permission was X's alone
    await refused(z.register(lambda: "z", f"{P}.data_node.steal"))  # the hub's space


@pytest_twisted.ensureDeferred
async def test_publish_in_every_order(nodes):
    x, y, z = nodes["ox"], nodes["oy"], nodes["oz"]
    await refused(x.publish(uri("oy", "live"), {"t": [1]}, options=ACK))
    await y.publish(uri("oy", "live"), {"t": [1]}, options=ACK)
    await x.publish(uri("ox", "live"), {"t": [1]}, options=ACK)
    await refused(z.publish(uri("ox", "live"), {"t": [1]}, options=ACK))
    await refused(z.publish(f"{P}.consumer.data_node_added", {"name": "oz"}, options=ACK))
    await refused(z.publish(f"{P}.hub.online", {}, options=ACK))


@pytest_twisted.ensureDeferred
async def test_hub_procedures_in_every_order(nodes):
    x, y, z = nodes["ox"], nodes["oy"], nodes["oz"]
    add, subtract = f"{P}.data_node.add", f"{P}.data_node.subtract"
    # add naming another node, then that node adding itself
    await refused(x.call(add, "oy", "impostor", x._session_id))
    assert await y.call(add, "oy", "Y itself", y._session_id) is True
    assert "oy" in await listing(z)
    # X adding itself, then Z naming X
    assert await x.call(add, "ox", "X itself", x._session_id) is True
    await refused(z.call(add, "ox", "impostor", z._session_id))
    # subtract naming another node: refused, and the node stays listed
    await refused(x.call(subtract, "oy", x._session_id))
    assert "oy" in await listing(z)
    await y.call(subtract, "oy", y._session_id)
    assert "oy" not in await listing(z)
    await x.call(subtract, "ox", x._session_id)
    await refused(z.call(subtract, "ox", z._session_id))
    assert await z.call(add, "oz", "Z itself", z._session_id) is True
    assert await listing(x) == ["oz"]
    # procedures only the hub and the authenticator serve
    await refused(x.call(f"{P}.auth.authorize", {}, "x", "call"))
    await refused(x.call(f"{P}.auth.authenticate", "obsmesh", "ox", {}))
    await refused(x.call("wamp.session.kill_by_authid", "oy"))
