"""Operator commands on a data root: unit tokens and firmware updates.

The lead's CLI mounts these as `obsmesh co2 add-unit ID`, `obsmesh co2
revoke-unit ID` (and `obsmesh co2 add-update ID DIR`). Firmware updates can
only be placed here, by the operator: the upload endpoint writes under
`units/`, and updates are served from the separate `updates/` tree.
"""

from __future__ import annotations

import os
import shutil
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
    root: Path, unit_id: str, source: Path, name: str,
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
