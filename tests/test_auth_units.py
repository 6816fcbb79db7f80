"""The pure parts of authentication and authorisation: the node rule, the
secrets file's format, and what a change to it revokes."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub import permissions
from hub.principals import lost_credentials
from obsmesh import secrets as mesh_secrets
from obsmesh.cli import DEFAULT_PRINCIPALS, default_principals

P = "obsmesh"
names = st.from_regex(r"[a-z0-9][a-z0-9_\-]{0,12}", fullmatch=True)
actions = st.sampled_from(["call", "register", "publish", "subscribe"])
suffixes = st.sampled_from(["get_data", "live", "live.array", "x.y", ""])


@st.composite
def uris(draw):
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return f"{P}.consumer.{draw(names)}.{draw(suffixes)}"
    if kind == 1:
        return f"{P}.data_node.{draw(st.sampled_from(['add', 'subtract', 'steal']))}"
    if kind == 2:
        return f"{P}.{draw(st.sampled_from(['hub.online', 'auth.authorize', 'consumer.get_data_node']))}"
    if kind == 3:
        return draw(st.sampled_from(["wamp.subscription.lookup", "wamp.session.kill_by_authid"]))
    return draw(st.text(max_size=30))


@pytest.mark.slow  # measured 7.1 s
@settings(max_examples=500, deadline=None)
@given(names, names, uris(), actions)
def test_an_answer_the_router_may_keep_is_the_same_for_every_node(x, y, uri, action):
    """What the router caches under (role, URI, action) it gives to every node."""
    a = permissions.node_permission(P, x, uri, action)
    b = permissions.node_permission(P, y, uri, action)
    if a["cache"] or b["cache"]:
        assert (a["allow"], a["disclose"]) == (b["allow"], b["disclose"])


@pytest.mark.slow  # over 1 s in the unit lane
@settings(max_examples=300, deadline=None)
@given(names, names, suffixes, st.sampled_from(["register", "publish"]))
def test_a_node_registers_and_publishes_under_its_own_name_only(x, y, suffix, action):
    own = permissions.node_permission(P, x, f"{P}.consumer.{x}.{suffix}", action)
    other = permissions.node_permission(P, x, f"{P}.consumer.{y}.{suffix}", action)
    assert own["allow"] and not own["cache"]
    if y != x and not f"{P}.consumer.{y}.{suffix}".startswith(f"{P}.consumer.{x}."):
        assert not other["allow"] and not other["cache"]


def test_the_rule_in_words():
    rule = permissions.node_permission
    assert rule(P, "wx", f"{P}.data_node.add", "call") == {
        "allow": True,
        "disclose": True,
        "cache": True,
    }
    assert rule(P, "wx", f"{P}.consumer.get_data_node", "call")["allow"]
    assert not rule(P, "wx", f"{P}.auth.authorize", "call")["allow"]
    assert not rule(P, "wx", f"{P}.data_node.steal", "register")["allow"]
    assert rule(P, "wx", f"{P}.hub.online", "subscribe")["allow"]
    assert not rule(P, "wx", f"{P}.hub.online", "publish")["allow"]
    assert not rule(P, "Not A Node", f"{P}.consumer.get_data_node", "call")["cache"]
    assert permissions.cached_rule(P, "wx", "u", "call") is permissions.cached_rule(
        P, "wx", "u", "call"
    )
    assert permissions.uncached(permissions.SHARED_ALLOW)["cache"] is False


def test_secrets_file_round_trip_keeps_given_secrets_and_refuses_bad_entries():
    s = mesh_secrets.new({"weather": "node", "hub": "hub"})
    s.add("legacy", "node", "Q5#x4%HCmgTsS!Pj")
    back = mesh_secrets.parse(mesh_secrets.dumps(s))
    assert back.principals == {"weather": "node", "hub": "hub", "legacy": "node"}
    assert back.secret_for("legacy") == "Q5#x4%HCmgTsS!Pj"
    assert back.secret_for("weather") == s.derived("weather") != s.derived("hub")
    assert back.listing() == [
        ("hub", "hub", "derived"),
        ("legacy", "node", "given"),
        ("weather", "node", "derived"),
    ]
    assert "Q5#x4" not in repr(back)
    for authid, role in (("*", "node"), ("Bad Name", "node"), ("x", "admin"), ("", "consumer")):
        with pytest.raises(mesh_secrets.SecretsError):
            mesh_secrets.new({authid: role})
    for secret in ("", " padded", "two\nlines", "x" * 2000):
        with pytest.raises(mesh_secrets.SecretsError):
            s.add("legacy", "node", secret)


def test_an_older_file_with_a_wildcard_admits_no_one_by_it():
    key = base64.b64encode(b"k" * 32).decode()
    text = json.dumps({"version": 1, "key": key, "principals": {"*": "node", "hub": "hub"}})
    s = mesh_secrets.parse(text)
    assert s.role_of("anyone") is None and s.role_of("*") is None
    assert s.role_of("hub") == "hub" and s.ignored == ["*"]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_a_damaged_secrets_file_is_refused_with_a_clear_error(text):
    try:
        mesh_secrets.parse(text)
    except mesh_secrets.SecretsError:
        pass


def test_what_a_change_of_the_file_revokes():
    old = mesh_secrets.new({"a": "node", "b": "node", "c": "consumer", "d": "node"})
    new = mesh_secrets.Secrets(old.key, dict(old.principals))
    new.revoke("a")  # revoked
    new.add("c", "node")  # another role
    new.add("d", "node", "a given secret")  # another secret
    assert lost_credentials(old, new) == {"a", "c", "d"}
    assert lost_credentials(None, new) == set()
    rekeyed = mesh_secrets.new({"b": "node"})
    assert lost_credentials(old, rekeyed) == {"a", "b", "c", "d"}


def test_the_local_principals_are_named_and_the_launcher_admits_its_services(tmp_path):
    assert "*" not in DEFAULT_PRINCIPALS and "*" not in default_principals()
    assert DEFAULT_PRINCIPALS["grafana"] == "consumer"
    from obsmesh import config, layout

    settings = config.mesh(None, state_dir=str(tmp_path))
    found = layout.local(settings).principals()
    assert found["grafana"] == "consumer"
    for node in ("sensors", "weather", "co2", "dataflow", "superdarn", "das2", "canada"):
        assert found[node] == "node"
    assert found.pop("hub") == "hub"  # the hosted hub; every other service reads or is a node
    assert all(role in ("node", "consumer") for role in found.values())
    path = str(tmp_path / "s.json")
    assert sorted(mesh_secrets.admit(path, found)) == sorted(found)
    assert mesh_secrets.admit(path, found) == []  # already there: nothing added
    assert mesh_secrets.load(path).principals == found
