"""Sites and the router's layout: the rendered configuration (pure), and a
site's naming rule through a real router. The linked sites themselves run in
the multi-host lane (tests/test_hosts.py)."""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from hypothesis import given
from hypothesis import strategies as st

from obsmesh import config, router_layout, sites
from obsmesh.router import render_config
from tests.harness import Router, backend_credentials, connect, free_port, wait_until

KEY = "ab" * 32


def test_peers_are_parsed_and_checked():
    p = sites.parse_peer(f"south wss://10.0.0.2:8443/ {KEY}")
    assert (p.name, p.host, p.port) == ("south", "10.0.0.2", 8443)
    for bad in (
        "south wss://10.0.0.2:8443/",  # no key
        f"South wss://h:1/ {KEY}",  # not a site name
        f"south https://h:1/ {KEY}",
        f"south wss://h/ {KEY}",  # no port
        f"south ws://10.0.0.2:8443/ {KEY}",  # plain beyond loopback
        "south wss://h:1/ 1234",
    ):
        with pytest.raises(sites.SiteError):
            sites.parse_peer(bad)
    assert sites.parse_peer(f"b ws://127.0.0.1:9/ {KEY}").url.startswith("ws://")


@given(st.text(max_size=80))
def test_any_peer_text_is_parsed_or_refused_clearly(text):
    try:
        sites.parse_peer(text)
    except sites.SiteError as exc:
        assert str(exc)


def test_a_site_is_resolved_from_its_section(tmp_path, monkeypatch):
    conf = tmp_path / "o.toml"
    conf.write_text(
        f'[site]\nname = "north"\nlink_port = 8443\npeers = ["south wss://h:1/ {KEY}"]\n'
    )
    site = sites.resolve(config.settings(sites.SITE_DEFAULTS, "site", str(conf), environ={}))
    assert site.name == "north" and site.peers[0].name == "south"
    assert sites.resolve(config.settings(sites.SITE_DEFAULTS, "site", None, environ={})) is None
    for section in (
        {"name": "north", "peers": [f"north wss://h:1/ {KEY}"], "link_port": 1},  # itself
        {"name": "north", "peers": [f"south wss://h:1/ {KEY}"] * 2, "link_port": 1},
        {"name": "north", "peers": [f"south wss://h:1/ {KEY}"]},  # no link port
        {"name": "", "peers": [f"south wss://h:1/ {KEY}"]},
        {"name": "No-Way"},
    ):
        with pytest.raises(sites.SiteError):
            sites.resolve({**sites.SITE_DEFAULTS, **section})
    with pytest.raises(config.ConfigError):  # unknown keys in the section are refused
        conf.write_text('[site]\nname = "north"\nlinks = 3\n')
        config.settings(sites.SITE_DEFAULTS, "site", str(conf), environ={})


def _linked(host="127.0.0.1", tls=None, tls_ca=None):
    site = sites.Site("north", 8443, (sites.parse_peer(f"south ws://127.0.0.1:9443/ {KEY}"),))
    return render_config(
        host=host,
        secrets_file="/nonexistent/secrets.json",
        site=site,
        tls_key=tls and "k.pem",
        tls_cert=tls and "c.pem",
        tls_ca=tls_ca,
        prefix="p",
    )


def test_a_linked_site_renders_crossbar_realm_links():
    cfg = _linked()
    worker = cfg["workers"][0]
    realm = worker["realms"][0]
    (link,) = realm["rlinks"]
    assert link["forward_local_invocations"] and link["forward_local_events"]
    assert not link["forward_remote_invocations"] and not link["forward_remote_events"]
    assert link["transport"]["url"] == "ws://127.0.0.1:9443/"
    role = next(r for r in realm["roles"] if r["name"] == "rlink")
    (perm,) = role["permissions"]
    assert perm["uri"] == "p." and perm["allow"] == {
        "call": False,
        "register": True,
        "publish": False,
        "subscribe": True,
    }
    links = next(t for t in worker["transports"] if t["id"] == "links")
    principals = links["auth"]["cryptosign"]["principals"]
    assert list(links["auth"]) == ["cryptosign"]
    assert (
        principals["south"]["authorized_keys"] == [KEY] and principals["south"]["role"] == "rlink"
    )
    for r in realm["roles"]:
        for p in r.get("permissions", []):
            assert p["disclose"] == {"caller": True, "publisher": True}
    hub = next(c for c in worker["components"] if c["id"] == "hub")
    assert hub["extra"]["site"] == "north" and hub["extra"]["peers"] == ["south"]


def test_links_beyond_loopback_need_tls():
    with pytest.raises(sites.SiteError, match="TLS"):
        _linked(host="10.1.2.3")
    cfg = _linked(host="10.1.2.3", tls=True, tls_ca="ca.pem")
    links = next(t for t in cfg["workers"][0]["transports"] if t["id"] == "links")
    assert links["endpoint"]["tls"] == {"key": "k.pem", "certificate": "c.pem"}


def test_proxy_workers_take_the_public_transport():
    cfg = render_config(secrets_file="/x/secrets.json", consumer_auth=True)
    router_layout.apply_proxies(cfg, 2, "obsmesh", KEY)
    router = cfg["workers"][0]
    assert "public" not in [t["id"] for t in router["transports"]]
    sock = next(t for t in router["transports"] if t["id"] == "proxies")
    assert sock["endpoint"]["type"] == "unix"
    assert sock["auth"]["cryptosign-proxy"]["principals"]["obsmesh_router"]["authorized_keys"] == [
        KEY
    ]
    proxies = cfg["workers"][1:]
    assert [p["type"] for p in proxies] == ["proxy", "proxy"]
    for p in proxies:
        (web,) = p["transports"]
        assert web["endpoint"]["shared"] is True and web["endpoint"]["port"] == 8080
        cra = web["paths"]["ws"]["auth"]["wampcra"]
        assert cra["authenticator-realm"] == "obsmesh" and cra["authenticator-role"] == "hub"
        assert set(p["routes"]["obsmesh"]) >= {"consumer", "node", "hub"}
    with pytest.raises(ValueError):
        router_layout.apply_proxies(render_config(secrets_file="/x"), 65, "obsmesh", KEY)


@pytest.mark.slow  # measured 14.8 s
@pytest.mark.router  # starts its own processes
@pytest_twisted.ensureDeferred
async def test_a_site_admits_only_its_own_names():
    r = Router(site=sites.Site("north", free_port(), ()))
    r.start()
    try:
        # the authenticator refuses a node principal without the site's prefix
        with pytest.raises(RuntimeError):
            await connect(r.backend_url, authentication=backend_credentials("sensors"))
        await wait_until(
            lambda: "refused node 'sensors': not of site north" in r.log.read_text(), 10, "the log"
        )
        s = await connect(r.backend_url, authentication=backend_credentials("north-a"))
        try:
            # the hub lists none either (a dev router without secrets has no authenticator)
            with pytest.raises(ApplicationError) as refused:
                await s.call("obsmesh.data_node.add", "south-a", "", s._session_id)
            assert "north-" in str(refused.value.args)
            hub = await connect(r.backend_url, authentication=backend_credentials("hub"))
            assert await hub.call("obsmesh.site.north.get_data_node") == []
            hub.leave()
        finally:
            s.leave()
    finally:
        r.close()
