"""Fields with items (a das2 yscan: a spectrum a sample) in the Python client:
2-D arrays from either wire form, a wide frame and a tidy one; then the real
thing: `obsmesh get das2 spectrogram.yscan` against a das2 node."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import numpy as np
import pytest

from consumers.client.errors import ProtocolError
from consumers.client.mesh import Mesh
from consumers.client.result import Assembler
from obsmesh import wire
from tests.harness import PYTHON, REPO, free_port, port_open, spawn, stop_process, wait_for

ROWS = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]])


def reply(t, column) -> dict:
    return {"data": {"s.yscan": column}, "timeline": {"s": {"t": t, "finalized_until": 9.0}}}


def test_rows_as_nested_lists_or_arrays_become_2d_arrays() -> None:
    nested = [[1.0, None, 3.0], [4, 5, 6]]
    for column in (nested, wire.encode(ROWS, wire.ARRAY)):
        a = Assembler("n", ["s.yscan"])
        assert a.add(reply([1.0, 2.0], column)) == 2
        r = a.result()
        got = r["s.yscan"]
        assert got.shape == (2, 3) and got.dtype == np.float64
        np.testing.assert_array_equal(got, ROWS)
        assert r.time("s.yscan").tolist() == [1.0, 2.0]


def test_progressive_chunks_of_rows_join_empty_ones_too() -> None:
    a = Assembler("n", ["s.yscan"])
    a.add(reply([1.0], [[1.0, None, 3.0]]))
    a.add(reply([], []))  # an empty chunk carries a flat empty list
    a.add(reply([2.0], wire.encode(ROWS[1:], wire.ARRAY)))
    np.testing.assert_array_equal(a.result()["s.yscan"], ROWS)


@pytest.mark.parametrize(
    "column", [[[1.0, 2.0], [3.0]], [[1.0, "x"], [2.0, 3.0]], [[True, 1.0], [1.0, 2.0]]]
)
def test_bad_rows_are_a_protocol_error(column) -> None:
    with pytest.raises(ProtocolError, match="rows"):
        Assembler("n", ["s.yscan"]).add(reply([1.0, 2.0], column))


def test_rows_whose_count_matches_no_timeline_are_refused() -> None:
    with pytest.raises(ProtocolError, match="no timeline"):
        Assembler("n", ["s.yscan"]).add(reply([1.0, 2.0, 3.0], [[1.0], [2.0]]))


@pytest.mark.slow  # about 1 s in the unit lane
def test_wide_and_tidy_frames() -> None:
    pytest.importorskip("pandas")
    a = Assembler("n", ["s.yscan"])
    a.add(reply([0.0, 1.0], wire.encode(ROWS, wire.ARRAY)))
    r = a.result()
    wide = r.frame()
    assert list(wide.columns) == ["s.yscan[0]", "s.yscan[1]", "s.yscan[2]"]
    assert wide["s.yscan[2]"].tolist() == [3.0, 6.0]
    tidy = r.tidy("s.yscan", y=[10.0, 100.0, 1000.0])
    assert list(tidy.columns) == ["time", "item", "y", "value"]
    assert len(tidy) == 6 and tidy["item"].tolist() == [0, 1, 2, 0, 1, 2]
    assert tidy["y"].tolist()[:3] == [10.0, 100.0, 1000.0]
    np.testing.assert_array_equal(tidy["value"].to_numpy(), ROWS.reshape(-1))
    assert str(tidy["time"].iloc[3]) == "1970-01-01 00:00:01+00:00"
    with pytest.raises(ValueError, match="2 y values for 3 items"):
        r.tidy("s.yscan", y=[1.0, 2.0])


# ---------------------------------------------------------------- against a node

NODE = "das2yscan"


@pytest.fixture(scope="module")
def das2_node(router, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("das2y")
    port = free_port()
    log = tmp / "node.log"
    proc = spawn(
        [
            "node",
            "das2",
            "--name",
            NODE,
            "--http",
            f"127.0.0.1:{port}",
            "--cache",
            "off",
            "--live-poll",
            "3600",
        ],
        router.env(),
        log,
    )
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 60, "the das2 node")
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        stop_process(proc)


START, END = "2020-03-01T06:00:00Z", "2020-03-01T06:02:00Z"


def run_get(router, *args: str) -> subprocess.CompletedProcess:
    """`obsmesh get NODE ...` as its own process (`python -m obsmesh` is `obsmesh`)."""
    return subprocess.run(
        [PYTHON, "-m", "obsmesh", "get", NODE, *args],
        env=router.env(),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_obsmesh_get_spectrogram_yscan(das2_node, router, tmp_path) -> None:
    """The command the issue names, as a user runs it: CSV with a column per
    channel, JSON with a row per sample; and the library's 2-D array."""
    with Mesh(router.backend_url, router.realm, timeout=60) as mesh:
        wait_for(lambda: NODE in [n["name"] for n in mesh.nodes()], 60, "the das2 node listed")
        fields = mesh.fields(NODE)
        r = mesh.get(NODE, "spectrogram.yscan", START, END)
    spec = r["spectrogram.yscan"]
    assert spec.shape == (120, 48) and np.isfinite(spec).all()
    assert np.all(np.diff(r.time("spectrogram.yscan")) == 1.0)
    out = run_get(router, "spectrogram.yscan", "--start", START, "--end", END)
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0][:3] == ["time", "timeline", "spectrogram.yscan[0]"]
    assert len(rows[0]) == 2 + 48 and len(rows) == 1 + 120
    np.testing.assert_allclose([float(v) for v in rows[1][2:]], spec[0], rtol=1e-12)
    path = tmp_path / "spec.json"
    out = run_get(router, "spectrogram.yscan", "--start", START, "--end", END, "-o", str(path))
    assert out.returncode == 0, out.stderr
    doc = json.loads(path.read_text())
    data = doc["timelines"]["spectrogram"]["data"]["spectrogram.yscan"]
    assert len(data) == 120 and len(data[0]) == 48
    pytest.importorskip("pandas")
    tags = fields["spectrogram.yscan"]["y_tags"]
    tidy = r.tidy("spectrogram.yscan", y=tags)
    assert len(tidy) == 120 * 48
