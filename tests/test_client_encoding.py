"""The Python client reads nodes that know no `encoding` argument (sisock's):
lists when a node's hub entry does not advertise arrays, and lists again when
a node advertises them but refuses the argument; the same results either way,
the same as an obsmesh node's binary columns would give."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from consumers.client import Mesh
from obsmesh import secrets as mesh_secrets
from tests.harness import REPO, SECRETS_FILE, Router, admit, stop_process, wait_for
from tests.sisock_node import STEP, pressure, temperature

PREFIX = "org.simonsobservatory"


@pytest.fixture
def sisock_router():
    r = Router(prefix=PREFIX)
    r.start()
    yield r
    r.close()


def start(router, name: str, tmp_path, *extra: str) -> subprocess.Popen:
    admit(name)
    secret = tmp_path / f"{name}.secret"
    secret.write_text(mesh_secrets.load(SECRETS_FILE).secret_for(name))
    return subprocess.Popen(
        [
            sys.executable,
            "tests/sisock_node.py",
            router.ws_url,
            router.realm,
            name,
            name,
            str(secret),
            *extra,
        ],
        cwd=REPO,
        stdout=open(tmp_path / f"{name}.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_the_client_falls_back_to_lists_for_nodes_without_encoding(sisock_router, tmp_path):
    honest = start(sisock_router, "plain", tmp_path)
    liar = start(sisock_router, "claims", tmp_path, "--claims-arrays")
    try:
        with Mesh(
            sisock_router.backend_url, sisock_router.realm, prefix=PREFIX, timeout=20
        ) as mesh:

            def entries():
                return {n["name"]: n for n in mesh.nodes()}

            wait_for(
                lambda: "encodings" in entries().get("claims", {}) and "plain" in entries(),
                60,
                "both nodes",
            )
            assert "encodings" not in entries()["plain"]  # sisock's nodes advertise nothing
            end = float(int(time.time() / STEP) * STEP)
            start_t = end - 1800
            answers = {}
            for name in ("plain", "claims"):
                r = mesh.get(name, ["temperature", "pressure"], start_t, end)
                t = r.time("temperature")
                assert t.size == 180 and np.array_equal(t, start_t + STEP * np.arange(180))
                assert np.allclose(r["temperature"], [temperature(x) for x in t])
                assert np.allclose(r["pressure"], [pressure(x) for x in t])
                answers[name] = (t, r["temperature"], r["pressure"])
            assert all(
                np.array_equal(a, b)
                for a, b in zip(answers["plain"], answers["claims"], strict=True)
            )
            binned = mesh.get("claims", "temperature", start_t, end, min_stride=60)
            assert np.all(np.diff(binned.time("temperature")) >= 60)  # the node's own downsampling
            # the claim was tried once, refused by the node, and not believed again
            assert mesh._core.arrays == {"plain": False, "claims": False}
    finally:
        stop_process(honest)
        stop_process(liar)
