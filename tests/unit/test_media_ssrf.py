"""ImageLoader against hostile task references: internal hosts, redirects, traversal, slow servers.

Everything runs against real servers on 127.0.0.1 (http.server and raw sockets in threads);
a loopback server is reachable only when the test allows it (`allow_hosts`), as an operator
would with SUGGEST_MEDIA_ALLOW_HOSTS.
"""

from __future__ import annotations

import base64
import io
import shutil
import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator

import pytest

from suggest.labelstudio import LabelStudioClient
from suggest.media import HostPolicy, ImageLoader, address_refusal, immutable_ref
from suggest.schema import BadInput
from tests.unit.test_media import PNG, TOKEN, Server

LOOPBACK = ("127.0.0.1",)


@pytest.fixture
def web() -> Iterator[Server]:
    server = Server({"/cat.png": (200, PNG)})
    yield server
    server.close()


@pytest.fixture
def label_studio() -> Iterator[Server]:
    server = Server({"/data/upload/3/1a2b-photo.png": (200, PNG), "/api/projects": (200, b'{"secret": 1}')},
                    token=TOKEN)
    yield server
    server.close()


# which addresses -----------------------------------------------------------------------------

@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("100.64.0.1", "non-public"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a9fe:a9fe", "link-local address (NAT64"), ("2002:7f00:1::", "loopback address (6to4"),
])
def test_internal_addresses_are_refused_with_the_reason(address, reason):
    assert reason in (address_refusal(address) or "")


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert address_refusal(address) is None


def test_allow_list_takes_names_addresses_and_networks():
    policy = HostPolicy("127.0.0.1, 10.0.0.0/8 images.internal\n*.corp.example,[::1]")
    assert policy.name_allowed("images.internal") and policy.name_allowed("IMAGES.internal.")
    assert policy.name_allowed("cdn.corp.example") and not policy.name_allowed("corp.example.evil")
    assert not policy.name_allowed("localhost")
    assert policy.address_allowed("127.0.0.1") and policy.address_allowed("10.200.3.4")
    assert policy.address_allowed("::1") and policy.address_allowed("::ffff:10.1.1.1")
    assert not policy.address_allowed("127.0.0.2") and not policy.address_allowed("192.168.0.1")
    assert HostPolicy(()).names == set() and HostPolicy(["", " "]).networks == []


# task URLs -----------------------------------------------------------------------------------

def test_loopback_urls_are_refused_unless_allowed(web):
    port = web.url.rsplit(":", 1)[1]
    for url in (f"{web.url}/cat.png", f"http://localhost:{port}/cat.png", f"http://[::1]:{port}/cat.png",
                f"http://[::ffff:127.0.0.1]:{port}/cat.png", f"http://2130706433:{port}/cat.png",
                f"http://0.0.0.0:{port}/cat.png", f"http://127.1:{port}/cat.png"):
        with pytest.raises(BadInput, match=r"is refused: host .* is an? (loopback|unspecified) address.*"
                                           r"SUGGEST_MEDIA_ALLOW_HOSTS") as info:
            ImageLoader().load(url, task_id=4)
        assert str(info.value).startswith("task 4: image ")
    assert web.requests == []  # refused before connecting: nothing reached the server

    assert ImageLoader(allow_hosts=LOOPBACK).load(f"{web.url}/cat.png") == PNG
    assert ImageLoader(allow_hosts=["127.0.0.0/8"]).load(f"http://localhost:{port}/cat.png") == PNG
    assert ImageLoader(allow_hosts="localhost").load(f"http://localhost:{port}/cat.png") == PNG
    assert len(web.requests) == 3 and all(auth is None for _, auth in web.requests)


def test_cloud_metadata_and_private_networks_are_refused_before_any_connection():
    loader = ImageLoader(allow_hosts=LOOPBACK, timeout=30)
    started = time.monotonic()
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/x.png", "http://10.0.0.1/x.png",
                "http://192.168.0.1/x.png", "http://224.0.0.1/x.png", "https://[::ffff:a9fe:a9fe]/x.png"):
        with pytest.raises(BadInput, match="is refused: host .* address"):
            loader.load(url)
    assert time.monotonic() - started < 5  # no connection was tried (a connect would wait out 30 s)


def test_every_address_a_name_resolves_to_is_checked_and_the_checked_one_is_used(web, monkeypatch):
    port = int(web.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    lookups: list[str] = []

    def fake(host, *args, **kwargs):
        answers = {"images.example": ["127.0.0.1"], "mixed.example": ["8.8.8.8", "127.0.0.1"],
                   "rebind.example": ["198.18.0.1"] if not lookups.count("rebind.example") else ["127.0.0.1"]}
        if host in answers:
            lookups.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(BadInput, match=r"host mixed.example \(127.0.0.1\) is a loopback address"):
        ImageLoader().load(f"http://mixed.example:{port}/cat.png")  # one bad answer is enough
    # allowed by address: fetched from the address that was checked, looked up once, Host kept
    assert ImageLoader(allow_hosts=LOOPBACK).load(f"http://images.example:{port}/cat.png") == PNG
    assert lookups.count("images.example") == 1 and web.hosts[-1] == f"images.example:{port}"
    # DNS rebinding: the first answer (allowed here) is the one connected to; a second lookup that
    # would answer loopback never happens, so the loopback server sees nothing
    seen = len(web.requests)
    with pytest.raises(BadInput, match="unreachable"):
        ImageLoader(allow_hosts=["198.18.0.0/15"], timeout=0.5).load(f"http://rebind.example:{port}/cat.png")
    assert lookups.count("rebind.example") == 1 and len(web.requests) == seen


def test_redirects_are_followed_by_hand_and_each_hop_is_checked(web):
    port = web.url.rsplit(":", 1)[1]
    hops = Server({
        "/moved.png": (302, b"", {"Location": "/cat.png"}),
        "/cat.png": (200, PNG),
        "/to-loopback.png": (302, b"", {"Location": f"http://127.0.0.1:{port}/cat.png"}),
        "/to-metadata.png": (301, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}),
        "/to-file.png": (302, b"", {"Location": "file:///etc/passwd"}),
        "/loop.png": (307, b"", {"Location": "/loop.png"}),
    })
    hops_port = hops.url.rsplit(":", 1)[1]
    try:
        loader = ImageLoader(allow_hosts="localhost")  # the first host is allowed by name; 127.0.0.1 itself is not
        base = f"http://localhost:{hops_port}"
        assert loader.load(f"{base}/moved.png") == PNG
        with pytest.raises(BadInput, match=r"redirects to 'http://127.0.0.1:\d+/cat.png', which is refused: "
                                           r"host 127.0.0.1 is a loopback address"):
            loader.load(f"{base}/to-loopback.png")
        assert web.requests == []
        with pytest.raises(BadInput, match="redirects to 'http://169.254.169.254/latest/meta-data/', which is "
                                           "refused: host 169.254.169.254 is a link-local address"):
            loader.load(f"{base}/to-metadata.png")
        with pytest.raises(BadInput, match="redirects to 'file:///etc/passwd', which is refused: only http"):
            loader.load(f"{base}/to-file.png")
        with pytest.raises(BadInput, match="redirects more than 5 times: refused"):
            loader.load(f"{base}/loop.png")
        assert [p for p, _ in hops.requests].count("/loop.png") == 6
        with pytest.raises(BadInput, match="redirects more than 1 times"):
            ImageLoader(allow_hosts="localhost", max_redirects=1).load(f"{base}/loop.png")
        assert all(auth is None for _, auth in hops.requests)
    finally:
        hops.close()


def test_a_redirect_to_label_studio_carries_no_token(label_studio):
    bouncer = Server({"/x.png": (302, b"", {"Location": f"{label_studio.url}/data/upload/3/1a2b-photo.png"})})
    try:
        loader = ImageLoader(LabelStudioClient(label_studio.url, TOKEN), allow_hosts=LOOPBACK)
        with pytest.raises(BadInput, match="answered 401"):
            loader.load(f"{bouncer.url}/x.png")  # a task URL elsewhere: fetched without credentials, redirect too
        assert label_studio.requests == [("/data/upload/3/1a2b-photo.png", None)]
    finally:
        bouncer.close()


def test_label_studio_does_not_redirect_the_token_elsewhere(web):
    ls = Server({"/data/upload/3/a.png": (302, b"", {"Location": f"{web.url}/cat.png"})}, token=TOKEN)
    try:
        with pytest.raises(BadInput, match="is empty|not an image|answered 302"):
            ImageLoader(LabelStudioClient(ls.url, TOKEN)).load("/data/upload/3/a.png")
        assert web.requests == []
    finally:
        ls.close()


def test_a_malformed_url_is_bad_input_not_a_crash():
    assert immutable_ref("http://[::1/x.png") is None  # was ValueError, raised while preparing a whole batch
    with pytest.raises(BadInput, match="is not a valid URL"):
        ImageLoader().load("http://[::1/x.png")


def test_credentials_in_a_task_url_stay_out_of_messages():
    with pytest.raises(BadInput) as info:
        ImageLoader().load("http://alice:s3cret-pass@127.0.0.1:9/x.png")
    assert "s3cret" not in str(info.value) and "http://***@127.0.0.1:9/x.png" in str(info.value)


# Label Studio paths -------------------------------------------------------------------------

@pytest.mark.parametrize("ref", [
    "/data/upload/../../api/projects",
    "/data/upload/3/../../../api/projects",
    "/data/upload/%2e%2e/%2e%2e/api/projects",
    "/data/upload/%2E%2E/%2e%2E/api/projects",
    "/data/upload/%252e%252e/%252e%252e/api/projects",
    "/data/upload/..%2f..%2fapi/projects",
    "/data/upload/..%5c..%5capi%5cprojects",
    "/data/upload/./../../api/projects",
    "upload/../../api/projects",
    "/upload/../api/projects",
    "/data/local-files/../../api/projects?d=x.png",
    "/storage-data/uploaded/../../api/projects?filepath=x",
    "http://localhost:8080/data/upload/../../api/projects",
    "https://elsewhere.example/data/upload/%2e%2e/%2e%2e/api/projects?x=1",
])
def test_label_studio_paths_that_leave_their_folder_are_never_sent(label_studio, ref):
    loader = ImageLoader(LabelStudioClient(label_studio.url, TOKEN))
    with pytest.raises(BadInput, match="is refused: its path leaves Label Studio's media folders"):
        loader.load(ref)
    assert label_studio.requests == []
    assert immutable_ref(ref) is None


def test_local_files_traversal_is_refused_before_label_studio_sees_it(label_studio):
    loader = ImageLoader(LabelStudioClient(label_studio.url, TOKEN))
    for d in ("../../etc/passwd", "photos/../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "..\\..\\etc\\passwd"):
        with pytest.raises(BadInput, match="outside the local files root: refused"):
            loader.load(f"/data/local-files/?d={d}")
    assert label_studio.requests == []
    assert loader.load("/data/upload/3/1a2b-photo.png") == PNG  # the real thing still goes, with the token
    assert label_studio.requests == [("/data/upload/3/1a2b-photo.png", f"Token {TOKEN}")]


# slow servers -------------------------------------------------------------------------------

class _DaemonTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # a trickle still sending when the test ends must not hold up server_close


class Trickler:
    """A raw TCP server that answers one byte at a time, `interval` apart, for up to `lasts` seconds:
    `stage` "body" sends the headers at once and trickles the body; "headers" trickles the headers."""

    def __init__(self, stage: str, interval: float = 0.1, lasts: float = 8.0):
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
        self.served = 0

        class Handler(socketserver.BaseRequestHandler):
            def handle(handler):  # noqa: N805 - socketserver's naming
                self.served += 1
                handler.request.recv(65536)
                if stage == "body":
                    handler.request.sendall(head)
                stream = (head if stage == "headers" else b"") + PNG * 1000
                end = time.monotonic() + lasts
                try:
                    for i in range(len(stream)):
                        if time.monotonic() > end:
                            break
                        handler.request.sendall(stream[i:i + 1])
                        time.sleep(interval)
                except OSError:
                    pass  # the client gave up, as it should

        self.server = _DaemonTCPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("stage", ["body", "headers"])
def test_a_trickling_server_is_cut_off_at_the_deadline(stage):
    slow = Trickler(stage)
    try:
        loader = ImageLoader(allow_hosts=LOOPBACK, deadline=1.0, timeout=5.0)
        started = time.monotonic()
        with pytest.raises(BadInput, match=r"could not be fetched within 1 s \(the deadline for a download\): "
                                           r"the server is too slow"):
            loader.load(f"{slow.url}/cat.png", task_id=2)
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 1.6, elapsed
        assert slow.served == 1
        # the loader is fine afterwards: a normal server answers as usual
        web = Server({"/cat.png": (200, PNG)})
        try:
            assert loader.load(f"{web.url}/cat.png") == PNG
        finally:
            web.close()
    finally:
        slow.close()


def test_many_trickling_downloads_all_end_by_the_deadline():
    slow = Trickler("body", interval=0.2)
    try:
        loader = ImageLoader(allow_hosts=LOOPBACK, deadline=1.0)
        errors: list[str] = []

        def one(i: int) -> None:
            try:
                loader.load(f"{slow.url}/{i}.png")
            except BadInput as exc:
                errors.append(str(exc))

        started = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert time.monotonic() - started < 2.5
        assert len(errors) == 12 and all("within 1 s" in e for e in errors)
    finally:
        slow.close()


# hostile image bytes --------------------------------------------------------------------------

def _png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and header claiming width x height, and a few bytes of pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


def test_a_decompression_bomb_header_is_bad_input_not_a_crash():
    bomb = _png_header(20000, 20000)
    assert len(bomb) < 120
    with pytest.raises(BadInput, match=r"task 5: image 'data:.*' is too large: 400,000,000 pixels"):
        ImageLoader().load("data:image/png;base64," + base64.b64encode(bomb).decode(), task_id=5)


def test_formats_outside_the_image_list_are_not_images():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PPM")  # Pillow reads it, Label Studio's <Image> does not
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n"
    for payload in (buf.getvalue(), eps):
        with pytest.raises(BadInput, match="is not an image"):
            ImageLoader().load("data:image/x;base64," + base64.b64encode(payload).decode())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_to_a_pinned_address_still_checks_the_certificate_against_the_name(tmp_path, monkeypatch):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=images.example",
                    "-addext", "subjectAltName=DNS:images.example"], check=True, capture_output=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = Server({"/cat.png": (200, PNG)}, tls=tls)
    port = int(server.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host == "images.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test's own certificate
    try:
        loader = ImageLoader(allow_hosts=LOOPBACK, timeout=5)
        assert loader.load(f"https://images.example:{port}/cat.png") == PNG  # SNI and the check use the name
        with pytest.raises(BadInput, match="unreachable .*CERTIFICATE_VERIFY_FAILED|unreachable .*certificate"):
            loader.load(f"https://127.0.0.1:{port}/cat.png")  # the certificate is not for this address
    finally:
        server.close()
