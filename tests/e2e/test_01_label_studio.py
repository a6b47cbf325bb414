"""The harness itself: Label Studio is up as configured, and the launcher refuses a busy port.

Cheap checks that run first, so that a broken environment (legacy tokens off, loopback blocked)
fails here with a precise message rather than halfway through the workflow.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.e2e.conftest import LABEL_CONFIG, Stack
from tests.e2e.labelstudio_server import LabelStudioClient, LabelStudioServer, PortBusy

pytestmark = pytest.mark.e2e


def test_label_studio_is_the_pinned_version_and_healthy(label_studio: LabelStudioServer) -> None:
    """GET /health answers UP and /api/version reports 1.23.2 on the port we chose."""
    health = httpx.get(f"{label_studio.url}/health", timeout=10)
    assert health.status_code == 200 and health.json().get("status") == "UP", health.text
    version = httpx.get(f"{label_studio.url}/api/version", timeout=10).json()
    assert (
        version.get("release") == "1.23.2" or version.get("label-studio-os-package", {}).get("version") == "1.23.2"
    ), version


def test_legacy_token_auth_works_and_bad_token_is_refused(
    ls: LabelStudioClient, label_studio: LabelStudioServer
) -> None:
    """`Authorization: Token` is accepted (LS 1.23 disables it unless told otherwise)."""
    me = ls.request("GET", "/api/current-user/whoami")
    assert me["email"] == label_studio.username
    bad = httpx.get(f"{label_studio.url}/api/projects", headers={"Authorization": "Token nope-nope"}, timeout=10)
    assert bad.status_code == 401, bad.text


def test_loopback_backend_can_be_connected(ls: LabelStudioClient, stack: Stack) -> None:
    """With ML_BLOCK_LOCAL_IP/SSRF_PROTECTION_ENABLED off, a 127.0.0.1 backend connects with its webhook."""
    project = ls.create_project("e2e loopback check", LABEL_CONFIG)
    try:
        ml = ls.connect_ml(project["id"], stack.stub.url, "stub")
        assert ml["state"] == "CO", ml
        assert ml["model_version"] == "stub-0", ml
        hooks = [h["url"] for h in ls.webhooks(project["id"])]
        assert f"{stack.stub.url}/webhook" in hooks, hooks
    finally:
        ls.request("DELETE", f"/api/projects/{project['id']}")


def test_launcher_refuses_a_busy_port(tmp_path, stack: Stack) -> None:
    """LS would silently move to the next port; the launcher must refuse before spawning anything."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        busy = sock.getsockname()[1]
        server = LabelStudioServer(stack.label_studio.venv_dir, tmp_path / "busy", port=busy)
        with pytest.raises(PortBusy):
            server.launch()
        assert server.process is None, "a process was spawned although the port was busy"
