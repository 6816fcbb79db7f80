"""A corpus of das2.2 streams written byte by byte, covering what das2C's own
test streams cover: several packet ids interleaved and redefined, yscans
(yTags as a list and as a series), ascii and time value types, big- and
little-endian reals, header lengths padded with spaces (as das2C's tools write
them) and with zeros, comments, exceptions, fill values and a stream already
reduced by das2C (averages with `.min`/`.max` planes).

The streams are built here with `struct` and literal XML, never with the
encoder under test, and each comes with what a decoder must find in it.
`python -m tests.das2_corpus DIR` writes them out as `NAME.d2s` files.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

_PADDER: list = []  # set by corpus(pad=...): every length field made by it


def header(tag: bytes, xml: str, pad: str = "zeros") -> bytes:
    """A `[NN]` header; the length padded with zeros or (das2C's way) spaces."""
    body = xml.encode()
    if _PADDER:
        length = _PADDER[0](len(body)).encode()
    else:
        length = b"%06d" % len(body) if pad == "zeros" else b"%6d" % len(body)
    return tag + length + body


def stream_header(props: str = "", pad: str = "zeros") -> bytes:
    inner = f"<properties {props}/>" if props else ""
    return header(b"[00]", f'<stream version="2.2">{inner}</stream>', pad)


def ascii_value(value: float, width: int, last: bool) -> bytes:
    text = f"{value:.{max(1, width - 9)}e}".rjust(width - 1)
    return (text + ("\n" if last else " ")).encode()


@dataclass
class Case:
    """One stream and what it holds: per packet id, the planes' names (as the
    node serves them: unnamed planes named), the number of records, the first
    record's values; the comments and exceptions, in order."""

    name: str
    raw: bytes
    records: dict[int, int] = field(default_factory=dict)
    names: dict[int, list[str]] = field(default_factory=dict)
    first: dict[int, list] = field(default_factory=dict)
    comments: list[tuple[str, str]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)


def _binary_xy() -> Case:
    """x in t2000 (big-endian real8), two y planes (real4), space-padded lengths."""
    raw = stream_header('String:title="xy" Datum:xTagWidth="1 s"', pad="spaces")
    raw += header(
        b"[01]",
        '<packet><x type="sun_real8" units="t2000"/>'
        '<y type="sun_real4" name="Ex" units="V/m"><properties double:fill="-1e31"/></y>'
        '<y type="sun_real4" name="Ey" units="V/m"/></packet>',
        pad="spaces",
    )
    for i in range(10):
        raw += b":01:" + struct.pack(">dff", 6.3e8 + i, i * 0.5, -1e31 if i == 3 else -i)
    return Case(
        "binary_xy_space_padded",
        raw,
        {1: 10},
        {1: ["time", "Ex", "Ey"]},
        {1: [6.3e8, 0.0, -0.0]},
    )


def _multi_packet() -> Case:
    """Two packet ids interleaved, then id 01 redefined with other planes."""
    raw = stream_header()
    raw += header(
        b"[01]",
        '<packet><x type="little_endian_real8" units="us2000"/>'
        '<y type="little_endian_real8" name="a" units=""/></packet>',
    )
    raw += header(
        b"[02]",
        '<packet><x type="little_endian_real8" units="us2000"/>'
        '<y type="little_endian_real4" name="b" units="nT"/>'
        '<y type="little_endian_real4" name="c" units="nT"/></packet>',
    )
    for i in range(6):
        raw += b":01:" + struct.pack("<dd", 1e12 + i * 1e6, float(i))
        raw += b":02:" + struct.pack("<dff", 1e12 + i * 1e6 + 5e5, i, -i)
    raw += header(
        b"[01]",
        '<packet><x type="little_endian_real8" units="us2000"/>'
        '<y type="little_endian_real8" name="z" units="K"/></packet>',
    )
    for i in range(3):
        raw += b":01:" + struct.pack("<dd", 2e12 + i * 1e6, 273.15 + i)
    return Case(
        "multi_packet_redefined",
        raw,
        {1: 9, 2: 6},
        {1: ["time", "z"], 2: ["time", "b", "c"]},
        {1: [1e12, 0.0], 2: [1e12 + 5e5, 0.0, 0.0]},
    )


def _yscan_list() -> Case:
    """An unnamed yscan with yTags as a list (a spectrogram), zFill, comments."""
    tags = [10.0, 100.0, 1000.0, 10000.0]
    raw = stream_header('String:renderer="spectrogram"', pad="spaces")
    raw += header(b"[xx]", '<comment type="taskSize" value="2" source="rdr"/>', pad="spaces")
    raw += header(
        b"[01]",
        '<packet><x type="sun_real8" units="us2000"/>'
        f'<yscan type="sun_real4" nitems="4" yUnits="Hz" zUnits="V**2 m**-2 Hz**-1" '
        f'yTags="{",".join(str(t) for t in tags)}"><properties double:zFill="-1e31"/></yscan>'
        "</packet>",
    )
    for i in range(5):
        raw += b":01:" + struct.pack(">d4f", 6.3e14 + i * 1e6, 1e-10, 2e-10, -1e31, 4e-10)
        if i == 2:
            raw += header(b"[xx]", '<comment type="taskProgress" value="1" source="rdr"/>')
    raw += header(b"[xx]", '<comment type="log:info" value="done" source="rdr"/>')
    return Case(
        "yscan_ytag_list_unnamed",
        raw,
        {1: 5},
        {1: ["time", "yscan"]},
        {1: [6.3e14, [1e-10, 2e-10, -1e31, 4e-10]]},
        [("taskSize", "2"), ("taskProgress", "1"), ("log:info", "done")],
    )


def _yscan_series() -> Case:
    """Two named yscans with yTags as a series (yTagInterval, yTagMin)."""
    raw = stream_header()
    raw += header(
        b"[03]",
        '<packet><x type="little_endian_real8" units="t1970"/>'
        '<yscan type="little_endian_real4" name="E" nitems="3" yUnits="eV" zUnits="counts" '
        'yTagInterval="10" yTagMin="5"/>'
        '<yscan type="little_endian_real4" name="E_err" nitems="3" yUnits="eV" '
        'zUnits="counts" yTagInterval="10" yTagMin="5"/></packet>',
    )
    for i in range(4):
        raw += b":03:" + struct.pack("<d6f", 1.6e9 + i, 1, 2, 3, 0.1, 0.2, 0.3)
    return Case(
        "yscan_ytag_series",
        raw,
        {3: 4},
        {3: ["time", "E", "E_err"]},
        {3: [1.6e9, [1.0, 2.0, 3.0], [0.1, 0.2, 0.3]]},
    )


def _ascii_and_time() -> Case:
    """Text types: a time24 x and ascii planes, as das2_ascii writes them."""
    raw = stream_header('String:title="text"', pad="spaces")
    raw += header(
        b"[01]",
        '<packet><x type="time24" units="us2000"/>'
        '<y type="ascii10" name="density" units="cm**-3"/>'
        '<yscan type="ascii12" name="flux" nitems="2" yUnits="keV" zUnits="" yTags="1,2"/>'
        "</packet>",
        pad="spaces",
    )
    for i in range(3):
        t = f"2020-03-01T00:00:0{i}.250".ljust(23) + " "
        raw += b":01:" + t.encode()
        raw += ascii_value(1.5 + i, 10, False)
        raw += ascii_value(10.0 * i, 12, False) + ascii_value(-2.5, 12, True)
    return Case(
        "ascii_and_time_types",
        raw,
        {1: 3},
        {1: ["time", "density", "flux"]},
        {1: [636_336_000_250_000.0, 1.5, [0.0, -2.5]]},
    )


def _time_x_t1970() -> Case:
    """A time27 x (microseconds) in t1970 units, a day-of-year time text."""
    raw = stream_header()
    raw += header(
        b"[05]",
        '<packet><x type="time27" units="t1970"/>'
        '<y type="little_endian_real8" name="v" units=""/></packet>',
    )
    for i, text in enumerate(["2020-061T00:00:00.000001", "2020-061T00:00:01.000000"]):
        raw += b":05:" + text.ljust(26).encode() + b" " + struct.pack("<d", float(i))
    return Case(
        "time_text_day_of_year",
        raw,
        {5: 2},
        {5: ["time", "v"]},
        {5: [1_583_020_800.000001, 0.0]},
    )


def _no_data() -> Case:
    """Only an exception: nothing in the interval."""
    raw = stream_header(pad="spaces")
    raw += header(
        b"[xx]",
        '<exception type="NoDataInInterval" message="no data between the times"/>',
        pad="spaces",
    )
    return Case("no_data_exception", raw, exceptions=["NoDataInInterval"])


def _server_error_after_data() -> Case:
    """Data, then a ServerError exception (a reader that failed half way)."""
    raw = stream_header()
    raw += header(
        b"[01]",
        '<packet><x type="sun_real8" units="t2000"/><y type="sun_real8" name="y" units=""/>'
        "</packet>",
    )
    raw += b":01:" + struct.pack(">dd", 1.0, 2.0)
    raw += header(b"[xx]", '<exception type="ServerError" message="disk went away"/>')
    return Case(
        "server_error_after_data",
        raw,
        {1: 1},
        {1: ["time", "y"]},
        {1: [1.0, 2.0]},
        exceptions=["ServerError"],
    )


def _das2c_reduced() -> Case:
    """What das2_bin_avgsec -r writes: averages marked BIN_AVG, then .min/.max."""
    raw = stream_header('Datum:xCacheResolution="60 s" Datum:xTagWidth="60 s"', pad="spaces")
    planes = "".join(
        f'<y type="little_endian_real4" name="{n}" units="nT"><properties double:fill="-1e31" '
        f'source="{n}" operation="BIN_AVG"/></y>'
        for n in ("Bx", "By")
    )
    planes += "".join(
        f'<y type="little_endian_real4" name="{n}.{s}" units="nT"><properties '
        f'double:fill="-1e31" source="{n}" operation="BIN_{s.upper()}"/></y>'
        for n in ("Bx", "By")
        for s in ("min", "max")
    )
    raw += header(
        b"[01]",
        f'<packet><x type="little_endian_real8" units="us2000"/>{planes}</packet>',
        pad="spaces",
    )
    for i in range(4):
        raw += b":01:" + struct.pack("<d6f", 3e7 + i * 6e7, i, -i, i - 1, i + 1, -i - 1, -i + 1)
    return Case(
        "das2c_reduced_min_max",
        raw,
        {1: 4},
        {1: ["time", "Bx", "By", "Bx.min", "Bx.max", "By.min", "By.max"]},
        {1: [3e7, 0.0, 0.0, -1.0, 1.0, -1.0, 1.0]},
    )


def corpus(pad=None) -> list[Case]:
    """The cases; `pad(length) -> six characters` overrides every length field."""
    if pad is not None:
        _PADDER.append(pad)
    try:
        return _cases()
    finally:
        _PADDER.clear()


def _cases() -> list[Case]:
    return [
        _binary_xy(),
        _multi_packet(),
        _yscan_list(),
        _yscan_series(),
        _ascii_and_time(),
        _time_x_t1970(),
        _no_data(),
        _server_error_after_data(),
        _das2c_reduced(),
    ]


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "das2-corpus")
    out.mkdir(parents=True, exist_ok=True)
    for case in corpus():
        (out / f"{case.name}.d2s").write_bytes(case.raw)
        print(out / f"{case.name}.d2s")
