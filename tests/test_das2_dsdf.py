"""DSDF parsing and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.das2.dsdf import (
    CacheLevel,
    DsdfError,
    check_name,
    compile_param,
    load_catalog,
    parse_dsdf,
    parse_duration,
    parse_lines,
)
from nodes.das2.timefmt import parse_time_text

EXAMPLES = Path(__file__).resolve().parent.parent / "nodes" / "das2" / "examples"

MINIMAL = "description = 'd'\nreader = 'prog'\n"


def test_shipped_examples_parse() -> None:
    datasets, errors = load_catalog(EXAMPLES)
    assert errors == []
    assert set(datasets) == {"spectrogram", "magnetometer"}
    spec = datasets["spectrogram"]
    assert spec.reader == ("{python}", "{dsdf_dir}/spectrogram.py")
    assert spec.directory == str(EXAMPLES)
    assert spec.reducible and not spec.minmax and not spec.live
    assert spec.cache_levels == (
        CacheLevel(10.0, "hourly"),
        CacheLevel(60.0, "daily"),
        CacheLevel(3600.0, "monthly"),
    )
    assert spec.valid_range == (parse_time_text("2000-01-01"), parse_time_text("2030-01-01"))
    assert spec.examples[1].params == ("channels=96",)
    assert spec.examples[0].label == "One day with chorus bursts"
    mag = datasets["magnetometer"]
    assert mag.minmax and mag.live
    assert [o.template for o in mag.params] == ["frame={gse,gsm}"]
    assert "description = 'Synthetic" in mag.text()


def test_line_syntax() -> None:
    keys = parse_lines(
        "; a comment\n\n# another\n"
        "a = 'quoted ; not a comment'  ; a comment\n"
        "b = \"double 'quoted'\"\n"
        "c = bare value ; comment\n"
        "d =\n"
    )
    assert keys == {
        "a": "quoted ; not a comment",
        "b": "double 'quoted'",
        "c": "bare value",
        "d": "",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just words\n", "expected `key = value`"),
        ("1a = x\n", "expected `key = value`"),
        ("a = 'open\n", "unterminated quote"),
        ("a = 'x' y\n", "after the closing quote"),
        ("a = 1\na = 2\n", "given twice"),
    ],
)
def test_bad_lines(text: str, message: str) -> None:
    with pytest.raises(DsdfError, match=message):
        parse_lines(text)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", None),
        ("das2Stream = 0\n", "only das2 stream"),
        ("reducer = 'my_reducer | sh'\n", "reducer .* unknown"),
        ("validRange = '2001-01-01'\n", "START to END"),
        ("validRange = '2002-01-01 to 2001-01-01'\n", "ends before"),
        ("validRange = '2001-13-01 to 2002-01-01'\n", "bad time range"),
        ("exampleRange_00 = 'x to y'\n", "bad time range"),
        (
            "exampleRange_00 = '2001-01-01 to 2001-01-02'\nexampleParams_00 = 'nope'\n",
            "not a declared param",
        ),
        ("cacheLevel_00 = '60 s'\n", "RESOLUTION"),
        ("cacheLevel_00 = '60 s | weekly'\n", "RESOLUTION"),
        ("cacheLevel_00 = '60 parsecs | daily'\n", "not a duration"),
        ("cacheLevel_00 = '0 s | daily'\n", "intrinsic"),
        ("cacheLevel_00 = '60 s | daily'\ncacheLevel_01 = '1 min | monthly'\n", "given twice"),
        ("not_reducible = 1\ncacheLevel_00 = '60 s | daily'\n", "not reducible"),
        ("live = maybe\n", "live must be"),
        ("param_00 = 'a;b | shell'\n", "not allowed"),
        ("param_00 = '../x | parent'\n", "not allowed"),
        ("param_00 = 'a=<int><int> | two'\n", "more than one placeholder"),
        ("param_00 = 'a=<float> | unknown'\n", "unknown placeholder"),
        ("param_00 = 'a={x,y z} | space'\n", "not allowed"),
        ("param_00 = 'a={x,$y} | dollar'\n", "not allowed"),
    ],
)
def test_dataset_checks(extra: str, message: str | None) -> None:
    if message is None:
        ds = parse_dsdf(MINIMAL, "a/b")
        assert ds.reader == ("prog",) and ds.reducible and ds.cache_levels == ()
        return
    with pytest.raises(DsdfError, match=message):
        parse_dsdf(MINIMAL + extra, "a/b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("reader = 'prog'\n", "description is required"),
        ("description = 'd'\n", "reader is required"),
        ("description = 'd'\nreader = '\"unclosed'\n", "reader:"),
        ("description = 'd'\nreader = '{shell} x'\n", "unknown placeholder"),
    ],
)
def test_required_keys_and_reader(text: str, message: str) -> None:
    with pytest.raises(DsdfError, match=message):
        parse_dsdf(text, "x")


def test_reader_is_split_into_words_never_a_shell_line() -> None:
    ds = parse_dsdf("description = 'd'\nreader = \"prog --opt 'two words' a;b\"\n", "x")
    assert ds.reader == ("prog", "--opt", "two words", "a;b")


def test_reducer_names() -> None:
    assert parse_dsdf(MINIMAL + "reducer = 'das2_bin_peakavgsec'\n", "x").minmax
    assert not parse_dsdf(MINIMAL + "reducer = 'none'\n", "x").reducible
    assert not parse_dsdf(
        MINIMAL + "not_reducible = 1\ncacheLevel_00 = 'intrinsic | daily'\n", "x"
    ).reducible


def test_param_templates() -> None:
    p = compile_param("channels=<int>")
    assert p.fullmatch("channels=48") and p.fullmatch("channels=-3")
    assert not p.fullmatch("channels=4.5") and not p.fullmatch("channels=48;ls")
    r = compile_param("--scale=<real>")
    assert r.fullmatch("--scale=1.5e-3") and r.fullmatch("--scale=.5")
    assert not r.fullmatch("--scale=1..5") and not r.fullmatch("--scale=nan")
    c = compile_param("frame={gse,gsm}")
    assert (
        c.fullmatch("frame=gsm")
        and not c.fullmatch("frame=geo")
        and not c.fullmatch("frame=gse|gsm")
    )
    w = compile_param("mode=<word>")
    assert (
        w.fullmatch("mode=fast_1") and not w.fullmatch("mode=a b") and not w.fullmatch("mode=../x")
    )
    assert compile_param("--verbose").fullmatch("--verbose")


def test_durations() -> None:
    assert parse_duration("60 s") == 60.0
    assert parse_duration("1.5 hr") == 5400.0
    assert parse_duration("500 ms") == 0.5
    assert parse_duration("2") == 2.0
    for bad in ("", "s", "1 fortnight", "-1 s", "inf s", "1 2 3"):
        with pytest.raises(DsdfError):
            parse_duration(bad)


@pytest.mark.parametrize(
    "name", ["", "../etc", "a/../b", "/abs", "a//b", "a b", "a;b", "x" * 201, ".hidden"]
)
def test_bad_dataset_names(name: str) -> None:
    with pytest.raises(DsdfError):
        check_name(name)


def test_catalog_leaves_out_bad_files(tmp_path: Path) -> None:
    (tmp_path / "Good").mkdir()
    (tmp_path / "Good" / "one.dsdf").write_text(MINIMAL)
    (tmp_path / "bad.dsdf").write_text("description = 'no reader'\n")
    (tmp_path / "binary.dsdf").write_bytes(b"\xff\xfe\x00")
    datasets, errors = load_catalog(tmp_path)
    assert list(datasets) == ["Good/one"]
    assert len(errors) == 2 and any("reader is required" in e for e in errors)
