"""CO2 endpoint over real HTTP on loopback: the server runs in the test reactor,
clients (http.client, raw sockets, the simulator) run in threads."""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads
from twisted.logger import formatEvent, globalLogPublisher

from nodes.co2.admin import add_unit, add_update, revoke_unit
from nodes.co2.pings import unescape_tsv
from nodes.co2.server import Co2Config, Co2Server
from nodes.co2.simulator import SimUnit, unit_id_for
from tests.harness import wait_until

UNIT = "co2unit-30aea42a50bc"
OTHER = "co2unit-0000000000aa"
READINGS = "data/readings/readings-0000.tsv"
CAP = 64 * 1024


class Harness:
    def __init__(self, server: Co2Server, port: int, root: Path) -> None:
        self.server, self.port, self.root = server, port, root
        self.rows: list[tuple[str, list]] = []
        self.pings: list = []
        self.tokens: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def unit_file(self, unit: str, rel: str) -> Path:
        return self.root / "units" / unit / rel

    def delivered(self, unit: str) -> list:
        return [r for u, rows in self.rows if u == unit for r in rows]

    async def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        token: str | None = None,
        headers: dict | None = None,
    ):
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["X-Unit-Token"] = token
        return await threads.deferToThread(_http, self.port, method, path, body, hdrs)

    async def raw(self, data: bytes) -> tuple[int, bytes]:
        return await threads.deferToThread(_raw, self.port, data)


def _http(port: int, method: str, path: str, body: bytes | None, headers: dict):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        ctype = resp.getheader("Content-Type", "")
        return resp.status, (json.loads(data) if "json" in ctype else data)
    finally:
        conn.close()


def _raw(port: int, data: bytes) -> tuple[int, bytes]:
    """Send raw bytes, read the answer until the server closes; (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0
    return status, answer.partition(b"\r\n\r\n")[2]


def put_raw(path: str, body: bytes, token: str, extra: str = "") -> bytes:
    return (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nX-Unit-Token: {token}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode() + body


async def start_server(root: Path, **config) -> tuple[Co2Server, Harness]:
    harness = Harness(None, 0, root)  # type: ignore[arg-type]
    server = Co2Server(
        Co2Config(root=root, **{"max_body_bytes": CAP, **config}),
        on_rows=lambda u, rows: harness.rows.append((u, rows)),
        on_ping=lambda u, p: harness.pings.append(p),
    )
    await server.start()
    harness.server, harness.port = server, server.listen(0).getHost().port
    return server, harness


@pytest_twisted.async_yield_fixture
async def co2(tmp_path):
    root = tmp_path / "root"
    tokens = {UNIT: add_unit(root, UNIT), OTHER: add_unit(root, OTHER)}
    server, harness = await start_server(root)
    harness.tokens = tokens
    yield harness
    await server.stop()


def tree(root: Path) -> dict[str, int]:
    """Every file under the data root with its size, except the database."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if not f.startswith("co2.sqlite3"):
                out[str(p.relative_to(root))] = p.lstat().st_size
    return out


def readings_bytes(n: int, unit: str = UNIT, start: int = 1_600_000_000) -> bytes:
    lines = []
    for i in range(n):
        t = start + 300 * i
        d = __import__("time").gmtime(t)
        co2 = "\t".join(str(400 + (i * 7 + k) % 500) for k in range(10))
        lines.append(
            f"{unit}\tnick\t{d.tm_year:04}-{d.tm_mon:02}-{d.tm_mday:02}\t"
            f"{d.tm_hour:02}:{d.tm_min:02}:{d.tm_sec:02}\t{i % 30}.25\t{i % 3}\t{co2}\n"
        )
    return "".join(lines).encode()


def push_path(unit: str = UNIT, rel: str = READINGS, offset: int = 0) -> str:
    return f"/ou/{unit}/push-sequential/{rel}?offset={offset}"


# -- pings and status pages ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ping_is_stored_escaped_in_tsv_and_sqlite_and_reported(co2):
    token = co2.tokens[UNIT]
    status, body = await co2.call(
        "POST",
        f"/ou/{UNIT}/alive?site_code=vj%5Cre+%C3%A9&rssi_raw=8&rssi_dbm=-97&ber_raw=99",
        token=token,
    )
    assert (status, body) == (200, {})
    status, _ = await co2.call("POST", f"/ou/{UNIT}/alive", token=token)  # old firmware: no values
    assert status == 200
    lines = (co2.root / "pings" / "pings-0000.tsv").read_text().splitlines()
    assert len(lines) == 2
    cells = lines[0].split("\t")
    assert cells[1:] == [UNIT, "vj\\\\re é", "8", "-97", "99"]
    assert unescape_tsv(cells[2]) == "vj\\re é"
    assert lines[1].split("\t")[2:] == ["None", "None", "None", "None"]
    assert [p.rssi_dbm for p in co2.pings] == [-97, None]
    status, recent = await co2.call("GET", "/status/alive/recent?limit=1")
    assert status == 200 and len(recent) == 1 and recent[0]["unit_id"] == UNIT
    assert recent[0]["rssi_dbm"] is None
    status, summary = await co2.call("GET", "/status/alive/summary")
    assert summary[0]["unit_id"] == UNIT and summary[0]["pings"] == 2
    assert summary[0]["last"]["site_code"] is None


@pytest_twisted.ensureDeferred
async def test_junk_ping_values_are_refused_and_nothing_stored(co2):
    token = co2.tokens[UNIT]
    for query in [
        "rssi_raw=abc",
        "rssi_dbm=-97&rssi_dbm=-90",
        "ber_raw=%ff",
        "site_code=a%0Ab",
        "rssi_dbm=99999999999",
        "site_code=" + "x" * 100,
    ]:
        status, body = await co2.call("POST", f"/ou/{UNIT}/alive?{query}", token=token)
        assert status == 400 and body["error"] == "bad_query", query
    assert not (co2.root / "pings" / "pings-0000.tsv").exists()
    _, recent = await co2.call("GET", "/status/alive/recent")
    assert recent == [] and co2.pings == []


# -- push-sequential ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_chunks_resume_and_replays_give_a_byte_identical_file(co2):
    token, source = co2.tokens[UNIT], readings_bytes(200)
    pos, acks = 0, []
    while pos < len(source):
        chunk = source[pos : pos + 4096]
        status, body = await co2.call("PUT", push_path(offset=pos), chunk, token)
        assert status == 200
        acks.append(body["ack_file"])
        before = co2.unit_file(UNIT, READINGS).read_bytes()
        # the same chunk replayed changes nothing and acknowledges the stored size
        status, again = await co2.call("PUT", push_path(offset=pos), chunk, token)
        assert status == 200 and again == body
        assert co2.unit_file(UNIT, READINGS).read_bytes() == before
        pos += len(chunk)
    assert acks[-1] == ["readings-0000.tsv", len(source), len(source)]
    assert co2.unit_file(UNIT, READINGS).read_bytes() == source
    # a unit that lost its state starts again at 0 and is told where the server is
    status, body = await co2.call("PUT", push_path(offset=0), source[:4096], token)
    assert status == 200 and body["ack_file"] == ["readings-0000.tsv", len(source), len(source)]
    delivered = co2.delivered(UNIT)
    assert len(delivered) == 200 and len({r.t for r in delivered}) == 200
    counters = co2.server.counters
    assert counters["push_duplicate"] == math.ceil(len(source) / 4096) + 1


@pytest_twisted.ensureDeferred
async def test_interrupted_upload_resumed_from_offset_is_byte_identical(co2):
    token, source = co2.tokens[UNIT], readings_bytes(40)
    half = len(source) // 2
    # body cut half way, connection dropped: nothing of it is stored
    await threads.deferToThread(
        _send_and_drop, co2.port, put_raw(push_path(offset=0), source[:half], token)[:-100]
    )
    assert not co2.unit_file(UNIT, READINGS).exists()
    status, _ = await co2.call("PUT", push_path(offset=0), source[:half], token)
    assert status == 200
    # a chunk straddling what is stored (resume from an older offset) appends the rest
    status, body = await co2.call("PUT", push_path(offset=half - 50), source[half - 50 :], token)
    assert status == 200 and body["ack_file"][1] == len(source)
    assert co2.unit_file(UNIT, READINGS).read_bytes() == source
    assert len(co2.delivered(UNIT)) == 40


def _send_and_drop(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)


@pytest_twisted.ensureDeferred
async def test_offset_past_end_is_416_with_size_and_conflict_is_409(co2):
    token = co2.tokens[UNIT]
    await co2.call("PUT", push_path(offset=0), b"abcdef", token)
    status, body = await co2.call("PUT", push_path(offset=7), b"x", token)
    assert status == 416 and body["ack_file"] == ["readings-0000.tsv", 6, 6]
    status, body = await co2.call("PUT", push_path(offset=2), b"cX", token)
    assert status == 409 and body["error"] == "conflict"
    status, body = await co2.call(
        "PUT", push_path(rel="data/readings/readings-0001.tsv", offset=3), b"x", token
    )
    assert status == 416 and body["ack_file"] == ["readings-0001.tsv", 0, 0]
    assert co2.unit_file(UNIT, READINGS).read_bytes() == b"abcdef"
    assert not co2.unit_file(UNIT, "data/readings/readings-0001.tsv").exists()


@pytest_twisted.ensureDeferred
async def test_bad_offsets_are_400_and_write_nothing(co2):
    token = co2.tokens[UNIT]
    before = tree(co2.root)
    for q in [
        "offset=-1",
        "offset=abc",
        "",
        "offset=1e3",
        "offset=%2B1",
        "offset=0&offset=0",
        "offset=99999999999999999999",
        "offset=0x0",
    ]:
        status, body = await co2.call(
            "PUT", f"/ou/{UNIT}/push-sequential/{READINGS}?{q}", b"data", token
        )
        assert status == 400, q
    assert tree(co2.root) == before


@pytest_twisted.ensureDeferred
async def test_concurrent_pushes_of_one_chunk_append_once(co2):
    token, source = co2.tokens[UNIT], readings_bytes(30)
    results = await threads.deferToThread(
        _parallel_puts, co2.port, push_path(offset=0), source, token, 8
    )
    assert sorted(results) == [200] * 8
    assert co2.unit_file(UNIT, READINGS).read_bytes() == source
    assert co2.server.counters["push_append"] == 1
    assert co2.server.counters["push_duplicate"] == 7
    assert len(co2.delivered(UNIT)) == 30


def _parallel_puts(port, path, body, token, n):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n) as pool:
        futs = [
            pool.submit(_http, port, "PUT", path, body, {"X-Unit-Token": token}) for _ in range(n)
        ]
        return [f.result()[0] for f in futs]


# -- hostile input -----------------------------------------------------------------------------


HOSTILE_PATHS = [
    "data/../../../etc/passwd",
    "data/%2e%2e/%2e%2e/x",
    "data/%2E%2E%2F%2E%2E%2Fx",
    "..%2f..%2fx",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "data//x",
    "data/./x",
    "data/.x",
    "data/x%00.tsv",
    "data/x%5c..%5cy",
    "data/%252e%252e/x",
    "data/%c0%ae%c0%ae/x",
    "updates/update-9/flash/main.py",
    "data/" + "d/" * 9 + "x",
]


@pytest_twisted.ensureDeferred
async def test_hostile_paths_are_4xx_and_nothing_is_written(co2):
    token = co2.tokens[UNIT]
    before = tree(co2.root)
    for rel in HOSTILE_PATHS:
        status, body = await co2.raw(
            put_raw(f"/ou/{UNIT}/push-sequential/{rel}?offset=0", b"owned\n", token)
        )
        assert 400 <= status < 500, rel
        assert json.loads(body)["error"] in ("bad_path", "path_not_allowed", "not_found"), rel
    for unit in ["..", "%2e%2e", "co2unit-30aea42a50bc%2f..", "CO2UNIT-30AEA42A50BC", "x" * 300]:
        status, _ = await co2.raw(
            put_raw(f"/ou/{unit}/push-sequential/{READINGS}?offset=0", b"owned\n", token)
        )
        assert status == 400, unit
    # a raw NUL or backslash in the request line
    for target in [
        b"/ou/%s/push-sequential/data/a\x00b?offset=0" % UNIT.encode(),
        b"/ou/%s/push-sequential/data\\..\\x?offset=0" % UNIT.encode(),
    ]:
        status, _ = await co2.raw(
            b"PUT "
            + target
            + b" HTTP/1.1\r\nHost: x\r\nX-Unit-Token: "
            + token.encode()
            + b"\r\nContent-Length: 1\r\n"
            b"Connection: close\r\n\r\nx"
        )
        assert 400 <= status < 500
    assert tree(co2.root) == before
    assert co2.rows == []


@pytest_twisted.ensureDeferred
async def test_symlinks_in_the_tree_are_refused_not_followed(co2, tmp_path):
    token = co2.tokens[UNIT]
    outside = tmp_path / "outside"
    outside.mkdir()
    unit_dir = co2.root / "units" / UNIT
    unit_dir.mkdir(parents=True)
    (unit_dir / "data").symlink_to(outside)
    status, body = await co2.call("PUT", push_path(offset=0), b"x\n", token)
    assert status == 409 and body["error"] == "not_a_regular_file"
    (unit_dir / "data").unlink()
    (unit_dir / "data" / "readings").mkdir(parents=True)
    (unit_dir / READINGS).symlink_to(outside / "target")
    status, _ = await co2.call("PUT", push_path(offset=0), b"x\n", token)
    assert status == 409
    assert list(outside.iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_oversized_bodies_are_refused_while_streaming(co2):
    token = co2.tokens[UNIT]
    before = tree(co2.root)
    # a declared length over the cap is refused before any body byte is sent
    head = (
        f"PUT {push_path()} HTTP/1.1\r\nHost: x\r\nX-Unit-Token: {token}\r\n"
        f"Content-Length: {10**12}\r\n\r\n"
    ).encode()
    status, body = await co2.raw(head)
    assert status == 413 and json.loads(body)["error"] == "body_too_large"
    # a chunked body is counted as it arrives
    chunk = b"%x\r\n%s\r\n" % (16384, b"a" * 16384)
    head = (
        f"PUT {push_path()} HTTP/1.1\r\nHost: x\r\nX-Unit-Token: {token}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    status, _ = await co2.raw(head + chunk * 5 + b"0\r\n\r\n")
    assert status == 413
    status, _ = await co2.call("PUT", push_path(), b"b" * (CAP + 1), token)
    assert status == 413
    assert tree(co2.root) == before
    status, _ = await co2.call("PUT", push_path(), b"c" * CAP, token)  # exactly the cap is fine
    assert status == 200 and co2.unit_file(UNIT, READINGS).stat().st_size == CAP


@pytest_twisted.ensureDeferred
async def test_malformed_and_1970_rows_are_counted_and_skipped(co2):
    token = co2.tokens[UNIT]
    good = readings_bytes(3)
    lines = good.splitlines(keepends=True)
    bad = (
        lines[0]
        + b"not\ta\trow\n"
        + lines[1].replace(b"2020-", b"1970-")
        + b"\xff\xfe\x00garbage\n"
        + lines[2].replace(UNIT.encode(), OTHER.encode())
        + lines[2]
    )
    status, _ = await co2.call("PUT", push_path(), bad, token)
    assert status == 200 and co2.unit_file(UNIT, READINGS).read_bytes() == bad
    rows = co2.delivered(UNIT)
    assert [r.offset for r in rows] == [0, len(bad) - len(lines[2])]
    c = co2.server.counters
    assert (c["rows"], c["rows_malformed"], c["rows_clock_error"]) == (2, 3, 1)
    status, summary = await co2.call("GET", "/data/co2/summary")
    assert summary[UNIT]["rows"] == 2 and summary[UNIT]["malformed"] == 3
    assert summary[UNIT]["clock_errors"] == 1
    assert summary[UNIT]["files"] == {READINGS: len(bad)}


# -- authentication --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tokens_are_required_and_checked(co2):
    before = tree(co2.root)
    token, other = co2.tokens[UNIT], co2.tokens[OTHER]
    cases = [
        (None, 401, "token_required"),
        ("wrong", 401, "bad_token"),
        ("", 401, "bad_token"),
        (other, 401, "bad_token"),
    ]
    for tok, status_want, code in cases:
        status, body = await co2.call("PUT", push_path(), b"x\n", tok)
        assert (status, body["error"]) == (status_want, code)
        status, _ = await co2.call("POST", f"/ou/{UNIT}/alive", token=tok)
        assert status == 401
        status, _ = await co2.call("GET", f"/ou/{UNIT}/updates", token=tok)
        assert status == 401
    status, body = await co2.call("PUT", push_path() + "&token=" + other, b"x\n", token)
    assert (status, body["error"]) == (400, "two_tokens")
    assert tree(co2.root) == before
    # the query parameter works too, and its value never reaches the log
    logged: list[str] = []

    def observer(event):
        logged.append(formatEvent(event) or "")

    globalLogPublisher.addObserver(observer)
    try:
        status, _ = await co2.call("PUT", push_path() + "&token=" + token, b"x\n")
        await co2.call("PUT", push_path(offset=9) + "&token=" + token, b"x\n")
    finally:
        globalLogPublisher.removeObserver(observer)
    assert status == 200
    assert any("push-sequential" in line for line in logged)
    assert not any(token in line for line in logged)
    revoke_unit(co2.root, UNIT)
    status, _ = await co2.call("PUT", push_path(offset=2), b"y\n", token)
    assert status == 401
    token2 = add_unit(co2.root, UNIT)  # re-added: new token works without a restart
    status, _ = await co2.call("PUT", push_path(offset=2), b"y\n", token2)
    assert status == 200 and co2.unit_file(UNIT, READINGS).read_bytes() == b"x\ny\n"
    assert co2.server.counters["auth_failures"] >= 13


@pytest_twisted.ensureDeferred
async def test_compat_mode_accepts_tokenless_units_only_from_its_networks(tmp_path):
    root = tmp_path / "root"
    add_unit(root, OTHER)
    revoke_unit(root, OTHER)
    server, h = await start_server(root, compat_networks=("127.0.0.0/8",))
    try:
        status, _ = await h.call("PUT", push_path(offset=0), b"x\n")
        assert status == 200
        status, _ = await h.call("PUT", push_path(unit=OTHER, offset=0), b"x\n")
        assert status == 401  # revoked units stay out
        status, _ = await h.call("PUT", push_path(offset=2), b"y\n", "wrong token")
        assert status == 401  # a wrong token is wrong, compat or not
        st = server.status()["compat_mode"]
        assert st["enabled"] and st["networks"] == ["127.0.0.0/8"] and "COMPAT" in st["warning"]
        status, index = await h.call("GET", "/")
        assert index["status"]["compat_mode"]["enabled"]
    finally:
        await server.stop()
    server, h = await start_server(tmp_path / "root2", compat_networks=("10.0.0.0/8",))
    try:
        status, body = await h.call("PUT", push_path(offset=0), b"x\n")
        assert (status, body["error"]) == (401, "token_required")
        assert server.status()["compat_mode"]["enabled"]
    finally:
        await server.stop()


# -- firmware updates ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_updates_come_only_from_the_operator(co2, tmp_path):
    token = co2.tokens[UNIT]
    status, _ = await co2.call("GET", f"/ou/{UNIT}/updates?recursive=False", token=token)
    assert status == 404
    # an upload cannot plant an update
    status, _ = await co2.call(
        "PUT", f"/ou/{UNIT}/push-sequential/updates/update-x/flash/main.py?offset=0", b"evil", token
    )
    assert status == 403
    src = tmp_path / "upd"
    (src / "flash" / "lib").mkdir(parents=True)
    (src / "flash" / "main.py").write_bytes(b"print('new')\n")
    (src / "flash" / "lib" / "x.mpy").write_bytes(b"\x00\x01")
    add_update(co2.root, UNIT, src, "2020-01-14a")
    (co2.root / "updates" / UNIT / "update-2020-01-14a" / "flash" / "link").symlink_to("/etc")
    status, listing = await co2.call("GET", f"/ou/{UNIT}/updates?recursive=False", token=token)
    assert (status, listing) == (200, ["update-2020-01-14a"])
    status, files = await co2.call(
        "GET", f"/ou/{UNIT}/updates/update-2020-01-14a?recursive=True", token=token
    )
    assert files == ["flash/lib/x.mpy", "flash/main.py"]
    status, data = await co2.call(
        "GET", f"/ou/{UNIT}/updates/update-2020-01-14a/flash/main.py", token=token
    )
    assert (status, data) == (200, b"print('new')\n")
    status, _ = await co2.call(
        "GET", f"/ou/{UNIT}/updates/update-2020-01-14a/flash/link/passwd", token=token
    )
    assert status == 404
    status, _ = await co2.call(
        "GET", f"/ou/{UNIT}/updates/update-2020-01-14a/%2e%2e/%2e%2e", token=token
    )
    assert status == 400
    status, _ = await co2.call("GET", f"/ou/{OTHER}/updates", token=co2.tokens[OTHER])
    assert status == 404  # each unit sees its own updates only


# -- the simulator end to end ------------------------------------------------------------------------


def _expected(v):
    return None if v is None else float(v)


def _got(v):
    return None if math.isnan(v) else v


@pytest_twisted.ensureDeferred
async def test_simulated_units_deliver_exact_rows_and_identical_files(co2, tmp_path):
    units = []
    for i, layout in enumerate(["base", "extended", "mixed"]):
        unit_id = unit_id_for(7, i)
        token = add_unit(co2.root, unit_id)
        units.append(
            SimUnit(
                co2.url,
                unit_id,
                tmp_path / "sd" / unit_id,
                token,
                token_in="query" if i == 1 else "header",
                layout=layout,
                seed=i,
                chunk=1024,
            )
        )

    def run_units():
        t = 1_700_000_000
        for cycle in range(4):
            for u in units:
                for k in range(12):
                    u.measure(t + cycle * 3600 + k * 300)
                if cycle == 1:
                    u.measure(t, clock_reset=True)
                u.communicate(interrupt_rate=0.3)

    await threads.deferToThread(run_units)
    for u in units:
        for rel in (READINGS, "errors/errors-0000.txt"):
            assert co2.unit_file(u.unit_id, rel).read_bytes() == (u.sd / rel).read_bytes()
        got = co2.delivered(u.unit_id)
        assert [r.t for r in got] == [r.t for r in u.rows]  # each row once, in order
        for g, want in zip(got, u.rows, strict=True):
            assert _got(g.temperature) == _expected(want.temperature)
            assert tuple(map(_got, g.co2)) == tuple(map(_expected, want.co2))
            assert g.extra == want.extra and g.flash_count == want.flash_count
        assert u.stats["interrupted_cut"] + u.stats["interrupted_lost_ack"] > 0
    assert co2.server.counters["rows_clock_error"] == 3
    assert co2.server.counters["push_duplicate"] > 0  # lost acks were replayed
    assert len(co2.pings) == 12


@pytest_twisted.ensureDeferred
async def test_restart_delivers_rows_stored_but_not_delivered_and_not_twice(co2, tmp_path):
    token, source = co2.tokens[UNIT], readings_bytes(10)
    await co2.call("PUT", push_path(), source[:500], token)
    await co2.server.stop()
    # bytes stored by a process that died before parsing them (written behind its back)
    with open(co2.unit_file(UNIT, READINGS), "ab") as f:
        f.write(source[500:])
    second = co2.unit_file(UNIT, "data/readings/readings-0001.tsv")
    second.write_bytes(readings_bytes(2, start=1_700_000_000))
    server, h = await start_server(co2.root)
    try:
        first_times = sorted(r.t for u, rows in co2.rows for r in rows)
        again = sorted(r.t for u, rows in h.rows for r in rows)
        assert sorted(first_times + again) == sorted(
            [1_600_000_000 + 300 * i for i in range(10)] + [1_700_000_000, 1_700_000_300]
        )
        assert not set(first_times) & set(again)
        # the restarted server keeps parsing the file as it grows
        extra = readings_bytes(11)[len(source) :]
        status, _ = await h.call("PUT", push_path(offset=len(source)), extra, token)
        assert status == 200 and [r.t for r in h.delivered(UNIT)][-1] == 1_600_000_000 + 3000
    finally:
        await server.stop()
    server, h = await start_server(co2.root)
    try:
        assert h.rows == []  # everything was delivered before: nothing is delivered again
    finally:
        await server.stop()


def test_ping_files_roll_and_continue_after_restart(tmp_path):
    from nodes.co2.pinglog import PingLog
    from nodes.co2.pings import Ping

    log = PingLog(tmp_path, file_bytes=200)
    for i in range(6):
        log.append(Ping(1e9 + i, UNIT, f"site-{i}", 1, -90, 99), "127.0.0.1")
    log.close()
    log = PingLog(tmp_path, file_bytes=200)  # a restart appends to the newest file
    log.append(Ping(2e9, UNIT, "after", 1, -90, 99), "127.0.0.1")
    assert [p["site_code"] for p in log.recent(2)] == ["after", "site-5"]
    log.close()
    files = sorted((tmp_path / "pings").iterdir())
    assert [f.name for f in files] == ["pings-0000.tsv", "pings-0001.tsv"]  # ~65 B a line
    assert files[1].read_text().splitlines()[-1].split("\t")[2] == "after"
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert [line.split("\t")[2] for line in lines] == [f"site-{i}" for i in range(6)] + ["after"]
    assert all(f.stat().st_size < 200 + 80 for f in files)


# -- the door: heads judged before bodies, bodies on disk, caps and deadlines -------------------


def _head_answer(port: int, head: bytes, source: str = "127.0.0.1") -> tuple[bytes, int]:
    """Send a request head only (no body byte) and read the answer the server gives
    anyway; (answer, body bytes the client had sent: always 0)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0)) as s:
        s.sendall(head)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), 0


@pytest_twisted.ensureDeferred
async def test_credentials_and_offsets_are_judged_from_the_head_before_any_body_byte(co2):
    big = CAP - 1  # a length the body cap allows: only the head can refuse it
    for extra, want in [
        ("", b"HTTP/1.1 401"),  # no token
        ("X-Unit-Token: wrong\r\n", b"HTTP/1.1 401"),
        ("Expect: 100-continue\r\n", b"HTTP/1.1 401"),  # refused, never "100 Continue"
    ]:
        head = (
            f"PUT {push_path()} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {big}\r\n\r\n"
        ).encode()
        answer, _ = await threads.deferToThread(_head_answer, co2.port, head)
        assert answer.startswith(want), answer[:80]
        assert b"100 Continue" not in answer
    head = (
        f"PUT /ou/{UNIT}/push-sequential/{READINGS}?offset=-1 HTTP/1.1\r\nHost: x\r\n"
        f"X-Unit-Token: {co2.tokens[UNIT]}\r\nContent-Length: {big}\r\n\r\n"
    ).encode()
    answer, _ = await threads.deferToThread(_head_answer, co2.port, head)
    assert answer.startswith(b"HTTP/1.1 400")
    assert co2.server.counters["refused_token_required"] >= 2
    assert not co2.unit_file(UNIT, READINGS).exists()


def _spooled(root: Path) -> list[str]:
    """This process's open files under the data root's spool directory."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root / "spool")):
            out.append(target)
    return out


@pytest_twisted.ensureDeferred
async def test_a_push_body_goes_to_a_spool_file_while_it_arrives(tmp_path):
    root = tmp_path / "root"
    token = add_unit(root, UNIT)
    server, h = await start_server(root, max_body_bytes=1 << 20)
    body = readings_bytes(8000)[: (1 << 20) - 1]  # more than a few 64 KiB blocks
    head = put_raw(push_path(), b"", token).replace(
        b"Content-Length: 0", b"Content-Length: %d" % len(body)
    )
    sock = socket.create_connection(("127.0.0.1", h.port), timeout=20)
    try:
        await threads.deferToThread(sock.sendall, head + body[: len(body) // 2])
        await wait_until(lambda: _spooled(root), 10, "a spool file for the body")
        assert not h.unit_file(UNIT, READINGS).exists()  # nothing stored before the whole body
        await threads.deferToThread(sock.sendall, body[len(body) // 2 :])
        answer = await threads.deferToThread(_read_all, sock)
        assert answer.startswith(b"HTTP/1.1 200")
        assert h.unit_file(UNIT, READINGS).read_bytes() == body
        await wait_until(lambda: not _spooled(root), 10, "the spool file to be closed")
    finally:
        sock.close()
        await server.stop()


def _until_cut(sock: socket.socket) -> bytes:
    """What the server sends before it cuts the connection (a reset is a cut)."""
    try:
        return _read_all(sock)
    except ConnectionResetError:
        return b""


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.slow  # over 1 s in the unit lane
@pytest_twisted.ensureDeferred
async def test_slow_heads_and_bodies_are_cut(tmp_path):
    root = tmp_path / "root"
    token = add_unit(root, UNIT)
    server, h = await start_server(root, header_timeout=0.5, body_timeout=0.5)
    try:
        for data in (
            b"PUT /ou/x HTTP/1.1\r\nHost: x\r\n",  # half a head, never finished
            put_raw(push_path(), b"", token).replace(b"Content-Length: 0", b"Content-Length: 9"),
        ):
            with socket.create_connection(("127.0.0.1", h.port), timeout=20) as s:
                s.sendall(data)
                rest = await threads.deferToThread(_until_cut, s)
            assert rest == b""
        assert server.counters["cut_slow_head"] == 1 and server.counters["cut_slow_body"] == 1
        status, _ = await h.call("POST", f"/ou/{UNIT}/alive", token=token)
        assert status == 200
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_waiting_connections_make_room_for_a_unit_at_the_caps(tmp_path):
    root = tmp_path / "root"
    token = add_unit(root, UNIT)
    server, h = await start_server(root, max_connections=8, max_connections_per_client=4)
    held = []
    try:
        for i in range(12):  # half heads from three addresses: 8 fit, 4 per address
            s = socket.create_connection(
                ("127.0.0.1", h.port), timeout=20, source_address=(f"127.0.9.{i % 3 + 1}", 0)
            )
            s.sendall(b"PUT /ou/x HTTP/1.1\r\n")
            held.append(s)
        # 8 fit; the 4 others wait in the kernel's queue until the oldest have waited a
        # second, then take their places (a burst never pushes itself out).
        await wait_until(
            lambda: server.counters["pushed_out_waiting"] == 4, 20, "4 pushed out to make room"
        )
        assert server.connections == 8
        pushed = server.counters["pushed_out_waiting"]
        status, _ = await h.call("POST", f"/ou/{UNIT}/alive", token=token)
        assert status == 200 and server.counters["pushed_out_waiting"] == pushed + 1
        assert server.connections <= 8
    finally:
        for s in held:
            s.close()
        await server.stop()
