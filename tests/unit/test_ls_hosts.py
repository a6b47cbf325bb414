"""Which Label Studio hosts a /setup may name (suggest/ls_hosts.py), and the guarded client that enforces it."""

from __future__ import annotations

import json

import pytest

from suggest.labelstudio import LabelStudioClient, LabelStudioError
from suggest.ls_hosts import hostname_problem, ls_address_refusal
from tests.unit.test_media import Server


@pytest.mark.parametrize("address,reason", [
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a9fe:a9fe", "link-local"), ("2002:a9fe:a9fe::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"), ("fd00:ec2::254", "metadata"), ("100.100.100.200", "metadata"),
])
def test_what_a_label_studio_never_is_is_refused(address, reason):
    assert reason in (ls_address_refusal(address) or "")


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::", "10.0.0.5",
                                     "192.168.1.20", "172.17.0.2", "100.64.0.1", "fd12::5", "93.184.216.34"])
def test_where_label_studio_lives_is_allowed(address):
    """Loopback (the default), Docker's and private networks, and public hosts: a Label Studio may be there."""
    assert ls_address_refusal(address) is None


@pytest.mark.parametrize("url,problem", [
    ("ftp://ls.example", "http(s)"), ("file:///etc/passwd", "http(s)"), ("http://", "names no host"),
    ("http://ls.example:99999", "not a URL"), ("http://ls.example/?a=1", "query"),
    ("http://0xa9fea9fe/", "link-local"), ("http://169.254.43518", "link-local"),
])
def test_hostname_problems_are_named(url, problem):
    assert problem in (hostname_problem(url) or "")


@pytest.mark.parametrize("url", ["http://localhost:8080", "http://127.0.0.1:8089", "https://ls.example.com/ls",
                                 "http://[::1]:8080", "http://does-not-resolve.invalid:8080"])
def test_hostnames_label_studio_sends_pass(url):
    """A name that does not resolve now is let through: the guarded connection checks it again."""
    assert hostname_problem(url) is None


@pytest.fixture
def loopback_host():
    """A loopback server that answers /json with Label Studio's error shape and /page with an HTML page."""
    ls_error = json.dumps({"status_code": 401, "detail": "Invalid token."}).encode()
    server = Server({"/json": (401, ls_error, {"Content-Type": "application/json"}),
                     "/page": (401, b"<html>internal page: SECRET</html>", {"Content-Type": "text/html"})})
    yield server.url, server.requests
    server.close()


def test_the_guarded_client_reaches_loopback_and_quotes_only_label_studio_errors(loopback_host):
    url, hits = loopback_host
    client = LabelStudioClient(url, "f" * 40, guarded=True)  # a real token is never a word in a message
    with pytest.raises(LabelStudioError, match="answered 401 to GET /json: Invalid token"):
        client.request("GET", "/json")
    with pytest.raises(LabelStudioError, match=r"answered 401 to GET /page: \(a text/html answer, not shown\)") as info:
        client.request("GET", "/page")
    assert "SECRET" not in str(info.value) and [path for path, _ in hits] == ["/json", "/page"]


@pytest.mark.parametrize("url", ["http://169.254.169.254", "http://2852039166", "http://[::ffff:a9fe:a9fe]"])
def test_the_guarded_client_refuses_before_connecting(url):
    with pytest.raises(LabelStudioError, match="link-local") as info:
        LabelStudioClient(url, "tok", guarded=True).request("GET", "/api/projects/1")
    assert "does not call such hosts" in str(info.value)
