"""The request parameters of each HAPI endpoint, checked strictly (specification §3).

A HAPI server must refuse what it does not understand rather than ignore it:
an unknown request parameter is 1401, a repeated one 1400, and every value is
checked (times 1402/1403/1404, `format` 1409, `include` 1410, parameter lists
1407/1411, `resolve_references` 1412, `depth` 1413). HAPI 3 names (`dataset`,
`start`, `stop`) and the HAPI 2 ones (`id`, `time.min`, `time.max`) are both
accepted, but not both for the same thing.

The mesh's extras on `/data` carry the `x_` prefix the specification reserves
for extensions: `x_stride` (the node's `min_stride`, seconds or an ISO 8601
duration) and `x_reduce` (`mean` or `minmax`, with `x_stride`).

Pure functions: text in, frozen dataclasses or HapiError out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from consumers.hapi.status import HapiError
from consumers.hapi.times import BadTime, parse_seconds, parse_time

FORMATS = ("csv", "binary", "json")
REDUCTIONS = ("mean", "minmax")
MAX_QUERY = 64 * 1024  # bytes of query string: a parameter list of thousands of names
MAX_PAIRS = 32

_ALIASES = {"id": "dataset", "time.min": "start", "time.max": "stop"}
ALLOWED = {
    "about": (),
    "capabilities": (),
    "catalog": ("depth", "resolve_references"),
    "info": ("dataset", "id", "parameters", "resolve_references"),
    "data": (
        "dataset",
        "id",
        "start",
        "time.min",
        "stop",
        "time.max",
        "parameters",
        "include",
        "format",
        "x_stride",
        "x_reduce",
    ),
}


@dataclass(frozen=True)
class CatalogRequest:
    depth: str = "dataset"


@dataclass(frozen=True)
class InfoRequest:
    dataset: str
    parameters: tuple[str, ...] | None  # None: every parameter


@dataclass(frozen=True)
class DataRequest:
    dataset: str
    parameters: tuple[str, ...] | None
    start: float  # UNIX seconds, inclusive
    stop: float  # exclusive
    format: str = "csv"
    header: bool = False
    stride: float | None = None  # x_stride
    reduce: str = "mean"  # x_reduce


def pairs(query: bytes | str) -> list[tuple[str, str]]:
    """`a=1&b=2` to pairs; percent-escapes decoded, `+` kept (dataset ids may hold it)."""
    if isinstance(query, bytes):
        if len(query) > MAX_QUERY:
            raise HapiError(1400, "the query string is too long")
        try:
            query = query.decode("ascii")
        except UnicodeDecodeError:
            raise HapiError(1400, "the query string must be URL-encoded") from None
    if len(query) > MAX_QUERY:
        raise HapiError(1400, "the query string is too long")
    out: list[tuple[str, str]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        if len(out) >= MAX_PAIRS:
            raise HapiError(1400, "too many request parameters")
        name, _, value = piece.partition("=")
        try:
            out.append((unquote(name, errors="strict"), unquote(value, errors="strict")))
        except UnicodeDecodeError:
            raise HapiError(1400, "a request parameter is not UTF-8") from None
    return out


def _arguments(endpoint: str, query: bytes | str) -> dict[str, str]:
    """The endpoint's request parameters by their HAPI 3 names; unknown (1401) or
    repeated (1400) ones refused."""
    allowed = ALLOWED[endpoint]
    out: dict[str, str] = {}
    for name, value in pairs(query):
        if name not in allowed:
            raise HapiError(
                1401, f"{endpoint} takes {', '.join(allowed) or 'no request parameters'}"
            )
        key = _ALIASES.get(name, name)
        if key in out:
            raise HapiError(1400, f"{key} is given more than once")
        out[key] = value
    return out


def no_arguments(endpoint: str, query: bytes | str) -> None:
    _arguments(endpoint, query)


def catalog(query: bytes | str) -> CatalogRequest:
    args = _arguments("catalog", query)
    depth = args.get("depth", "dataset")
    if depth not in ("dataset", "all"):
        raise HapiError(1413, "depth is dataset or all")
    _references(args)
    return CatalogRequest(depth)


def info(query: bytes | str) -> InfoRequest:
    args = _arguments("info", query)
    _references(args)
    return InfoRequest(_dataset(args), _parameters(args))


def data(query: bytes | str) -> DataRequest:
    args = _arguments("data", query)
    dataset = _dataset(args)
    start = _time(args, "start", 1402)
    stop = _time(args, "stop", 1403)
    if start >= stop:
        raise HapiError(1404)
    fmt = args.get("format", "") or "csv"
    if fmt not in FORMATS:
        raise HapiError(1409, f"formats are {', '.join(FORMATS)}")
    include = args.get("include", "")
    if include not in ("", "header"):
        raise HapiError(1410, "include takes only header")
    stride = None
    if "x_stride" in args:
        try:
            stride = parse_seconds(args["x_stride"])
        except ValueError:
            raise HapiError(
                1400, "x_stride is a positive number of seconds or an ISO 8601 duration"
            ) from None
    reduce = args.get("x_reduce", "mean")
    if reduce not in REDUCTIONS:
        raise HapiError(1400, f"x_reduce is {' or '.join(REDUCTIONS)}")
    if "x_reduce" in args and stride is None:
        raise HapiError(1400, "x_reduce needs x_stride")
    return DataRequest(
        dataset, _parameters(args), start, stop, fmt, include == "header", stride, reduce
    )


def _dataset(args: dict[str, str]) -> str:
    dataset = args.get("dataset", "")
    if not dataset:
        raise HapiError(1400, "dataset is required")
    if len(dataset) > 1000:
        raise HapiError(1406)
    return dataset


def _parameters(args: dict[str, str]) -> tuple[str, ...] | None:
    text = args.get("parameters", "")
    if not text:  # absent or `parameters=`: every parameter
        return None
    return tuple(text.split(","))


def _time(args: dict[str, str], name: str, code: int) -> float:
    text = args.get(name)
    if text is None:
        raise HapiError(code, f"{name} is required")
    try:
        return parse_time(text)
    except BadTime as exc:
        raise HapiError(code, str(exc)) from None


def _references(args: dict[str, str]) -> None:
    if args.get("resolve_references", "true") not in ("true", "false"):
        raise HapiError(1412, "resolve_references is true or false")


def select(names: Sequence[str], asked: tuple[str, ...] | None) -> list[str]:
    """The parameters a request asks for, time first, in the dataset's order.

    `names` is the dataset's full list, time first. Unknown names are 1407;
    a repeated name or one out of the dataset's order is 1411."""
    if asked is None:
        return list(names)
    position = {n: i for i, n in enumerate(names)}
    last = -1
    seen: set[str] = set()
    for name in asked:
        if name not in position:
            raise HapiError(1407)
        if name in seen:
            raise HapiError(1411, "a parameter is named twice")
        seen.add(name)
        if position[name] <= last:
            raise HapiError(1411, "parameters must follow the order of the info response")
        last = position[name]
    return [names[0], *(n for n in asked if n != names[0])]
