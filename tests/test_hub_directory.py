"""The hub's directory as a state machine."""

from hub.directory import Directory


def test_add_is_idempotent_for_the_holder_and_refused_for_others():
    d = Directory()
    assert d.add("a", "first", 1, {"kind": "x"}) == (True, True)
    assert d.add("a", "first", 1, {"kind": "x"}) == (True, False)  # re-announce: no change
    assert d.add("a", "second", 1, {}) == (True, True)  # holder updates
    assert d.add("a", "thief", 2, {}) == (False, False)
    assert d.listing() == [{"name": "a", "description": "second"}]


def test_subtract_only_by_the_holder():
    d = Directory()
    d.add("a", "", 1, {})
    assert d.subtract("a", 2) is None
    assert d.subtract("a", 1).name == "a"
    assert d.subtract("a", 1) is None
    assert len(d) == 0


def test_a_session_leaving_takes_all_its_nodes_and_frees_names():
    d = Directory()
    d.add("a", "", 1, {})
    d.add("b", "", 1, {})
    d.add("c", "", 2, {})
    assert sorted(e.name for e in d.drop_session(1)) == ["a", "b"]
    assert [n["name"] for n in d.listing()] == ["c"]
    assert d.add("a", "", 3, {}) == (True, True)


def test_info_cannot_override_name_or_description():
    d = Directory()
    d.add("a", "real", 1, {"name": "fake", "description": "fake", "kind": "k"})
    assert d.listing() == [{"name": "a", "description": "real", "kind": "k"}]
