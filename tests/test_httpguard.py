"""The bounded HTTP door's pure parts (obsmesh/httpguard.py): the connection
table's caps and who is pushed out, the limits, the client key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obsmesh.httpguard import ConnectionTable, HttpLimits, client_key


class Addr:
    def __init__(self, host: str) -> None:
        self.host = host


ops = st.lists(
    st.tuples(st.sampled_from(["connect", "head_in", "done", "close"]), st.integers(0, 3)),
    max_size=200,
)


@given(ops, st.integers(1, 6), st.integers(1, 4))
def test_caps_hold_and_only_waiting_connections_are_pushed_out(steps, total, per_client):
    table = ConnectionTable(total, per_client)
    alive: dict[int, tuple[str, bool]] = {}  # conn -> (client, waiting)
    next_id = 0
    for op, k in steps:
        client = f"10.0.0.{k}"
        if op == "connect":
            fits, evict = table.admit(client)
            for victim in evict:
                assert alive[victim][1], "a busy connection was pushed out"
                table.remove(victim)
                del alive[victim]
            if fits:
                table.add(next_id, client)
                alive[next_id] = (client, True)
                next_id += 1
            else:  # refused: only when no waiting connection could make room
                mine = sorted(c for c, (cl, w) in alive.items() if w and cl == client)
                per_full = sum(cl == client for cl, _ in alive.values()) >= per_client
                if per_full and mine:
                    others = [c for c, (_, w) in alive.items() if w and c != mine[0]]
                    assert len(alive) - 1 >= total and not others
                else:
                    others = [c for c, (_, w) in alive.items() if w]
                    assert per_full or (len(alive) >= total and not others)
        elif alive:
            conn = sorted(alive)[k % len(alive)]
            if op == "close":
                table.remove(conn)
                del alive[conn]
            else:
                waiting = op == "done"  # a head accepted: busy; an answer given: waiting again
                table.set_waiting(conn, waiting)
                alive[conn] = (alive[conn][0], waiting)
        assert len(table) == len(alive) <= total
        for client in {cl for cl, _ in alive.values()}:
            assert table.per_client[client] == sum(cl == client for cl, _ in alive.values())
            assert table.per_client[client] <= per_client


def test_the_oldest_waiting_connection_makes_room():
    table = ConnectionTable(2, 2)
    table.add("a", "x")
    table.add("b", "y")
    table.set_waiting("a", False)  # "a" sent its head: it is never pushed out
    assert table.admit("z") == (True, ["b"])
    table.set_waiting("b", False)
    assert table.admit("z") == (False, [])


def test_a_burst_never_pushes_itself_out():
    table = ConnectionTable(2, 2, min_age=1.0)
    table.add("a", "x", now=10.0)
    table.add("b", "y", now=10.5)
    assert table.admit("z", now=10.6) == (False, []) and not table.has_room(10.6)
    assert table.admit("z", now=11.2) == (True, ["a"]) and table.has_room(11.2)


def test_limits_are_checked():
    HttpLimits()
    for bad in ({"max_connections": 0}, {"header_timeout": 0}, {"drain_bytes": -1}):
        with pytest.raises(ValueError):
            HttpLimits(**bad)


def test_client_key_folds_ipv4_mapped_addresses():
    assert client_key(Addr("::ffff:10.1.2.3")) == "10.1.2.3"
    assert client_key(Addr("2001:db8::1")) == "2001:db8::1"
    assert client_key(Addr("not an address")) == "not an address"
