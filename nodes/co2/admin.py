"""Operator commands on a data root: unit tokens and firmware updates.

The CLI mounts these as `obsmesh co2 add-unit ID`, `obsmesh co2 revoke-unit
ID` and `obsmesh co2 add-update ID DIR NAME` (`configure`, `main`). Firmware
updates can only be placed here, by the operator: the upload endpoint writes
under `units/`, and updates are served from the separate `updates/` tree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from nodes.co2.paths import DEFAULT_UNIT_PATTERN, check_unit_id, compile_unit_pattern, is_plain_name
from nodes.co2.tokens import FILE_NAME, TokenStore


def _unit(unit_id: str, unit_pattern: str) -> str:
    return check_unit_id(unit_id, compile_unit_pattern(unit_pattern))


def add_unit(root: Path, unit_id: str, unit_pattern: str = DEFAULT_UNIT_PATTERN) -> str:
    """Register `unit_id` (or give it a new token) and return the token, shown once."""
    return TokenStore(Path(root) / FILE_NAME).add(_unit(unit_id, unit_pattern))


def revoke_unit(root: Path, unit_id: str, unit_pattern: str = DEFAULT_UNIT_PATTERN) -> bool:
    """Revoke the unit's token; False if it was never added."""
    return TokenStore(Path(root) / FILE_NAME).revoke(_unit(unit_id, unit_pattern))


def add_update(
    root: Path,
    unit_id: str,
    source: Path,
    name: str,
    unit_pattern: str = DEFAULT_UNIT_PATTERN,
) -> Path:
    """Place the firmware update tree `source` (with `flash/` and/or
    `conf-patch/`) for `unit_id` as `update-<name>`; the unit installs the
    newest by name. Copied aside first, then renamed into place, so a unit
    never fetches half an update."""
    unit_id = _unit(unit_id, unit_pattern)
    target_name = name if name.startswith("update-") else f"update-{name}"
    if not is_plain_name(target_name):
        raise ValueError(f"not a plain update name: {target_name!r}")
    source = Path(source)
    for path in source.rglob("*"):
        if path.is_symlink() or not is_plain_name(path.name):
            raise ValueError(f"update holds a link or an unsafe name: {path}")
    unit_dir = Path(root) / "updates" / unit_id
    unit_dir.mkdir(parents=True, exist_ok=True)
    target = unit_dir / target_name
    if target.exists():
        raise FileExistsError(f"{target} exists; updates are never replaced, use a new name")
    staging = unit_dir / f".staging-{target_name}-{os.getpid()}"
    shutil.copytree(source, staging)
    os.replace(staging, target)
    return target


# -- `obsmesh co2 ...` ---------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        help="the co2 node's data root (default: [co2] data_root, else <state_dir>/co2)",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "add-unit", help="register a unit, or give it a new token; prints the token"
    )
    p.add_argument("unit_id")
    p = actions.add_parser(
        "revoke-unit", help="revoke a unit's token (also refused in compatibility mode)"
    )
    p.add_argument("unit_id")
    p = actions.add_parser(
        "add-update",
        help="offer a firmware update (a directory with flash/ and/or conf-patch/) to a unit",
    )
    p.add_argument("unit_id")
    p.add_argument("dir", type=Path)
    p.add_argument("name", help="update name; the unit installs the newest by name")


def main(args: argparse.Namespace) -> int:
    from nodes.co2.errors import Rejected
    from nodes.co2.settings import Settings
    from nodes.co2.tokens import TokenFileError

    options = Settings.resolve(args.config, overrides={"data_root": args.data_root})
    root, pattern = Path(options["data_root"]), options["unit_pattern"]
    try:
        if args.action == "add-unit":
            token = add_unit(root, args.unit_id, pattern)
            print(
                f"unit {args.unit_id} registered in {root}; its token (shown once, put it in the "
                f"unit's configuration):",
                file=sys.stderr,
            )
            print(token)
        elif args.action == "revoke-unit":
            if not revoke_unit(root, args.unit_id, pattern):
                print(
                    f"obsmesh co2: unit {args.unit_id} is not registered in {root}", file=sys.stderr
                )
                return 1
            print(f"unit {args.unit_id} revoked", file=sys.stderr)
        else:
            target = add_update(root, args.unit_id, args.dir, args.name, pattern)
            print(f"update placed at {target}", file=sys.stderr)
    except Rejected as exc:
        print(f"obsmesh co2: {exc.message}: {args.unit_id!r}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TokenFileError) as exc:
        print(f"obsmesh co2: {exc}", file=sys.stderr)
        return 2
    return 0
