"""How das2C's dataset builder (what das2py loads streams with) turns a das2.2
packet header into dimensions, modelled in Python.

das2py builds over das2C and cannot be installed here: it needs das2C's
headers and static library (`das2/util.h`, `libdas2.3.a`), which neither PyPI
nor Debian ships (`pip install das2py` stops at "das2/util.h: No such file or
directory"). So the properties das2py depends on are checked structurally,
with the builder's rules (das2C `builder.c`, read, not copied):

- an unnamed x plane is `time` (`X` when its units are not a time);
- a plane with `source=S` joins the dimension of the plane that named S as its
  source before; else it makes a dimension named after the plane, cut at the
  first `.` when it has a source (`Bx.min` -> `Bx`), or its own name;
- in a yscan packet an unnamed plane takes the name of the plane before it,
  and the yTags make one coordinate dimension (`frequency`, `offset`,
  `energy` or `ytags` by their units);
- `name=""` reads as no name;
- two dimensions of one name are refused ("A dimension named Bx already
  exists"), as are two arrays of one name (the array of `a.b` is `a_b`).

The role of a plane in its dimension comes from `operation`: BIN_AVG is the
mean, BIN_MIN / BIN_MAX the extremes, none the centre; two planes with one
role in one dimension are refused too.
"""

from __future__ import annotations

from nodes.das2.stream import PacketHeader
from nodes.das2.timefmt import seconds_per_unit


class Das2cLoadError(ValueError):
    """What das2C's builder would refuse."""


_ROLES = {"BIN_AVG": "mean", "BIN_MAX": "max", "BIN_MIN": "min"}


def _ytag_dim(units: str) -> str:
    u = units.strip()
    if u.lower().endswith("hz"):
        return "frequency"
    if seconds_per_unit(u) is not None or u in ("s", "ms", "us"):
        return "offset"
    if u.lower().endswith("ev"):
        return "energy"
    return "ytags"


def dimensions(header: PacketHeader) -> dict[str, dict[str, str]]:
    """{dimension: {role: array}} as das2C builds them; Das2cLoadError when it
    would refuse the header."""
    dims: dict[str, dict[str, str]] = {}
    sources: dict[str, str] = {}  # source property -> dimension it made
    arrays: set[str] = set()
    yscan = any(p.kind == "yscan" for p in header.planes)
    previous: str | None = None

    def make(name: str) -> dict[str, str]:
        if name in dims:
            raise Das2cLoadError(f"A dimension named {name} already exists")
        dims[name] = {}
        return dims[name]

    def array(name: str) -> str:
        name = name.replace(".", "_")
        if name in arrays:
            raise Das2cLoadError(f"An array named {name} already exists")
        arrays.add(name)
        return name

    for plane in header.planes:
        name: str | None = plane.name or None
        if yscan and name is None:
            name = previous  # the builder keeps the last plane id it saw
        if plane.kind == "x" and name is None:
            is_time = plane.type.kind == "time" or seconds_per_unit(plane.units) is not None
            name = "time" if is_time else "X"
        if name is None:
            raise Das2cLoadError(f"an unnamed <{plane.kind}> plane")
        previous = name
        props = plane.properties
        source = props.get("source", ("", ""))[1] or None
        role = _ROLES.get(props.get("operation", ("", ""))[1], "center")
        if plane.kind == "yscan" and _ytag_dim(plane.y_units) not in dims:
            make(_ytag_dim(plane.y_units))["center"] = array(_ytag_dim(plane.y_units))
        if source is not None and source in sources:
            dim = dims[sources[source]]
        else:
            dot = name.find(".")
            dim_name = name[:dot] if source is not None and dot > 0 else name
            dim = make(dim_name)
            if source is not None:
                sources[source] = dim_name
        if role in dim:
            raise Das2cLoadError(f"two {role} variables in the dimension of {name}")
        dim[role] = array(name)
    return dims
