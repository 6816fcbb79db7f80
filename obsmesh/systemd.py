"""`obsmesh systemd DIR`: the layout as systemd units, one per service.

Each service of the local layout (obsmesh/layout.py; simulators left out with
`--no-simulators`) becomes `obsmesh-<name>.service`, restarted by systemd
(`Restart=always`, never given up on), its whole process group stopped with it
(`KillMode=control-group`: crossbar's workers, das2's readers), ordered after
the router; `obsmesh.target` starts them all. Every service is given the mesh
settings as `OBSMESH_*` variables and the secrets file by path
(`OBSMESH_SECRETS_FILE`), never a secret itself.

    obsmesh systemd /etc/systemd/system && systemctl daemon-reload && systemctl start obsmesh.target
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from obsmesh import layout as layout_mod
from obsmesh.layout import ROUTER, SIMULATOR, Layout, Service

TARGET = "obsmesh.target"
_PLAIN = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def unit_name(svc: Service) -> str:
    return f"obsmesh-{svc.name}.service"


def quote(arg: str) -> str:
    """One ExecStart/Environment word, quoted as systemd reads it (`%` and `$` escaped)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def environment(lay: Layout, mesh: dict[str, Any], secrets_file: str) -> dict[str, str]:
    return {
        **lay.env(),
        "OBSMESH_REALM": mesh["realm"],
        "OBSMESH_PREFIX": mesh["prefix"],
        "OBSMESH_SECRETS_FILE": secrets_file,  # a path: the secret itself never enters a unit
    }


def service_unit(
    svc: Service, env: dict[str, str], workdir: str, python: str, user: str | None
) -> str:
    after = "network-online.target" + ("" if svc.role == ROUTER else " obsmesh-router.service")
    lines = [
        f"# {unit_name(svc)}: written by `obsmesh systemd`; edit the mesh settings, not this file.",
        "[Unit]",
        f"Description=obsmesh {svc.name}: {svc.where}",
        "Wants=network-online.target",
        f"After={after}",
        f"PartOf={TARGET}",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(quote(a) for a in (python, "-m", "obsmesh", *svc.argv)),
        f"WorkingDirectory={quote(workdir)}",
        *(f"Environment={quote(f'{k}={v}')}" for k, v in sorted(env.items())),
        "Restart=always",
        "RestartSec=2",
        "KillMode=control-group",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=10",
        *([f"User={user}"] if user else []),
        "",
        "[Install]",
        f"WantedBy={TARGET}",
    ]
    return "\n".join(lines) + "\n"


def target_unit(services: list[Service]) -> str:
    wants = " ".join(unit_name(s) for s in services)
    return (
        "# obsmesh.target: written by `obsmesh systemd`; starts every service of the mesh.\n"
        "[Unit]\n"
        "Description=obsmesh: the whole mesh\n"
        f"Wants={wants}\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def units(
    lay: Layout,
    mesh: dict[str, Any],
    secrets_file: str,
    simulators: bool = True,
    user: str | None = None,
    python: str = sys.executable,
) -> dict[str, str]:
    """file name -> text of every unit for `lay`."""
    chosen = [s for s in lay.services if simulators or s.role != SIMULATOR]
    env = environment(lay, mesh, secrets_file)
    out = {unit_name(s): service_unit(s, env, lay.state_dir, python, user) for s in chosen}
    out[TARGET] = target_unit(chosen)
    return out


def main(mesh: dict[str, Any], args: argparse.Namespace) -> int:
    from obsmesh.cli import secrets_path

    lay = layout_mod.local(mesh, args.kinds or None, path=args.config)
    secrets_file = os.path.abspath(secrets_path(mesh))
    written = units(lay, mesh, secrets_file, not args.no_simulators, args.user)
    os.makedirs(args.dir, exist_ok=True)
    for name, text in written.items():
        with open(os.path.join(args.dir, name), "w", encoding="utf-8") as f:
            f.write(text)
        print(os.path.join(args.dir, name))
    if not os.path.exists(secrets_file):
        print(
            f"obsmesh systemd: {secrets_file} does not exist yet: `obsmesh secrets init` writes it "
            "(the router would otherwise create it on its first start)",
            file=sys.stderr,
        )
    return 0
