"""A driver stopped by SIGTERM (as `timeout` or `kill` stop a benchmark) takes its local Ray head with it.

Why: Ray's SIGTERM handler raises SystemExit in the driver, and the driver then dies inside ray.shutdown()
(SIGABRT once its raylet goes). `local_cluster` used to stop the head only after that call, so the head's
`ray start` and GCS outlived the driver (session 18's benchmark left them running).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason='Ray is not installed: pip install "suggest[ray]" (or the test extra)')

REPO = Path(__file__).resolve().parents[2]
DRIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import ray
from suggest.distributed import local_cluster
with local_cluster(2) as address:
    ray.init(address=address)
    print(address, flush=True)
    time.sleep(300)
"""


def _processes_naming(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{pid}: {cmdline[:120]}")
    return found


def test_a_driver_stopped_by_sigterm_leaves_no_ray_head_behind() -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(REPO)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        address = driver.stdout.readline().strip()  # printed once connected
        assert address.startswith("127.0.0.1:"), f"the driver never connected (got {address!r})"
        port = address.split(":")[1]
        head = f"--port {port} "
        assert _processes_naming(head), "the head is not running while the driver is"
        driver.send_signal(signal.SIGTERM)
        driver.wait(timeout=60)
        deadline = time.monotonic() + 15
        while _processes_naming(head) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _processes_naming(head), f"the Ray head outlived its driver: {_processes_naming(head)}"
    finally:
        if driver.poll() is None:
            driver.kill()
