"""A node kind's settings, declared once as a class.

One `Section` subclass per node kind lists its settings; everything else is
derived from it, so a key cannot exist in one place and be missing in another:

- the TOML section `[<section>]` and the variables `OBSMESH_<SECTION>_<KEY>`
  (resolved by `obsmesh.config.settings`, which refuses unknown keys);
- the command-line flags of `obsmesh node KIND` (`add_arguments`, `from_args`);
- validation (`check` per setting, `validate` for what spans several keys);
- the documented table (`table`, printed by `obsmesh kinds --settings`).

    class Settings(Section):
        section = "sensors"
        interval = Setting(1.0, "seconds between readings", flag=True, check=POSITIVE)

    options = Settings.resolve(path, args=args, mesh=mesh)   # a plain dict, checked

Values are coerced to the type of their default (config._coerce): a list
default takes comma-separated text from a variable, a number takes "7".
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from obsmesh import config


@dataclass(frozen=True)
class Check:
    """A rule a value must follow: `ok(value)`, and what the value must be, in words."""

    ok: Callable[[Any], bool]
    what: str


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


POSITIVE = Check(lambda v: _number(v) and v > 0, "a positive number")
NOT_NEGATIVE = Check(lambda v: _number(v) and v >= 0, "a number >= 0")
PORT = Check(lambda v: isinstance(v, int) and 0 <= v <= 65535, "a TCP port (0-65535)")


def at_least(low: float) -> Check:
    return Check(lambda v: _number(v) and v >= low, f"a number >= {low}")


def between(low: float, high: float) -> Check:
    return Check(lambda v: _number(v) and low <= v <= high, f"a number from {low} to {high}")


@dataclass(frozen=True)
class Setting:
    """One key of a section.

    `flag`: True for `--key-with-dashes`, a string for that flag, False for none.
    `repeat`: the flag may be given several times (the setting is a list).
    `choices`: the only values allowed. `check`: a rule the value must follow.
    """

    default: Any
    help: str
    flag: bool | str = False
    repeat: bool = False
    choices: tuple[Any, ...] | None = None
    check: Check | None = None
    metavar: str | None = None
    key: str = ""  # filled in by the class that declares it

    def __set_name__(self, owner: type, name: str) -> None:
        object.__setattr__(self, "key", name)

    @property
    def option(self) -> str | None:
        """The command-line flag, or None."""
        if self.flag is True:
            return "--" + self.key.replace("_", "-")
        return self.flag or None

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value`, or None."""
        if self.choices is not None and value not in self.choices:
            return f"{self.key} must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        if self.check is not None and not self.check.ok(value):
            return f"{self.key} must be {self.check.what}, got {value!r}"
        return None


class Section:
    """The settings of one TOML section; subclass it and declare `Setting`s."""

    section: ClassVar[str] = ""
    _declared: ClassVar[dict[str, Setting]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared: dict[str, Setting] = {}
        for klass in reversed(cls.__mro__):
            declared.update({k: v for k, v in vars(klass).items() if isinstance(v, Setting)})
        cls._declared = declared

    # -- what the class holds ----------------------------------------------------
    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """Every setting, in the order declared."""
        return dict(cls._declared)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            k: list(s.default) if isinstance(s.default, list) else s.default
            for k, s in cls._declared.items()
        }

    @classmethod
    def env_name(cls, key: str) -> str:
        return f"OBSMESH_{cls.section.upper()}_{key.upper()}"

    # -- the command line --------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per setting that has one; help says the default and the variable."""
        for key, s in cls._declared.items():
            option = s.option
            if option is None:
                continue
            kw: dict[str, Any] = {"dest": key, "default": None, "help": cls._flag_help(s)}
            if s.metavar:
                kw["metavar"] = s.metavar
            if s.choices is not None:
                kw["choices"] = s.choices
            if isinstance(s.default, bool):
                kw["action"] = argparse.BooleanOptionalAction
            elif s.repeat:
                kw["action"] = "append"
            elif isinstance(s.default, int | float):
                kw["type"] = type(s.default)
            parser.add_argument(option, **kw)
        cls.extra_arguments(parser)

    @classmethod
    def _flag_help(cls, s: Setting) -> str:
        default = s.default if s.default not in ("", [], None) else "none"
        return f"{s.help} (default {default}; {cls.env_name(s.key)})".replace("%", "%%")

    @classmethod
    def extra_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Flags that set several keys at once (see `from_args`); none by default."""

    @classmethod
    def from_args(cls, args: argparse.Namespace | None) -> dict[str, Any]:
        """The values given on the command line (a flag not given is None: not an override)."""
        if args is None:
            return {}
        return {k: getattr(args, k, None) for k, s in cls._declared.items() if s.option}

    # -- resolving ---------------------------------------------------------------
    @classmethod
    def resolve(
        cls,
        path: str | None = None,
        *,
        args: argparse.Namespace | None = None,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        mesh: Mapping[str, Any] | None = None,
        complete: bool = True,
    ) -> dict[str, Any]:
        """Defaults, then the TOML file, `OBSMESH_<SECTION>_*`, the command line and
        `overrides`; every value checked. ConfigError names each bad key.
        `complete=False` skips `validate` (a demo recipe's flags supply the rest)."""
        given = {**cls.from_args(args), **(overrides or {})}
        unknown = sorted(k for k, v in given.items() if v is not None and k not in cls._declared)
        if unknown:
            raise config.ConfigError(f"[{cls.section}] has no setting {', '.join(unknown)}")
        try:
            values = config.settings(cls.defaults(), cls.section, path, environ, given)
        except config.ConfigError as exc:
            named = f"[{cls.section}]" in str(exc) or str(exc).startswith("config file")
            where = "" if named else f"[{cls.section}] "
            raise config.ConfigError(f"{where}{exc}") from None
        try:
            cls.check(values)
            if not complete:
                return values
            return cls.validate(values, mesh if mesh is not None else config.mesh(path))
        except config.ConfigError:
            raise
        except ValueError as exc:
            raise config.ConfigError(f"[{cls.section}] {exc}") from None

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> None:
        """ValueError naming every value that breaks its setting's rule (nodes built
        in-process, without `resolve`, call this too)."""
        problems = [p for k, s in cls._declared.items() if (p := s.problem(values[k]))]
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def validate(cls, values: dict[str, Any], mesh: Mapping[str, Any]) -> dict[str, Any]:
        """Rules that span keys, and values derived from others or from the mesh
        settings (raise ValueError with a message); returns the final values."""
        return values

    # -- documentation -------------------------------------------------------------
    @classmethod
    def table(cls) -> str:
        """The Markdown table of every setting (`obsmesh kinds --settings`)."""
        rows = [
            f"Section `[{cls.section}]`:",
            "",
            "| key | variable | flag | default | meaning |",
            "|---|---|---|---|---|",
        ]
        for key, s in cls._declared.items():
            meaning = s.help
            if s.choices is not None:
                meaning += f" (one of {', '.join(map(str, s.choices))})"
            elif s.check is not None:
                meaning += f" ({s.check.what})"
            flag = f"`{s.option}`" + (" (repeatable)" if s.repeat else "") if s.option else ""
            default = "" if s.default in ("", None, []) else f"`{s.default!r}`"
            meaning = meaning.replace("|", "/").replace("<", "&lt;")  # no HTML tag in Markdown
            rows.append(f"| `{key}` | `{cls.env_name(key)}` | {flag} | {default} | {meaning} |")
        return "\n".join(rows) + "\n"
