"""DSDF files (das2 Data Source Description Files): parse and validate.

One file per dataset, `key = value` lines, `;` comments, values optionally in
single or double quotes, numbered keys (`exampleRange_00`, `cacheLevel_01`,
`param_02`) gathered in order. The dataset's name is its path below the
catalog root without `.dsdf` (e.g. `Examples/Spectrogram`).

Beyond the classic keys, a `reader` here is an argument list (split like a
POSIX shell would split words, but never given to a shell) in which `{python}`
stands for this interpreter and `{dsdf_dir}` for the DSDF's directory, and the
options a client may pass are declared as `param_NN = 'TEMPLATE | text'`,
TEMPLATE being a literal token with at most one placeholder: `<int>`,
`<real>`, `<word>` or a choice `{a,b,c}`.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from nodes.das2.timefmt import TimeTextError, parse_time_text


class DsdfError(ValueError):
    """A DSDF that cannot be used, with the file and line when known."""


PERIODS = ("hourly", "daily", "monthly")
PLACEHOLDERS = ("{python}", "{dsdf_dir}")
_REDUCERS = {  # das2-pyserver reducer programs -> the built-in reducer's mode
    "das2_bin_avgsec": "avg",
    "das2_bin_avg": "avg",
    "avg": "avg",
    "das2_bin_peakavgsec": "minmax",
    "minmax": "minmax",
}
_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NAME_PART_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_DURATION_UNITS = {
    "us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "seconds": 1.0,
    "min": 60.0, "minutes": 60.0, "hr": 3600.0, "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "day": 86400.0, "days": 86400.0, "d": 86400.0,
}  # fmt: skip


@dataclass(frozen=True)
class ParamOption:
    """One option a client may pass to the reader."""

    template: str
    description: str
    pattern: re.Pattern[str]

    def matches(self, token: str) -> bool:
        return self.pattern.fullmatch(token) is not None


@dataclass(frozen=True)
class CacheLevel:
    resolution: float  # seconds; 0 means the reader's own (intrinsic) resolution
    period: str  # one block covers an hour, a day or a month


@dataclass(frozen=True)
class ExampleRange:
    start_us: int
    end_us: int
    label: str = ""
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dsdf:
    name: str
    description: str
    reader: tuple[str, ...]
    directory: str = ""
    reducible: bool = True
    minmax: bool = False
    valid_range: tuple[int, int | None] | None = None  # us1970; end None means "now"
    examples: tuple[ExampleRange, ...] = ()
    cache_levels: tuple[CacheLevel, ...] = ()
    read_access: tuple[str, ...] = ()
    params: tuple[ParamOption, ...] = ()
    live: bool = False
    keys: dict[str, str] = field(default_factory=dict)  # every key as written

    def text(self) -> str:
        """The DSDF as `key = 'value'` lines (for `?server=dsdf`)."""
        lines = [f"; das2 dataset {self.name}"]
        for key, value in self.keys.items():
            quote = "'" if "'" not in value else '"' if '"' not in value else ""
            lines.append(f"{key} = {quote}{value}{quote}")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- lines


def parse_lines(text: str, where: str = "DSDF") -> dict[str, str]:
    """`key = value` lines to an ordered dict; comments and blank lines skipped."""
    keys: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in ";#":
            continue
        key, sep, rest = stripped.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.fullmatch(key):
            raise DsdfError(f"{where}:{number}: expected `key = value`")
        if key in keys:
            raise DsdfError(f"{where}:{number}: {key} given twice")
        keys[key] = _value(rest.strip(), f"{where}:{number}")
    return keys


def _value(rest: str, where: str) -> str:
    if rest[:1] in ("'", '"'):
        end = rest.find(rest[0], 1)
        if end < 0:
            raise DsdfError(f"{where}: unterminated quote")
        after = rest[end + 1 :].strip()
        if after and after[0] != ";":
            raise DsdfError(f"{where}: text after the closing quote")
        return rest[1:end]
    return rest.partition(";")[0].strip()


# ---------------------------------------------------------------- values


def parse_duration(text: str) -> float:
    """'60 s', '1.5 hr', '500 ms', '1 day' (a bare number is seconds) to seconds."""
    parts = text.split()
    if not 1 <= len(parts) <= 2:
        raise DsdfError(f"not a duration: {text!r}")
    try:
        number = float(parts[0])
    except ValueError:
        raise DsdfError(f"not a duration: {text!r}") from None
    scale = _DURATION_UNITS.get(parts[1] if len(parts) == 2 else "s")
    if scale is None or not math.isfinite(number) or number < 0:
        raise DsdfError(f"not a duration: {text!r}")
    return number * scale


def parse_range(text: str, allow_now: bool = False) -> tuple[int, int | None]:
    """'2004-001 to 2017-258 UTC' to (start, end) us1970; end None for 'now'."""
    start_text, sep, end_text = text.partition(" to ")
    if not sep:
        raise DsdfError(f"not a time range (START to END): {text!r}")
    end_text = end_text.strip()
    if end_text.endswith(" UTC"):
        end_text = end_text[:-4].strip()
    try:
        start = parse_time_text(start_text.strip())
        end = None if allow_now and end_text.lower() == "now" else parse_time_text(end_text)
    except TimeTextError as exc:
        raise DsdfError(f"bad time range {text!r}: {exc}") from None
    if end is not None and end <= start:
        raise DsdfError(f"time range ends before it starts: {text!r}")
    return start, end


def compile_param(template: str) -> re.Pattern[str]:
    """A parameter template to the pattern that accepted tokens must match in full.
    Accepted tokens can only hold characters that mean nothing to a shell."""
    if not re.fullmatch(r"[A-Za-z0-9_.=:+,/<>{}\-]+", template) or ".." in template:
        raise DsdfError(f"parameter template {template!r} holds characters not allowed")
    holes = re.findall(r"<[a-z]+>|\{[^}]*\}", template)
    if len(holes) > 1:
        raise DsdfError(f"parameter template {template!r} has more than one placeholder")
    pattern = ""
    for piece in re.split(r"(<[a-z]+>|\{[^}]*\})", template):
        if piece == "<int>":
            pattern += r"[+-]?[0-9]{1,18}"
        elif piece == "<real>":
            pattern += r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?"
        elif piece == "<word>":
            pattern += r"[A-Za-z0-9_]{1,64}"
        elif piece.startswith("{"):
            choices = piece[1:-1].split(",")
            if not all(re.fullmatch(r"[A-Za-z0-9_.+\-]+", c) for c in choices):
                raise DsdfError(f"bad choice list in parameter template {template!r}")
            pattern += "(?:" + "|".join(re.escape(c) for c in choices) + ")"
        elif re.search(r"[<>{}]", piece):
            raise DsdfError(f"unknown placeholder in parameter template {template!r}")
        else:
            pattern += re.escape(piece)
    return re.compile(pattern)


def _flag(value: str, key: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no", ""):
        return False
    raise DsdfError(f"{key} must be 1 or 0, got {value!r}")


def _numbered(keys: dict[str, str], prefix: str) -> list[tuple[str, str]]:
    found = [(k, v) for k, v in keys.items() if re.fullmatch(rf"{prefix}_[0-9]{{2}}", k)]
    return sorted(found)


def check_name(name: str) -> str:
    """A dataset name: '/'-separated parts of letters, digits, '_', '.', '-'; never '..'."""
    parts = name.split("/")
    if (
        not name
        or len(name) > 200
        or not all(_NAME_PART_RE.fullmatch(p) and p != ".." for p in parts)
    ):
        raise DsdfError(f"bad dataset name {name[:60]!r}")
    return name


# ---------------------------------------------------------------- the dataset


def parse_dsdf(text: str, name: str, directory: str = "", where: str = "") -> Dsdf:
    """A DSDF's text to a checked `Dsdf`; DsdfError naming the problem otherwise."""
    where = where or name
    check_name(name)
    keys = parse_lines(text, where)
    try:
        return _build(keys, name, directory)
    except DsdfError as exc:
        raise DsdfError(f"{where}: {exc}") from None


def _build(keys: dict[str, str], name: str, directory: str) -> Dsdf:
    for required in ("description", "reader"):
        if not keys.get(required, "").strip():
            raise DsdfError(f"{required} is required")
    if keys.get("das2Stream", "1").strip() not in ("1", "true"):
        raise DsdfError("only das2 stream readers are served (das2Stream = 1)")
    reader = _reader(keys["reader"])
    reducible, minmax = _reducer(keys)
    params = tuple(_param(k, v) for k, v in _numbered(keys, "param"))
    valid = parse_range(keys["validRange"], allow_now=True) if "validRange" in keys else None
    examples = []
    for key, value in _numbered(keys, "exampleRange"):
        range_text, _, label = value.partition("|")
        start, end = parse_range(range_text.strip())
        ex_params = tuple(keys.get(key.replace("Range", "Params"), "").split())
        for token in ex_params:
            if not any(p.matches(token) for p in params):
                raise DsdfError(f"{key}: example parameter {token!r} is not a declared param")
        examples.append(ExampleRange(start, end, label.strip(), ex_params))
    levels = []
    for key, value in _numbered(keys, "cacheLevel"):
        res_text, sep, period = (s.strip() for s in value.partition("|"))
        if not sep or period not in PERIODS:
            raise DsdfError(f"{key}: expected 'RESOLUTION | {'/'.join(PERIODS)}'")
        resolution = 0.0 if res_text == "intrinsic" else parse_duration(res_text)
        if resolution == 0.0 and res_text != "intrinsic":
            raise DsdfError(f"{key}: a zero resolution is written 'intrinsic'")
        if any(lv.resolution == resolution for lv in levels):
            raise DsdfError(f"{key}: resolution {res_text} given twice")
        levels.append(CacheLevel(resolution, period))
    if levels and not reducible and any(lv.resolution for lv in levels):
        raise DsdfError("a dataset that is not reducible can only cache at 'intrinsic'")
    access = tuple(a.strip() for a in keys.get("readAccess", "").split("|") if a.strip())
    return Dsdf(
        name=name,
        description=keys["description"].strip(),
        reader=reader,
        directory=directory,
        reducible=reducible,
        minmax=minmax,
        valid_range=valid,
        examples=tuple(examples),
        cache_levels=tuple(sorted(levels, key=lambda lv: lv.resolution)),
        read_access=access,
        params=params,
        live=_flag(keys.get("live", "0"), "live"),
        keys=dict(keys),
    )


def _reader(value: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(value, comments=False, posix=True))
    except ValueError as exc:
        raise DsdfError(f"reader: {exc}") from None
    if not argv:
        raise DsdfError("reader is empty")
    for token in argv:
        for hole in re.findall(r"\{[^}]*\}", token):
            if hole not in PLACEHOLDERS:
                raise DsdfError(f"reader: unknown placeholder {hole}")
        if "\x00" in token:
            raise DsdfError("reader: NUL character")
    return argv


def _reducer(keys: dict[str, str]) -> tuple[bool, bool]:
    if _flag(keys.get("not_reducible", "0"), "not_reducible"):
        return False, False
    name = keys.get("reducer", "das2_bin_avgsec").strip()
    if name in ("none", "not_reducible"):
        return False, False
    if name not in _REDUCERS:
        raise DsdfError(f"reducer {name!r} unknown (the built-in reducer does {sorted(_REDUCERS)})")
    return True, _REDUCERS[name] == "minmax"


def _param(key: str, value: str) -> ParamOption:
    template, _, description = (s.strip() for s in value.partition("|"))
    return ParamOption(template, description, compile_param(template))


def load_dsdf(path: Path, root: Path) -> Dsdf:
    """Read one DSDF file; its name is its path below `root` without `.dsdf`."""
    rel = path.resolve().relative_to(root.resolve())
    name = rel.with_suffix("").as_posix()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DsdfError(f"{rel}: cannot read ({exc})") from None
    return parse_dsdf(text, name, str(path.resolve().parent), str(rel))


def load_catalog(root: Path) -> tuple[dict[str, Dsdf], list[str]]:
    """Every `*.dsdf` below `root`: the datasets, and one message per file refused
    (a bad file is left out; the others are still served)."""
    datasets: dict[str, Dsdf] = {}
    errors: list[str] = []
    for path in sorted(root.rglob("*.dsdf")):
        try:
            ds = load_dsdf(path, root)
        except DsdfError as exc:
            errors.append(str(exc))
            continue
        datasets[ds.name] = ds
    return datasets, errors
