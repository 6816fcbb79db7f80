"""Principals through a real router: revocation that takes effect at once,
roles as given, no wildcard, secrets kept as given, and the public WebSocket
taking WAMP-CRA beside anonymous consumers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from obsmesh import secrets as mesh_secrets
from tests.harness import (
    REPO,
    SECRETS_FILE,
    Router,
    admit,
    backend_credentials,
    connect,
    wait_until,
)
from tests.test_auth import refused


def secrets_cli(*args: str, path: str = SECRETS_FILE, stdin: str | None = None):
    """`obsmesh secrets ...` as an operator types it."""
    return subprocess.run(
        [sys.executable, "-m", "obsmesh", "secrets", *args, "--file", path],
        cwd=REPO,
        capture_output=True,
        text=True,
        input=stdin,
    )


def cra(authid: str, secret: str) -> dict:
    return {"wampcra": {"authid": authid, "secret": secret}}


async def until_left(session, what: str) -> None:
    await wait_until(lambda: not session.is_attached(), 15, what)


@pytest_twisted.ensureDeferred
async def test_revoking_a_principal_ends_its_sessions_and_refuses_its_next_join(router):
    creds = backend_credentials("revoked-node")  # admitted, role node
    first = await connect(router.backend_url, authentication=creds)
    second = await connect(router.ws_url, serializer="json", authentication=creds)
    bystander = await connect(router.backend_url, authentication=backend_credentials("bystander"))
    await first.register(lambda: 1, "obsmesh.consumer.revoked-node.get_data")
    out = secrets_cli("revoke", "revoked-node")
    assert out.returncode == 0, out.stderr
    await until_left(first, "the revoked backend session to be ended")
    await until_left(second, "the revoked WebSocket session to be ended")
    assert await refused(router.backend_url, creds)
    assert await refused(router.ws_url, creds)
    assert bystander.is_attached()  # nobody else's session is touched
    assert await bystander.call("obsmesh.consumer.get_data_node") is not None
    bystander.leave()
    assert secrets_cli("revoke", "revoked-node").returncode == 1  # no such principal now


@pytest_twisted.ensureDeferred
async def test_a_principal_joins_with_the_role_it_was_given_and_a_new_role_ends_its_sessions(
    router,
):
    grafana = await connect(router.backend_url, authentication=backend_credentials("grafana"))
    assert grafana._authrole == "consumer"  # the bridge's principal: a consumer, never a node
    with pytest.raises(ApplicationError):
        await grafana.register(lambda: 1, "obsmesh.consumer.grafana.get_data")
    grafana.leave()
    # a consumer principal that is revoked is refused: it never joins as a node instead
    admit("ex-reader", role="consumer")
    reader = backend_credentials("ex-reader")
    assert not await refused(router.backend_url, reader)
    assert secrets_cli("revoke", "ex-reader").returncode == 0
    assert await refused(router.backend_url, reader)
    creds = backend_credentials("turncoat")
    as_node = await connect(router.backend_url, authentication=creds)
    assert as_node._authrole == "node"
    assert secrets_cli("add", "turncoat", "--role", "consumer").returncode == 0
    await until_left(as_node, "the session that joined with the old role to be ended")
    as_consumer = await connect(router.backend_url, authentication=creds)
    assert as_consumer._authrole == "consumer"
    with pytest.raises(ApplicationError) as info:
        await as_consumer.register(lambda: 1, "obsmesh.consumer.turncoat.get_data")
    assert info.value.error == "wamp.error.not_authorized"
    as_consumer.leave()


@pytest.mark.slow  # measured 3.8-19 s
@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_no_wildcard_admits_an_unnamed_authid(tmp_path):
    """A secrets file of an older version with `*` admits no one by it."""
    legacy = mesh_secrets.new({"hub": "hub", "named": "node"})
    path = str(tmp_path / "legacy.json")
    text = mesh_secrets.dumps(legacy).replace('"hub": "hub"', '"*": "node",\n    "hub": "hub"')
    (tmp_path / "legacy.json").write_text(text)
    assert '"*"' in (tmp_path / "legacy.json").read_text()
    listed = secrets_cli("list", path=path)
    assert "*" not in listed.stdout and "wildcard" in listed.stderr
    assert secrets_cli("add", "*", path=path).returncode == 2
    r = Router(secrets_file=path)
    r.start()
    try:
        stranger = cra("stranger", legacy.derived("stranger"))
        assert await refused(r.backend_url, stranger)
        assert await refused(r.ws_url, stranger)
        assert not await refused(r.backend_url, cra("named", legacy.derived("named")))
    finally:
        r.close()
    harness_file = mesh_secrets.load(SECRETS_FILE)
    assert harness_file.role_of("*") is None and not harness_file.ignored


@pytest_twisted.ensureDeferred
async def test_a_given_secret_is_kept_and_never_shown(router, tmp_path):
    given = "an existing installation's secret 42"
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(given + "\n")
    out = secrets_cli("add", "kept-node", "--role", "node", "--secret-file", str(secret_file))
    assert out.returncode == 0, out.stderr
    assert given not in out.stdout + out.stderr
    from_stdin = secrets_cli(
        "add", "piped", "--role", "consumer", "--secret-file", "-", stdin="from a pipe\n"
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    listing = secrets_cli("list")
    assert "kept-node\tnode\tgiven" in listing.stdout and "piped\tconsumer\tgiven" in listing.stdout
    assert given not in listing.stdout and "from a pipe" not in listing.stdout
    assert secrets_cli("show", "kept-node").stdout.strip() == given
    s = await connect(router.backend_url, authentication=cra("kept-node", given))
    assert s._authrole == "node"
    await s.register(lambda: 1, "obsmesh.consumer.kept-node.get_data")
    s.leave()
    derived = mesh_secrets.load(SECRETS_FILE).derived("kept-node")
    assert await refused(router.backend_url, cra("kept-node", derived))
    p = await connect(router.ws_url, serializer="json", authentication=cra("piped", "from a pipe"))
    assert p._authrole == "consumer"
    p.leave()
    assert secrets_cli("add", "empty", "--secret-file", "-", stdin="\n").returncode == 2
    assert given not in router.log.read_text()
    assert "from a pipe" not in router.log.read_text()


@pytest_twisted.ensureDeferred
async def test_the_public_websocket_takes_wamp_cra_beside_anonymous_consumers(router):
    """A node joins over ws://.../ws with WAMP-CRA, registers, is listed and read
    by an anonymous consumer on the same WebSocket."""
    admit("ws-node")
    node = await connect(
        router.ws_url, serializer="json", authentication=backend_credentials("ws-node")
    )
    assert node._authrole == "node"
    await node.register(lambda *a, **kw: {"pong": list(a)}, "obsmesh.consumer.ws-node.get_fields")
    assert await node.call("obsmesh.data_node.add", "ws-node", "over ws", node._session_id) is True
    anonymous = await connect(router.ws_url, serializer="json")
    assert anonymous._authrole == "consumer"
    names = [n["name"] for n in await anonymous.call("obsmesh.consumer.get_data_node")]
    assert "ws-node" in names
    assert await anonymous.call("obsmesh.consumer.ws-node.get_fields", 1) == {"pong": [1]}
    with pytest.raises(ApplicationError):  # anonymous stays read-only
        await anonymous.register(lambda: 1, "obsmesh.consumer.anon.get_data")
    node.leave()
    await wait_until(lambda: _gone(anonymous, "ws-node"), 15, "the node to leave the listing")
    anonymous.leave()


async def _gone(session, name: str) -> bool:
    return name not in [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]


@pytest.mark.slow  # measured 3.8-19 s
@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_the_authenticator_hears_of_a_change_at_once_without_polling(tmp_path):
    """inotify, not the safety-net poll (an hour here), reports the revocation."""
    from twisted.internet import reactor

    from hub.principals import PrincipalsFile

    path = str(tmp_path / "s.json")
    mesh_secrets.save(path, mesh_secrets.new({"a": "node", "b": "node"}))
    lost: list[set[str]] = []
    watched = PrincipalsFile(path, reactor, lost.append, poll=3600)
    first = await watched.fresh()
    assert first.role_of("a") == "node"
    watched.watch()
    try:
        assert secrets_cli("revoke", "a", path=path).returncode == 0
        await wait_until(lambda: lost, 15, "the change to be noticed")
        assert lost == [{"a"}] and watched.current.role_of("a") is None
        (tmp_path / "s.json").write_text("{ not json")  # a damaged file keeps the last reading
        again = await watched.fresh()
        assert again.role_of("b") == "node" and lost == [{"a"}]
    finally:
        watched.stop()


@pytest_twisted.ensureDeferred
async def test_a_session_revoked_while_it_answers_its_challenge_is_ended_as_it_joins(router):
    """The race the watcher alone would lose: the router read the principal, the
    principal is revoked (its sessions ended: none yet), then the client answers
    and joins with what it was given. It is ended as it joins."""
    from autobahn.twisted.component import Component
    from autobahn.twisted.wamp import Session
    from twisted.internet import defer, reactor

    from obsmesh.wamp import transport

    gate: defer.Deferred = defer.Deferred()
    challenged: defer.Deferred = defer.Deferred()

    class SlowToAnswer(Session):
        def onChallenge(self, challenge):
            signature = super().onChallenge(challenge)
            challenged.callback(None)
            return gate.addCallback(lambda _: signature)

    spec = transport(router.backend_url)
    spec["max_retries"] = 0
    comp = Component(
        transports=[spec], realm="obsmesh", authentication=backend_credentials("late-joiner")
    )
    comp.session_factory = SlowToAnswer
    joined: list = []
    comp.on("join", lambda s, d: joined.append(s))
    done = comp.start(reactor)
    done.addErrback(lambda f: None)
    await challenged
    assert secrets_cli("revoke", "late-joiner").returncode == 0
    await wait_until(
        lambda: "'late-joiner' revoked or changed: ended 0 session(s)" in router.log.read_text(),
        15,
        "the authenticator to end the (no) sessions of the revoked principal",
    )
    gate.callback(None)
    await wait_until(lambda: joined, 15, "the late session to join")
    await wait_until(lambda: not joined[0].is_attached(), 15, "the late session to be ended")
