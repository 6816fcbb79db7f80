"""CO2 endpoint: pure modules (paths, query, routes, upload decisions, pings,
readings parser, tokens), with hypothesis fuzzing of the parsers."""

from __future__ import annotations

import json
import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.co2 import upload
from nodes.co2.errors import Rejected
from nodes.co2.paths import (
    check_relative_path,
    check_unit_id,
    compile_unit_pattern,
    is_readings_file,
)
from nodes.co2.pings import Ping, escape_tsv, parse_ping, tsv_line, unescape_tsv
from nodes.co2.query import parse_flag, parse_offset, parse_query
from nodes.co2.readings import ReadingError, ReadingsParser, _parse_checked, parse_line
from nodes.co2.routes import route
from nodes.co2.tokens import TokenStore, hash_token, token_matches

UNIT = "co2unit-30aea42a50bc"
PATTERN = compile_unit_pattern()


def segs(path: str) -> list[bytes]:
    return path.encode().split(b"/")


# -- paths ------------------------------------------------------------------------


def test_unit_id_pattern_is_strict():
    assert check_unit_id(UNIT.encode(), PATTERN) == UNIT
    for bad in [
        b"co2unit-30AEA42A50BC",
        b"co2unit-30aea42a50b",
        b"co2unit-30aea42a50bc0",
        b"..",
        b"co2unit-30aea42a50bc%0a",
        b"co2unit-30aea42a50bc\n",
        b"",
        b"co2unit-30aea42a50b%63x",
    ]:
        with pytest.raises(Rejected) as exc:
            check_unit_id(bad, PATTERN)
        assert exc.value.status == 400


def test_unit_id_pattern_that_admits_unsafe_names_still_refuses_them():
    loose = compile_unit_pattern(r".+")
    for bad in [b"..", b".hidden", b"%2e%2e", b"a%2fb"]:
        with pytest.raises(Rejected):
            check_unit_id(bad, loose)


def test_relative_path_accepts_firmware_paths():
    names = check_relative_path(segs("data/readings/readings-0000.tsv"), ("data", "errors"))
    assert names == ("data", "readings", "readings-0000.tsv")
    assert is_readings_file(names)
    assert not is_readings_file(("errors", "errors-0000.txt"))
    assert not is_readings_file(("data", "readings", "readings-0000.tsv.bak"))


@pytest.mark.parametrize(
    "path",
    [
        "data/../x",
        "data/%2e%2e/x",
        "data/%2E%2E/x",
        "data/.%2e/x",
        "data/%252e%252e/x",
        "data/./x",
        "data//x",
        "/etc/passwd",
        "data/a%2fb",
        "data/a%5cb",
        "data/a\\b",
        "data/a%00b",
        "data/.hidden",
        "data/-rf",
        "data/~",
        "data/con",
        "data/NUL.txt",
        "data/x.",
        "data/%c3%a9",
        "data/a b",
        "data/a%20b",
        "data/" + "a" * 200,
        "/".join(["data"] * 9),
        "",
    ],
)
def test_relative_path_refuses_hostile_paths(path):
    with pytest.raises(Rejected) as exc:
        check_relative_path(segs(path), ("data", "errors"))
    assert exc.value.status == 400


def test_relative_path_refuses_other_top_dirs():
    with pytest.raises(Rejected) as exc:
        check_relative_path(segs("updates/update-1/flash/main.py"), ("data", "errors"))
    assert exc.value.status == 403


@given(st.binary(max_size=80))
def test_relative_path_never_yields_an_unsafe_name(raw):
    try:
        names = check_relative_path(raw.split(b"/"))
    except Rejected:
        return
    for name in names:
        assert name not in (".", "..") and not name.startswith(".")
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert os.path.normpath(os.path.join("/base", *names)).startswith("/base/")


# -- query ---------------------------------------------------------------------------


def test_query_parsing_and_refusals():
    assert parse_query(b"site_code=varanger-03&rssi_dbm=-97&x=a+b%21") == {
        "site_code": "varanger-03",
        "rssi_dbm": "-97",
        "x": "a b!",
    }
    assert parse_query(b"") == {}
    for bad in [
        b"a=1&a=2",
        b"=1",
        b"a=%ff",
        b"a=%0a",
        b"a=%00",
        b"x=" + b"y" * 3000,
        b"&".join(b"k%d=1" % i for i in range(40)),
    ]:
        with pytest.raises(Rejected) as exc:
            parse_query(bad)
        assert exc.value.status == 400


@pytest.mark.parametrize(
    "raw", ["", "-1", "+1", "1.5", "0x10", " 1", "1e3", "１", "9" * 16, str((1 << 40) + 1)]
)
def test_offset_must_be_plain_decimal(raw):
    with pytest.raises(Rejected) as exc:
        parse_offset({"offset": raw})
    assert exc.value.code == "bad_offset"


def test_offset_and_flags():
    assert parse_offset({"offset": "4096"}) == 4096
    with pytest.raises(Rejected):
        parse_offset({})
    assert parse_flag({"recursive": "True"}, "recursive") is True
    assert parse_flag({"recursive": "False"}, "recursive") is False
    assert parse_flag({}, "recursive") is False
    with pytest.raises(Rejected):
        parse_flag({"recursive": "yes please"}, "recursive")


@given(st.binary(max_size=200))
def test_query_parser_fuzz_only_rejects(raw):
    try:
        out = parse_query(raw)
    except Rejected as exc:
        assert exc.status == 400
        return
    assert all(k and v.isprintable() for k, v in out.items())


# -- routes ----------------------------------------------------------------------------


def test_routes():
    dirs = ("data", "errors")
    r = route(
        b"PUT",
        f"/ou/{UNIT}/push-sequential/data/readings/readings-0001.tsv".encode(),
        PATTERN,
        dirs,
    )
    assert (r.kind, r.unit_id, r.path) == ("push", UNIT, ("data", "readings", "readings-0001.tsv"))
    assert route(b"POST", f"/ou/{UNIT}/alive".encode(), PATTERN, dirs).kind == "alive"
    assert route(b"GET", f"/ou/{UNIT}/updates".encode(), PATTERN, dirs).path == ()
    assert route(b"GET", f"/ou/{UNIT}/updates/update-1/".encode(), PATTERN, dirs).path == (
        "update-1",
    )
    assert route(b"GET", b"/status/alive/recent", PATTERN, dirs).kind == "recent"
    assert route(b"GET", b"/data/co2/summary", PATTERN, dirs).kind == "co2_summary"
    cases = [
        (b"GET", f"/ou/{UNIT}/alive", 405),
        (b"POST", f"/ou/{UNIT}/push-sequential/data/x", 405),
        (b"GET", "/ou", 404),
        (b"GET", f"/ou/{UNIT}/debug", 404),
        (b"PUT", f"/ou/{UNIT}/updates/x", 405),
        (b"GET", "/status/x", 404),
        (b"PUT", "/ou/../alive/x", 400),
        (b"GET", "relative", 400),
        (b"PUT", f"/ou/{UNIT}/push-sequential/data", 400),
    ]
    for method, path, status in cases:
        with pytest.raises(Rejected) as exc:
            route(method, path.encode(), PATTERN, dirs)
        assert exc.value.status == status, path


# -- upload decisions ------------------------------------------------------------------------


def _apply(stored: bytes, offset: int, body: bytes, cap: int = 1 << 20):
    start, length = upload.overlap(len(stored), offset, len(body))
    matches = body[:length] == stored[start : start + length]
    d = upload.decide(len(stored), offset, len(body), matches, cap)
    tail = body[d.tail_from : d.tail_from + d.tail_len]
    after = stored[: d.append_at] + tail if d.action == "append" else stored
    return d, after


def test_upload_decisions():
    d, after = _apply(b"", 0, b"abc")
    assert (d.action, after, d.size_after) == ("append", b"abc", 3)
    d, after = _apply(b"abc", 3, b"def")
    assert (d.action, after) == ("append", b"abcdef")
    d, after = _apply(b"abcdef", 3, b"def")
    assert (d.action, after, d.size_after) == ("duplicate", b"abcdef", 6)
    d, after = _apply(b"abcdef", 3, b"defgh")  # resumed chunk straddling the end
    assert (d.action, after) == ("append", b"abcdefgh")
    d, after = _apply(b"abcdef", 3, b"dXf")
    assert (d.action, after) == ("conflict", b"abcdef")
    d, after = _apply(b"abc", 4, b"x")
    assert (d.action, after, d.size_after) == ("past_end", b"abc", 3)
    d, after = _apply(b"abc", 3, b"")
    assert d.action == "duplicate"
    d, after = _apply(b"abc", 3, b"defg", cap=6)
    assert (d.action, after) == ("too_large", b"abc")


@given(st.binary(max_size=64), st.integers(0, 80), st.binary(max_size=64))
def test_upload_never_alters_stored_bytes(stored, offset, body):
    d, after = _apply(stored, offset, body)
    assert after[: len(stored)] == stored
    if d.action == "append":
        assert after[offset : offset + len(body)] == body
    if d.action in ("append", "duplicate"):
        assert stored[offset : offset + len(body)] == body[: max(0, len(stored) - offset)]


@given(st.binary(min_size=1, max_size=300), st.lists(st.integers(1, 50), max_size=30))
def test_upload_chunks_with_replays_rebuild_the_file(source, cuts):
    """Any chunking, with every chunk also replayed, ends byte-identical."""
    stored, pos, i = b"", 0, 0
    while pos < len(source):
        n = cuts[i % len(cuts)] if cuts else 7
        chunk = source[pos : pos + n]
        d, stored = _apply(stored, pos, chunk)
        assert d.action == "append"
        d, stored = _apply(stored, pos, chunk)  # the replay
        assert d.action == "duplicate"
        pos, i = pos + len(chunk), i + 1
    assert stored == source


# -- pings -----------------------------------------------------------------------------------


def test_ping_parse_and_line():
    p = parse_ping(
        UNIT,
        {"site_code": "varanger-03", "rssi_raw": "8", "rssi_dbm": "-97", "ber_raw": "99"},
        1564578010.25,
    )
    assert (p.rssi_raw, p.rssi_dbm, p.ber_raw) == (8, -97, 99)
    line = tsv_line(p)
    assert line == (
        b"2019-07-31T13:00:10.250000Z\t" + UNIT.encode() + b"\tvaranger-03\t8\t-97\t99\n"
    )
    bare = parse_ping(UNIT, {}, 0.0)
    assert (bare.site_code, bare.rssi_raw, bare.ber_raw) == (None, None, None)
    assert parse_ping(UNIT, {"rssi_raw": "None"}, 0.0).rssi_raw is None


@pytest.mark.parametrize(
    "query",
    [
        {"rssi_raw": "abc"},
        {"rssi_dbm": "-9999"},
        {"ber_raw": "1e3"},
        {"rssi_raw": "-"},
        {"rssi_dbm": "1"},
        {"site_code": "x" * 65},
        {"rssi_raw": "٣"},
    ],
)
def test_ping_junk_values_are_refused(query):
    with pytest.raises(Rejected) as exc:
        parse_ping(UNIT, query, 0.0)
    assert exc.value.status == 400


@given(st.text(max_size=40))
def test_tsv_escape_round_trip_and_shape(value):
    cell = escape_tsv(value)
    assert "\t" not in cell and "\n" not in cell and "\r" not in cell
    assert all(ord(c) >= 0x20 for c in cell)
    assert unescape_tsv(cell) == value


@given(st.text(max_size=30))
def test_ping_line_always_one_line_of_six_cells(site):
    line = tsv_line(Ping(0.0, UNIT, site, 1, -2, 3)).decode()
    assert line.endswith("\n") and line.count("\n") == 1
    cells = line[:-1].split("\t")
    assert len(cells) == 6 and unescape_tsv(cells[2]) == site


# -- readings ----------------------------------------------------------------------------------

BASE = (
    f"{UNIT}\tvaranger-03\t2019-07-31\t13:00:10\t23.4375\t1\t680\t700\t710\t710\t700"
    "\t690\t700\t700\t700\t700"
)
EXTENDED = BASE + "\t12.5\t-3\t1e2\t0\t4095"


def test_parse_base_and_extended_rows():
    r = parse_line(BASE.encode(), UNIT)
    assert r.t == 1564578010.0 and r.temperature == 23.4375 and r.flash_count == 1
    assert r.co2 == (680, 700, 710, 710, 700, 690, 700, 700, 700, 700)
    assert r.co2_mean == 699.0 and r.extra == () and r.nickname == "varanger-03"
    r = parse_line(EXTENDED.encode() + b"\r", UNIT)
    assert r.extra == (12.5, -3.0, 100.0, 0.0, 4095.0)


def test_parse_missing_values_and_1970():
    line = BASE.replace("23.4375", "None").replace("\t680\t700", "\tNone\t700")
    r = parse_line(line.encode(), UNIT)
    assert math.isnan(r.temperature) and math.isnan(r.co2[0])
    assert r.co2_mean == pytest.approx(sum([700, 710, 710, 700, 690, 700, 700, 700, 700]) / 9)
    r = parse_line(BASE.replace("2019-07-31", "1970-01-01").encode(), UNIT)
    assert r.clock_error and math.isnan(r.t)


@pytest.mark.parametrize(
    "line,reason",
    [
        (BASE.rsplit("\t", 1)[0], "columns"),
        (BASE.replace("23.4375", "nan"), "temperature"),
        (BASE.replace("23.4375", "inf"), "temperature"),
        (BASE.replace("\t680\t", "\t 680\t"), "co2 reading 1"),
        (BASE.replace("\t680\t", "\t6_80\t"), "co2 reading 1"),
        (BASE.replace("2019-07-31", "2019-02-30"), "no such date"),
        (BASE.replace("13:00:10", "13:0:10"), "time"),
        (BASE.replace("\t1\t680", "\t1.5\t680"), "flash count"),
        (BASE.replace(UNIT, "co2unit-000000000000"), "another unit"),
        (BASE.replace("varanger", "var\x01anger"), "control"),
        (BASE + "\t1\t2", "columns"),
    ],
)
def test_malformed_lines_say_why(line, reason):
    with pytest.raises(ReadingError, match=reason):
        parse_line(line.encode(), UNIT)


def test_parser_incremental_partial_lines_and_errors():
    data = (
        BASE + "\n" + "garbage\n" + "\n" + BASE.replace("2019", "1970") + "\n" + EXTENDED + "\n"
    ).encode()
    whole = ReadingsParser(UNIT).feed(data)
    assert [r.offset for r in whole.rows] == [0, data.index(EXTENDED.encode())]
    assert len(whole.clock_errors) == 1 and len(whole.errors) == 1
    assert whole.errors[0].offset == len(BASE) + 1 and "columns" in whole.errors[0].reason
    assert whole.complete_until == len(data)
    # byte by byte gives the same rows
    p = ReadingsParser(UNIT)
    rows = []
    for i in range(len(data)):
        rows += p.feed(data[i : i + 1]).rows
    assert rows == whole.rows
    # a partial last line waits
    p = ReadingsParser(UNIT)
    b = p.feed(data[:10])
    assert b.rows == [] and b.complete_until == 0 and p.pending == 10


def test_parser_drops_an_overlong_line_without_holding_it():
    p = ReadingsParser(UNIT)
    b1 = p.feed(b"x" * 5000)
    assert len(b1.errors) == 1 and p.pending == 0
    b2 = p.feed(b"y" * 5000 + b"\n" + BASE.encode() + b"\n")
    assert b2.errors == [] and len(b2.rows) == 1 and b2.rows[0].offset == 10001
    assert b2.complete_until == 10001 + len(BASE) + 1


@settings(max_examples=200)
@given(st.binary(max_size=400), st.lists(st.integers(1, 60), max_size=10))
def test_parser_fuzz_consistent_under_any_split(data, cuts):
    """Never raises, accounts for every complete line, and splitting never changes results."""
    whole = ReadingsParser(UNIT).feed(data)
    p, rows, errors, pos, i = ReadingsParser(UNIT), [], [], 0, 0
    while pos < len(data):
        n = cuts[i % len(cuts)] if cuts else 13
        b = p.feed(data[pos : pos + n])
        rows += b.rows
        errors += b.errors
        pos, i = pos + n, i + 1
    assert rows == whole.rows
    assert [e.offset for e in errors] == [e.offset for e in whole.errors]
    last_line_end = data.rfind(b"\n") + 1
    tail_too_long = len(data) - last_line_end > 1024  # an over-long tail is reported and dropped
    assert whole.complete_until == (len(data) if tail_too_long else last_line_end)
    assert p.complete_until == whole.complete_until


@given(
    st.lists(
        st.tuples(
            st.integers(2000, 2100),
            st.integers(1, 12),
            st.integers(1, 28),
            st.integers(0, 23),
            st.integers(0, 59),
            st.integers(0, 59),
            st.floats(-50, 50, allow_nan=False).map(lambda x: round(x, 4)),
            st.lists(st.integers(0, 100000), min_size=10, max_size=10),
        ),
        max_size=5,
    )
)
def test_parser_reads_back_generated_rows_exactly(rows):
    lines = []
    for y, mo, d, h, mi, s, temp, co2 in rows:
        lines.append(
            "\t".join(
                [
                    UNIT,
                    "n",
                    f"{y:04}-{mo:02}-{d:02}",
                    f"{h:02}:{mi:02}:{s:02}",
                    str(temp),
                    "0",
                    *map(str, co2),
                ]
            )
        )
    got = ReadingsParser(UNIT).feed(("\n".join(lines) + "\n").encode()).rows
    assert [(r.temperature, r.co2) for r in got] == [
        (temp, tuple(float(c) for c in co2)) for *_, temp, co2 in rows
    ]


# -- tokens ---------------------------------------------------------------------------------------


def test_tokens_hashed_checked_revoked(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    token = store.add(UNIT)
    text = (tmp_path / "tokens.json").read_text()
    assert token not in text and hash_token(token) in text
    assert (tmp_path / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert store.check(UNIT, token)
    assert not store.check(UNIT, token + "x")
    assert not store.check("co2unit-000000000000", token)
    other = TokenStore(tmp_path / "tokens.json")  # a running server sees changes
    new = store.add(UNIT)
    assert not other.check(UNIT, token) and other.check(UNIT, new)
    assert store.revoke(UNIT) and other.is_revoked(UNIT) and not other.check(UNIT, new)
    assert not store.revoke("co2unit-000000000001")
    assert token_matches(hash_token("a"), "a") and not token_matches(hash_token("a"), "b")
    assert json.loads(text)["version"] == 1


# (well-formed values, malformed values) per kind of cell
_CELLS = {
    "id": ([UNIT], ["co2unit-000000000000", "", "x y"]),
    "nick": (["varanger-03", "", "é"], ["a\x01"]),
    "date": (["2019-07-31", "1970-01-01", "2024-02-29"], ["2019-02-30", "2019-7-31", "2019-13-01"]),
    "time": (["13:00:10", "23:59:59", "00:00:00"], ["24:00:00", "13:60:00", "13:00:60", "1:00:00"]),
    "num": (
        ["680", "-3", "23.4375", "None", "1e2", "1E-05", "-0", "007", "1e100", "1e-300"],
        ["1e999", "nan", "inf", " 1", "1.", ".5", "٣", "", "99999999999"],
    ),
    "flash": (["0", "3", "None", "-1"], ["1.5", "x"]),
}


@pytest.mark.slow  # measured 5.2 s (property test)
@settings(max_examples=200)
@given(st.data())
def test_fast_row_path_agrees_with_the_checked_definition(data):
    """The fast whole-row expression gives exactly what the checked parser gives."""

    def pick(kind: str) -> str:
        good, bad = _CELLS[kind]
        return data.draw(st.sampled_from(good * 30 + bad))  # mostly well-formed rows

    n_num = data.draw(st.sampled_from([10] * 5 + [15] * 5 + [9, 11]))
    cells = [pick("id"), pick("nick"), pick("date"), pick("time"), pick("num"), pick("flash")]
    cells += [pick("num") for _ in range(n_num)]
    text = "\t".join(cells)
    try:
        want = repr(_parse_checked(text, UNIT, 5))
    except ReadingError:
        want = "error"
    try:
        got = repr(parse_line(text.encode(), UNIT, 5))
    except ReadingError:
        got = "error"
    assert got == want
