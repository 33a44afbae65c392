"""A local Ray started by ``tlsweep run`` stays private: every port its processes listen on is on 127.0.0.1, and
a client without the run's auth token is refused (the run itself works). The trial is held after epoch 1 by the
rules of ``tests/faults.py`` while the test looks, so the Ray is provably up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .faults import write_rules
from .processes import cmdline, descendants, listening_sockets, wait_for

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
PROBE = """
import sys
from tlsweep.sweep.cluster import ClusterError, probe_cluster
try:
    probe_cluster(sys.argv[1])
except ClusterError as err:
    print("refused:", err)
else:
    print("accepted")
"""


def test_local_ray_listens_on_loopback_only_and_refuses_a_client_without_the_token(shapes_root, tmp_path, procs):
    folder = write_rules(tmp_path / "faults", hold_after=1)
    spec = {"name": "private", "data": {"root": str(shapes_root), "image_size": 32}, "weights": "none",
            "models": ["mobilenet_v3_small"], "search": {"lr": 1e-3, "batch_size": 16}, "epochs": 2,
            "scheduler": {"type": "fifo"}, "num_samples": 1, "storage": str(tmp_path / "results" / "private")}
    sweep = tmp_path / "private.yaml"
    sweep.write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    driver = procs.popen([sys.executable, "-m", "tests.launch", str(folder), "run", str(sweep), "--progress", "plain"],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: list(folder.glob("held-*")), what="the trial held after epoch 1", proc=driver)

    sockets = listening_sockets([driver.pid, *descendants(driver.pid)])
    servers = {Path(cmdline(pid).split()[0]).name for _, _, pid in sockets}
    assert {"gcs_server", "raylet"} <= servers, sockets
    assert [s for s in sockets if s[0] != "127.0.0.1"] == [], sockets

    gcs_port = next(port for _, port, pid in sockets if cmdline(pid).split()[0].endswith("gcs_server"))
    probe = procs.run([sys.executable, "-c", PROBE, f"127.0.0.1:{gcs_port}"], env=env, cwd=REPO, timeout=120,
                      capture_output=True, text=True)
    assert probe.stdout.startswith("refused:") and "auth token" in probe.stdout, probe.stdout + probe.stderr

    (folder / "release").touch()
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0 and "trials: 1 finished" in out, out[-3000:]
