"""The SuperDARN radar table and the radar connection config file.

Radar facts (station id, position, boresight, number of beams, maximum range
gates, operating status) are the current lines of the SuperDARN hardware files
`hdw.dat.<code>` (https://github.com/SuperDARN/hdw, maintained by the SuperDARN
Data Standards Working Group; format described in that repository's README).
Radar names are those of the files' headers; operating (PI) institutions are
those listed by pyDARN (https://github.com/SuperDARN/pydarn, LGPL-3.0) and
SuperDARN's public radar overview. Operator None means the source did not
name one. Positions are geographic degrees (south and west negative);
boresight is degrees east of geographic north.
"""

from __future__ import annotations

import json
import pathlib
import re
import tomllib
from dataclasses import asdict, dataclass
from typing import Any

ATTRIBUTION = (
    "Radar positions, boresights and beam counts: SuperDARN hardware files "
    "(github.com/SuperDARN/hdw, SuperDARN Data Standards Working Group); "
    "names and operators: pyDARN radar list (github.com/SuperDARN/pydarn) and SuperDARN."
)


@dataclass(frozen=True)
class Radar:
    stid: int
    code: str
    name: str
    operator: str | None
    lat: float
    lon: float
    boresight: float
    beams: int
    gates: int
    active: bool

    @property
    def hemisphere(self) -> str:
        return "north" if self.lat >= 0 else "south"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hemisphere": self.hemisphere}


_VT = "Virginia Tech"
_USASK = "University of Saskatchewan"
_UAF = "University of Alaska Fairbanks"
_LEICESTER = "University of Leicester"
_LATROBE = "La Trobe University"
_BAS = "British Antarctic Survey"
_NIPR = "National Institute of Polar Research"
_NAGOYA = "Nagoya University"
_DARTMOUTH = "Dartmouth College"
_INAF = "Institute for Space Astrophysics and Planetology (INAF-IAPS)"

# stid, code, name, operator, lat, lon, boresight, beams, max gates, active
_TABLE: tuple[tuple, ...] = (
    (1, "gbr", "Goose Bay", _VT, 53.31754, -60.46425, 5.0, 16, 100, True),
    (2, "sch", "Schefferville", "CNRS/LPCE", 54.80000, -66.80000, 15.0, 16, 75, False),
    (3, "kap", "Kapuskasing", _VT, 49.39260, -82.32185, -12.0, 16, 100, True),
    (4, "hal", "Halley", _BAS, -75.62000, -26.21900, 165.0, 16, 75, True),
    (5, "sas", "Saskatoon", _USASK, 52.15750, -106.53031, 23.1, 16, 225, True),
    (6, "pgr", "Prince George", _USASK, 53.98000, -122.59000, -5.0, 16, 225, True),
    (7, "kod", "Kodiak", _UAF, 57.61217, -152.19126, 30.0, 16, 75, True),
    (8, "sto", "Stokkseyri", "Lancaster University", 63.86048, -21.03157, -59.0, 16, 75, False),
    (9, "pyk", "Pykkvibaer", _LEICESTER, 63.77260, -20.54480, 30.0, 16, 75, False),
    (10, "han", "Hankasalmi", _LEICESTER, 62.31356, 26.60559, -12.0, 16, 75, False),
    (
        11,
        "san",
        "SANAE",
        "South African National Space Agency",
        -71.67714,
        -2.82820,
        173.2,
        16,
        75,
        True,
    ),
    (12, "sys", "Syowa South", _NIPR, -69.01010, 39.58934, 159.0, 16, 75, True),
    (13, "sye", "Syowa East", _NIPR, -69.00825, 39.59905, 106.5, 16, 75, True),
    (14, "tig", "TIGER (Bruny Island)", _LATROBE, -43.38000, 147.23000, 180.0, 16, 75, True),
    (15, "ker", "Kerguelen", "IRAP/CNRS/IPEV", -49.35072, 70.26650, 168.0, 16, 75, True),
    (
        16,
        "ksr",
        "King Salmon",
        "National Institute of Information and Communications Technology",
        58.69213,
        -156.65896,
        -20.0,
        16,
        75,
        True,
    ),
    (18, "unw", "Unwin", _LATROBE, -46.51330, 168.37570, 227.9, 16, 75, False),
    (
        19,
        "zho",
        "Zhongshan",
        "Polar Research Institute of China",
        -69.37900,
        76.37800,
        72.5,
        16,
        75,
        True,
    ),
    (20, "mcm", "McMurdo", _UAF, -77.83781, 166.65694, 263.4, 16, 75, True),
    (21, "fir", "Falkland Islands", _BAS, -51.83140, -58.97930, 178.3, 16, 110, True),
    (22, "sps", "South Pole Station", _UAF, -89.99500, 118.29100, 75.7, 16, 75, True),
    (24, "bpk", "Buckland Park", _LATROBE, -34.62000, 138.46000, 146.5, 22, 220, True),
    (
        32,
        "wal",
        "Wallops Island",
        "JHU Applied Physics Laboratory",
        37.85730,
        -75.51020,
        35.9,
        24,
        110,
        True,
    ),
    (33, "bks", "Blackstone", _VT, 37.10000, -77.95000, -40.0, 24, 110, True),
    (40, "hok", "Hokkaido East", _NAGOYA, 43.53187, 143.61456, 30.0, 16, 110, True),
    (41, "hkw", "Hokkaido West", _NAGOYA, 43.53736, 143.60729, -30.0, 16, 110, True),
    (
        50,
        "jme",
        "Jiamusi East",
        "National Space Science Center, Chinese Academy of Sciences",
        46.81600,
        130.40200,
        44.0,
        24,
        100,
        True,
    ),
    (51, "lje", "Longjing East", None, 42.82000, 129.41900, 44.0, 24, 100, True),
    (52, "ljw", "Longjing West", None, 42.82200, 129.41700, -34.0, 24, 100, True),
    (53, "sze", "Siziwanqi East", None, 41.83266, 111.93369, 42.0, 24, 100, True),
    (54, "szw", "Siziwanqi West", None, 41.83290, 111.93090, -36.0, 24, 100, True),
    (55, "hje", "Hejing East", None, 42.88500, 83.70900, 39.0, 24, 100, True),
    (56, "hjw", "Hejing West", None, 42.88500, 83.70900, -39.0, 24, 100, True),
    (64, "inv", "Inuvik", _USASK, 68.41270, -133.76930, 29.5, 16, 225, True),
    (65, "rkn", "Rankin Inlet", _USASK, 62.82840, -92.11281, 5.7, 16, 225, True),
    (66, "cly", "Clyde River", _USASK, 70.48700, -68.50400, -55.62, 16, 100, True),
    (
        90,
        "lyr",
        "Longyearbyen",
        "The University Centre in Svalbard",
        78.15339,
        16.07335,
        23.7,
        16,
        110,
        True,
    ),
    (96, "dce", "Dome C East", _INAF, -75.08966, 123.35105, 115.0, 16, 75, True),
    (97, "dcn", "Dome C North", _INAF, -75.08656, 123.35967, -28.0, 16, 75, True),
    (202, "icw", "Iceland West", None, 63.77390, -20.54610, -52.0, 24, 100, True),
    (203, "ice", "Iceland East", None, 63.77440, -20.54180, 23.0, 24, 100, True),
    (204, "fhw", "Fort Hays West", _VT, 38.85909, -99.39060, -25.0, 22, 110, True),
    (205, "fhe", "Fort Hays East", _VT, 38.85876, -99.38843, 45.0, 22, 110, True),
    (206, "cvw", "Christmas Valley West", _DARTMOUTH, 43.27101, -120.35857, -20.0, 24, 110, True),
    (207, "cve", "Christmas Valley East", _DARTMOUTH, 43.27051, -120.35641, 54.0, 24, 110, True),
    (208, "adw", "Adak Island West", _UAF, 51.89000, -176.63000, -28.0, 22, 110, True),
    (209, "ade", "Adak Island East", _UAF, 51.89000, -176.63000, 46.0, 22, 110, True),
    (512, "ekb", "Ekaterinburg", None, 56.43570, 58.57140, 30.0, 16, 110, True),
)

RADARS: dict[str, Radar] = {row[1]: Radar(*row) for row in _TABLE}
BY_STID: dict[int, Radar] = {r.stid: r for r in RADARS.values()}


def radar(code: str) -> Radar | None:
    return RADARS.get(code)


def radar_by_stid(stid: int) -> Radar | None:
    return BY_STID.get(stid)


# ------------------------------------------------------------ config file


class RadarConfigError(ValueError):
    """The radar connection config is malformed."""


@dataclass(frozen=True)
class RadarEndpoint:
    """Where one radar (or one channel of it) serves its realtime feed."""

    code: str
    host: str
    port: int
    channel: str | None = None

    @property
    def key(self) -> str:
        """Unique name of this connection: the code, plus the channel if any."""
        return self.code if self.channel is None else f"{self.code}.{self.channel}"

    @property
    def radar(self) -> Radar | None:
        return RADARS.get(self.code)


_CODE = re.compile(r"^[a-z][a-z0-9]{1,7}$")
_CHANNEL = re.compile(r"^[a-z0-9]{1,8}$")
_HOST = re.compile(r"^[A-Za-z0-9.:_\-\[\]]{1,255}$")


def parse_radar_config(data: Any) -> list[RadarEndpoint]:
    """Endpoints from a parsed config. Accepted shapes (as the old
    `radars.config.json`, keyed by radar code):

        {"sas": {"host": "sas.example.org", "port": 1401, "channel": "a"}, ...}
        {"sas": "sas.example.org:1401", ...}
        {"radars": [{"code": "sas", "host": ..., "port": ..., "channel": ...}, ...]}
        [{"code": "sas", ...}, ...]
    """
    if isinstance(data, dict) and set(data) == {"radars"}:
        data = data["radars"]
    entries: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        entries = list(data.items())
    elif isinstance(data, list):
        for i, item in enumerate(data):
            if not isinstance(item, dict) or "code" not in item:
                raise RadarConfigError(f"radar entry {i} must be an object with a 'code'")
            entries.append((item["code"], {k: v for k, v in item.items() if k != "code"}))
    else:
        raise RadarConfigError("radar config must be an object or a list")
    endpoints: list[RadarEndpoint] = []
    seen: set[str] = set()
    for code, spec in entries:
        endpoint = _endpoint(code, spec)
        if endpoint.key in seen:
            raise RadarConfigError(f"radar {endpoint.key!r} is configured twice")
        seen.add(endpoint.key)
        endpoints.append(endpoint)
    return endpoints


def load_radar_config(path: str | pathlib.Path) -> list[RadarEndpoint]:
    """Read a JSON (or, by suffix, TOML) radar config file."""
    path = pathlib.Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RadarConfigError(f"{path}: {exc}") from None
    try:
        return parse_radar_config(data)
    except RadarConfigError as exc:
        raise RadarConfigError(f"{path}: {exc}") from None


def _endpoint(code: Any, spec: Any) -> RadarEndpoint:
    if not isinstance(code, str) or not _CODE.match(code):
        raise RadarConfigError(f"bad radar code {code!r} (2-8 lower-case letters/digits)")
    if isinstance(spec, str):
        host, sep, port = spec.rpartition(":")
        if not sep:
            raise RadarConfigError(f"radar {code!r}: address {spec!r} must be host:port")
        spec = {"host": host, "port": port}
    if not isinstance(spec, dict):
        raise RadarConfigError(f"radar {code!r}: expected an object or 'host:port'")
    unknown = set(spec) - {"host", "port", "channel"}
    if unknown:
        raise RadarConfigError(f"radar {code!r}: unknown keys {sorted(unknown)}")
    host = spec.get("host")
    if not isinstance(host, str) or not _HOST.match(host):
        raise RadarConfigError(f"radar {code!r}: bad host {host!r}")
    port = spec.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise RadarConfigError(f"radar {code!r}: bad port {spec.get('port')!r}")
    channel = spec.get("channel")
    if channel is not None:
        if isinstance(channel, int) and not isinstance(channel, bool) and 0 <= channel <= 255:
            channel = str(channel)
        if not isinstance(channel, str) or not _CHANNEL.match(channel):
            raise RadarConfigError(f"radar {code!r}: bad channel {spec.get('channel')!r}")
    return RadarEndpoint(code=code, host=host, port=port, channel=channel)
