"""Authentication, per-node authorisation and TLS through a real router."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import pytest_twisted
from autobahn.twisted.component import Component
from autobahn.twisted.wamp import Session
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer

from obsmesh import secrets as mesh_secrets
from tests.harness import (
    REPO,
    SECRETS_FILE,
    Router,
    admit,
    backend_credentials,
    connect,
    spawn,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.router  # starts its own processes


def secret(authid: str, path: str = SECRETS_FILE) -> str:
    return mesh_secrets.load(path).secret_for(authid)


async def refused(url, authentication, realm="obsmesh", session_factory=None):
    """True when the router refuses to let this client join."""
    from twisted.internet import reactor

    from obsmesh.wamp import transport

    spec = transport(url)
    spec["max_retries"] = 0
    comp = Component(transports=[spec], realm=realm, authentication=authentication)
    if session_factory is not None:
        comp.session_factory = session_factory
    joined = []
    comp.on("join", lambda s, d: (joined.append(s), s.leave()))
    done = comp.start(reactor)
    done.addTimeout(15, reactor)
    try:
        await done
    except Exception:
        pass
    return not joined


@pytest_twisted.ensureDeferred
async def test_wrong_secret_and_unknown_authid_are_refused(tmp_path):
    strict = str(tmp_path / "strict.json")
    mesh_secrets.save(strict, mesh_secrets.new({"known": "node", "hub": "hub"}))
    r = Router(secrets_file=strict)
    r.start()
    try:
        url = r.backend_url
        assert not await refused(
            url, {"wampcra": {"authid": "known", "secret": secret("known", strict)}}
        )
        assert await refused(url, {"wampcra": {"authid": "known", "secret": "wrong"}})
        assert await refused(
            url, {"wampcra": {"authid": "stranger", "secret": secret("stranger", strict)}}
        )
        assert await refused(url, {})  # anonymous on the backend
        # a principal revoked while the router runs is refused from then on
        s = mesh_secrets.load(strict)
        del s.principals["known"]
        mesh_secrets.save(strict, s)
        assert await refused(
            url, {"wampcra": {"authid": "known", "secret": secret("known", strict)}}
        )
        log = r.log.read_text()
        assert secret("known", strict) not in log and s.key.hex() not in log
    finally:
        r.close()


@pytest_twisted.ensureDeferred
async def test_a_replayed_challenge_response_is_refused(router):
    seen = {}

    class Recorder(Session):
        def onChallenge(self, challenge):
            if "signature" in seen:  # replay the first session's answer to a new challenge
                seen["second"] = challenge.extra["challenge"]
                return seen["signature"]
            signature = super().onChallenge(challenge)
            seen["first"], seen["signature"] = challenge.extra["challenge"], signature
            return signature

    creds = backend_credentials("replayer")
    assert not await refused(router.backend_url, creds, session_factory=Recorder)
    assert await refused(router.backend_url, creds, session_factory=Recorder)
    assert seen["first"] != seen["second"]  # every challenge is fresh


@pytest_twisted.ensureDeferred
async def test_a_node_acts_only_under_its_own_name(router):
    a = await connect(router.backend_url, authentication=backend_credentials("alpha"))
    try:
        await a.register(lambda: 1, "obsmesh.consumer.alpha.get_data")  # its own: fine
        with pytest.raises(ApplicationError) as info:
            await a.register(lambda: 1, "obsmesh.consumer.beta.get_data")
        assert info.value.error == "wamp.error.not_authorized"
        with pytest.raises(ApplicationError) as info:
            await a.publish(
                "obsmesh.consumer.beta.live", {}, options=PublishOptions(acknowledge=True)
            )
        assert info.value.error == "wamp.error.not_authorized"
        with pytest.raises(ApplicationError) as info:
            await a.register(lambda: 1, "obsmesh.data_node.steal")
        assert info.value.error == "wamp.error.not_authorized"
        with pytest.raises(ApplicationError) as info:
            await a.call("obsmesh.data_node.add", "beta", "impostor", a._session_id)
        assert info.value.error == "wamp.error.not_authorized"
        assert await a.call("obsmesh.data_node.add", "alpha", "me", a._session_id) is True
        names = [n["name"] for n in await a.call("obsmesh.consumer.get_data_node")]
        assert "alpha" in names and "beta" not in names
    finally:
        a.leave()


@pytest_twisted.ensureDeferred
async def test_consumer_authentication_switch(tmp_path):
    r = Router(consumer_auth=True)
    r.start()
    try:
        assert await refused(r.ws_url, {})  # anonymous consumers are refused
        creds = {"wampcra": {"authid": "grafana", "secret": secret("grafana")}}
        s = await connect(r.ws_url, serializer="json", authentication=creds)
        assert await s.call("obsmesh.consumer.get_data_node") == []
        with pytest.raises(ApplicationError) as info:  # still a read-only consumer
            await s.register(lambda: 1, "obsmesh.consumer.grafana.get_data")
        assert info.value.error == "wamp.error.not_authorized"
        s.leave()
    finally:
        r.close()


@pytest_twisted.ensureDeferred
async def test_tls_refuses_plain_text_and_accepts_a_client_trusting_the_ca(tmp_path):
    from twisted.internet import reactor
    from twisted.internet.ssl import Certificate, optionsForClientTLS

    out = subprocess.run(
        [sys.executable, "-m", "obsmesh", "certs", str(tmp_path / "certs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "server.pem" in out.stdout
    assert oct(os.stat(tmp_path / "certs" / "server.key").st_mode & 0o777) == "0o600"
    r = Router(
        tls_key=str(tmp_path / "certs" / "server.key"),
        tls_cert=str(tmp_path / "certs" / "server.pem"),
    )
    r.start()
    try:
        assert await refused(r.ws_url, {})  # plain ws:// to a TLS port
        ca = Certificate.loadPEM((tmp_path / "certs" / "ca.pem").read_bytes())
        spec = {
            "type": "websocket",
            "url": f"wss://localhost:{r.public_port}/ws",
            "serializers": ["json"],
            "endpoint": {
                "type": "tcp",
                "host": "127.0.0.1",
                "port": r.public_port,
                "tls": optionsForClientTLS("localhost", trustRoot=ca),
            },
            "max_retries": 0,
        }
        comp = Component(transports=[spec], realm="obsmesh")
        joined = defer.Deferred()
        comp.on("join", lambda s, d: joined.callback(s))
        comp.start(reactor).addErrback(lambda f: joined.errback(f) if not joined.called else None)
        joined.addTimeout(15, reactor)
        s = await joined
        assert await s.call("obsmesh.consumer.get_data_node") == []
        s.leave()
    finally:
        r.close()


def test_secrets_command_line(tmp_path):
    path = str(tmp_path / "s.json")

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "obsmesh", "secrets", *a, "--file", path],
            cwd=REPO,
            capture_output=True,
            text=True,
        )

    assert run("init").returncode == 0
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert run("init").returncode == 1  # never overwrites by accident
    shown = run("show", "weather").stdout.strip()
    assert shown == mesh_secrets.load(path).secret_for("weather") and len(shown) >= 40
    assert run("add", "viewer", "--role", "consumer").returncode == 0
    assert "viewer\tconsumer" in run("list").stdout
    assert run("revoke", "viewer").returncode == 0
    assert "viewer" not in run("list").stdout


@pytest_twisted.ensureDeferred
async def test_node_with_only_its_own_secret_joins_and_secrets_stay_out_of_logs(router, tmp_path):
    admit("remote")  # `obsmesh secrets add remote` on the mesh's host
    env = router.env()
    env.pop("OBSMESH_SECRETS_FILE")
    env["OBSMESH_SECRET"] = secret("remote")  # what a node on another machine is given
    proc = spawn(["node", "sensors", "--name", "remote"], env, tmp_path / "remote.log")
    s = await connect(router.backend_url)
    try:
        await wait_until(lambda: _listed(s, "remote"), 30, "the remote node")
    finally:
        stop_process(proc, signal.SIGTERM)
        s.leave()
    assert secret("remote") not in (tmp_path / "remote.log").read_text()
    assert secret("remote") not in router.log.read_text()


async def _listed(session, name):
    return name in [n["name"] for n in await session.call("obsmesh.consumer.get_data_node")]
