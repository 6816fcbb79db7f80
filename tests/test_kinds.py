"""Node kinds as declarations (obsmesh/kinds.py), their settings classes
(obsmesh/settings.py) and the layout built from them (obsmesh/layout.py):
pure checks, the command line they generate, and the documented tables."""

from __future__ import annotations

import argparse
import importlib.metadata
import pathlib
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obsmesh import cli, config, kinds, launcher, layout
from obsmesh.settings import POSITIVE, Section, Setting
from tests.harness import REPO

REGISTRY = kinds.registry()
OWN = [e.kind for e in REGISTRY.entries.values() if e.distribution.startswith("obsmesh ")]
PYPROJECT = (REPO / "pyproject.toml").read_text()


def test_every_kind_of_the_pyproject_is_registered_from_its_own_package():
    lines = re.findall(r'^(\w+) = "(nodes\.(\w+)\.kind:KIND)"$', PYPROJECT, re.M)
    assert lines and {name for name, _, _ in lines} == {k.name for k in OWN}
    for name, target, package in lines:
        entry = REGISTRY.entries[name]
        assert name == package and entry.entry_point == target
        assert pathlib.Path(entry.location) == REPO / "nodes" / name
    assert not REGISTRY.problems, REGISTRY.problems


def test_obsmesh_names_no_kind():
    """The core loops over the registry: no kind's name appears in obsmesh/ code."""
    names = {k.name for k in REGISTRY.kinds()} | {
        s.name for k in REGISTRY.kinds() for s in k.simulators
    }
    for path in sorted((REPO / "obsmesh").rglob("*.py")):
        code = re.sub(r'"""[\s\S]*?"""|#[^\n]*', "", path.read_text())  # docs may give examples
        for name in names:
            assert not re.search(rf"['\"]{name}['\"]|\bnodes\.{name}\b", code), (path, name)
    # the dashboard knows views, not kinds: each kind names the view it lights up
    js = (REPO / "consumers" / "web" / "app" / "kinds.js").read_text()
    views = set(re.findall(r'\{ id: "(\w+)", label: "[^"]*" \}', js))
    assert views and "kinds:" not in js
    assert {k.view for k in REGISTRY.kinds() if k.view} <= views


# -- the registry refuses what it cannot use --------------------------------------------
class Good(Section):
    section = "good"
    interval = Setting(1.0, "seconds", flag=True, check=POSITIVE)


GOOD = kinds.NodeKind("good", "a good kind", Good, "tests.test_kinds:build_good")
MISNAMED = kinds.NodeKind("other", "declared under another name", Good, "tests.test_kinds:x")
NOT_A_KIND = {"name": "dict"}
BAD_TARGET = kinds.NodeKind("badtarget", "build is no target", Good, "no colon here")
CLASH = kinds.NodeKind(
    "clash", "a simulator name taken", Good, "m:f", simulators=(kinds.Simulator("radar", "m", "h"),)
)


def build_good(name, mesh, options):
    return (name, options)


def _ep(name: str, attr: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name, f"tests.test_kinds:{attr}", kinds.GROUP)


def test_declarations_that_cannot_work_are_refused_with_the_reason():
    eps = [
        *importlib.metadata.entry_points(group=kinds.GROUP),
        _ep("good", "GOOD"),
        _ep("misnamed", "MISNAMED"),
        _ep("dict", "NOT_A_KIND"),
        _ep("missing", "NO_SUCH_ATTRIBUTE"),
        _ep("badtarget", "BAD_TARGET"),
        _ep("clash", "CLASH"),
    ]
    reg = kinds.from_entry_points(eps)
    assert reg.get("good") is GOOD and reg.get("good").node_factory()("g", {}, {}) == ("g", {})
    problems = "\n".join(reg.problems)
    assert "declares the name 'other' under the entry point 'misnamed'" in problems
    assert "is a dict, not an obsmesh.kinds.NodeKind" in problems
    assert "cannot load it: AttributeError" in problems
    assert "build 'no colon here' is not a 'module:function' string" in problems
    assert "simulator 'radar' is declared already by the kind superdarn" in problems
    assert {"misnamed", "dict", "missing", "badtarget", "clash"}.isdisjoint(reg.entries)
    assert set(REGISTRY.entries) <= set(reg.entries)


# -- settings: one class, every form derived ---------------------------------------------
def _parser(kind: kinds.NodeKind) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    kind.settings.add_arguments(p)
    return p


@pytest.mark.parametrize("kind", REGISTRY.kinds(), ids=lambda k: k.name)
def test_settings_class_gives_the_section_the_variables_and_the_flags(kind, tmp_path):
    cls = kind.settings
    assert cls.section == kind.name
    parser = _parser(kind)
    flags = {a.dest: a for a in parser._actions if a.option_strings}
    for key, s in cls.settings().items():
        assert (key in flags) == bool(s.option), key
        if s.option:
            assert s.option in flags[key].option_strings
            assert cls.env_name(key) in flags[key].help
    # a key the class does not declare is refused, in the file and as an override
    conf = tmp_path / "c.toml"
    conf.write_text(f"[{kind.name}]\nno_such_key = 1\n")
    with pytest.raises(config.ConfigError, match="no_such_key"):
        cls.resolve(str(conf), environ={}, complete=False)
    with pytest.raises(config.ConfigError, match="no_such_key"):
        cls.resolve(None, environ={}, overrides={"no_such_key": 1}, complete=False)
    # each variable reaches its key (numbers as numbers), and the command line beats it
    for key, s in cls.settings().items():
        if isinstance(s.default, bool) or s.choices or not isinstance(s.default, int | float):
            continue
        value = type(s.default)(s.default * 2 + 1)
        got = cls.resolve(None, environ={cls.env_name(key): str(value)}, complete=False)
        assert got[key] == value and type(got[key]) is type(s.default), key
        if s.option:
            args = parser.parse_args([s.option, str(value + 1)])
            got = cls.resolve(
                None, args=args, environ={cls.env_name(key): str(value)}, complete=False
            )
            assert got[key] == value + 1, key


@pytest.mark.parametrize("kind", REGISTRY.kinds(), ids=lambda k: k.name)
def test_settings_rules_are_enforced(kind):
    cls = kind.settings
    for key, s in cls.settings().items():
        if s.check is None and s.choices is None:
            continue
        bad = "nowhere" if s.choices else "-1000000000"
        with pytest.raises(config.ConfigError, match=rf"\[{kind.name}\] {key} must be"):
            cls.resolve(None, environ={cls.env_name(key): bad}, complete=False)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from([(k, key) for k in REGISTRY.kinds() for key in k.settings.settings()]),
    st.text(max_size=40),
)
def test_any_variable_value_is_taken_or_refused_with_a_clear_error(kind_key, text):
    kind, key = kind_key
    cls = kind.settings
    if "\0" in text:
        return  # no environment variable can hold a NUL
    try:
        cls.resolve(None, environ={cls.env_name(key): text}, mesh={"state_dir": "/s"})
    except config.ConfigError as exc:
        assert str(exc)


def test_settings_tables_in_the_docs_are_the_generated_ones():
    """nodes/SETTINGS.md is `obsmesh kinds --settings` for obsmesh's own kinds."""
    doc = (REPO / "nodes" / "SETTINGS.md").read_text()
    for kind in OWN:
        assert kind.settings.table() in doc, (
            f"nodes/SETTINGS.md is out of date for {kind.name}: regenerate it with "
            f"`obsmesh kinds --settings {' '.join(k.name for k in OWN)}`"
        )


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


@pytest.mark.slow  # measured 5 s
@pytest.mark.router  # starts its own processes
def test_every_kind_is_a_command_and_says_where_it_comes_from():
    parser = cli.build_parser()
    simulate = _subcommands(_subcommands(parser)["simulate"])
    for kind in REGISTRY.kinds():
        args = parser.parse_args(["node", kind.name, "--name", f"x-{kind.name}"])
        assert args.kind == kind.name and args.name == f"x-{kind.name}"
        assert {s.name for s in kind.simulators} <= set(simulate)
    done = subprocess.run(
        [sys.executable, "-m", "obsmesh", "kinds"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for name, entry in REGISTRY.entries.items():
        assert f"from {entry.source}" in done.stdout, name


@pytest.mark.router  # starts its own processes
def test_a_bad_setting_stops_the_node_with_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "obsmesh", "node", "co2", "--silence", "-3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "OBSMESH_STATE_DIR": str(tmp_path)},
    )
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "obsmesh: [co2] silence must be a positive number, got -3.0"
    )


# -- the layout --------------------------------------------------------------------
def _layout(**overrides) -> layout.Layout:
    return layout.local(config.mesh(environ={}, state_dir="/srv/mesh", **overrides), path="")


def test_port_base_moves_every_port_in_the_documented_order():
    lay = _layout(port_base=21000)
    assert lay.public_url == "ws://127.0.0.1:21000/ws" and lay.router_url == "rs://127.0.0.1:21001"
    ports = [x.port for _, x in lay.listens()]
    assert sorted(ports) == list(range(21000, 21000 + len(ports)))  # no gap, no clash
    order = []  # the documented order: router, bridge, nodes' ports, then simulators'
    for role in ("router", "bridge", "node", "simulator"):
        order += [x.port for s, x in lay.listens() if s.role == role]
    assert order == sorted(order)
    assert lay.service("grafana").listens[0].port == 21002
    # the kinds shipped in nodes/: co2, das2, then the Canadian aggregator, then the radars
    by_kind = {k: list(v.values()) for k, v in lay.ports_by_kind.items() if v}
    assert by_kind["co2"] == [21003] and by_kind["das2"] == [21004]
    assert by_kind["canada"] == [21005] and by_kind["superdarn"] == [21006, 21007, 21008]
    # without a base, the defaults (and a kind's own port setting)
    plain = _layout()
    assert plain.public_url == "ws://127.0.0.1:8080/ws"
    assert plain.ports_by_kind["co2"] == {"http": 8090}
    assert plain.ports_by_kind["superdarn"] == {
        "radar-bks": 14011,
        "radar-fhe": 14012,
        "radar-kod": 14013,
    }
    # a subset of kinds keeps the same numbers
    only = layout.local(config.mesh(environ={}, port_base=21000), ["das2"], path="")
    assert only.service("das2").listens[0].port == 21004
    assert {s.role for s in only.services} == {"router", "bridge", "node"}


def test_the_demo_radar_sites_differ_between_the_tcp_and_the_zeromq_feeds():
    lay = _layout(port_base=21000)
    tcp = {
        s.argv[s.argv.index("--code") + 1]
        for s in lay.services
        if s.argv[:2] == ("simulate", "radar")
    }
    (canada,) = [s for s in lay.services if s.argv[:2] == ("simulate", "canada")]
    zmq = set(canada.argv[canada.argv.index("--sites") + 1].split(","))
    assert zmq == {"sas", "pgr", "inv", "cly", "rkn"} and len(tcp) == 3
    assert not tcp & zmq
    from nodes.radar.radars import radar

    assert all(radar(code) is not None for code in tcp)  # real sites


def test_layout_principals_and_bad_selections():
    lay = _layout()
    p = lay.principals()
    assert p["hub"] == "hub" and p["grafana"] == "consumer" and p["launcher"] == "consumer"
    assert {n.node for n in lay.nodes()} == {k for k, role in p.items() if role == "node"}
    with pytest.raises(config.ConfigError, match="no demo recipe for kind"):
        layout.local(config.mesh(environ={}), ["nosuchkind"], path="")
    with pytest.raises(config.ConfigError, match="port_base"):
        config.mesh(environ={"OBSMESH_PORT_BASE": "80"})
    assert layout.Layout.from_json(lay.to_json()) == lay


# -- the launcher's policies (pure) ----------------------------------------------------
def test_restart_delay_grows_then_starts_over_after_a_good_run():
    svc = layout.Service("x", ("node", "x"), "node")
    r = launcher.Running(svc)
    delays = []
    for _ in range(8):  # crashes a second after each start
        r.started = 100.0
        delays.append(r.exited(101.0, 1))
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    r.started = 100.0
    assert r.exited(100.0 + launcher.STABLE_AFTER, 1) == 1.0  # it had run well: start over
    assert r.restarts == 9 and "exited with 1" in r.last_exit
