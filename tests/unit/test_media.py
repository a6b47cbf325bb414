"""ImageLoader: every kind of reference Label Studio puts in a task, served for real (local HTTP servers)."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from suggest.labelstudio import LabelStudioClient
from suggest.media import ImageLoader
from suggest.schema import BadInput, Item

TOKEN = "abcdef123456"


def _png(color=(200, 30, 30), size=(24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()


class Server:
    """A tiny HTTP server in a thread: path -> (status, body[, headers]); counts requests and keeps
    their Authorization (`requests`) and Host (`hosts`) headers."""

    def __init__(self, routes: dict[str, tuple], *, token: str | None = None, delay: float = 0.0, tls=None):
        self.routes, self.token, self.delay = routes, token, delay
        self.requests: list[tuple[str, str | None]] = []
        self.hosts: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                outer.requests.append((self.path, self.headers.get("Authorization")))
                outer.hosts.append(self.headers.get("Host"))
                if outer.delay:
                    time.sleep(outer.delay)
                headers: dict[str, str] = {}
                if outer.token and self.headers.get("Authorization") != f"Token {outer.token}":
                    status, body = 401, b'{"detail": "Authentication credentials were not provided."}'
                else:
                    status, body, *more = outer.routes.get(self.path, (404, b"not found"))
                    headers = more[0] if more else {}
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on purpose (size cap, timeout)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:  # an ssl.SSLContext: serve https
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"http{'s' if tls else ''}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web() -> Iterator[Server]:
    server = Server({"/cat.png": (200, PNG), "/notes.txt": (200, b"hello, not a picture"),
                     "/big.png": (200, _png(size=(600, 600)) + b"\0" * 50_000), "/gone.png": (410, b"")})
    yield server
    server.close()


@pytest.fixture
def label_studio() -> Iterator[Server]:
    server = Server({"/data/upload/3/1a2b-photo.png": (200, PNG),
                     "/data/local-files/?d=photos/a.png": (200, PNG)}, token=TOKEN)
    yield server
    server.close()


def test_data_uris():
    loader = ImageLoader()
    assert loader.load("data:image/png;base64," + base64.b64encode(PNG).decode()) == PNG
    with pytest.raises(BadInput, match="is not an image"):
        loader.load("data:image/svg+xml,%3Csvg%3E%3C/svg%3E")
    with pytest.raises(BadInput, match="without a ','"):
        loader.load("data:image/png;base64")
    with pytest.raises(BadInput, match="is too large"):
        ImageLoader(max_bytes=100).load("data:image/png;base64," + base64.b64encode(PNG * 10).decode())


def test_local_files_under_a_root_and_escapes_refused(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "a b.png").write_bytes(PNG)
    (root / "photos" / "notes.txt").write_text("not an image")
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "photos" / "link.png").symlink_to(tmp_path / "secret.png")

    loader = ImageLoader(local_root=root)
    assert loader.load("/data/local-files/?d=photos/a%20b.png") == PNG
    assert loader.load("/data/local-files/?d=/photos/a b.png") == PNG  # "?d=" is always under the root
    for escape in ("../secret.png", "photos/../../secret.png", "photos/link.png"):
        with pytest.raises(BadInput, match="outside the local files root .*refused"):
            loader.load(f"/data/local-files/?d={escape}")
    with pytest.raises(BadInput, match="is missing"):
        loader.load("/data/local-files/?d=photos/nope.png", task_id=4)
    with pytest.raises(BadInput, match="is not an image"):
        loader.load("/data/local-files/?d=photos/notes.txt")
    with pytest.raises(BadInput, match="without \\?d="):
        loader.load("/data/local-files/")

    # the root is a parameter only (the caller passes LOCAL_FILES_DOCUMENT_ROOT from its settings)
    monkeypatch.setenv("LOCAL_FILES_DOCUMENT_ROOT", str(root))
    with pytest.raises(BadInput, match="no Label Studio connection .*LOCAL_FILES_DOCUMENT_ROOT is not set"):
        ImageLoader().load("/data/local-files/?d=photos/a%20b.png")
    with pytest.raises(BadInput, match="no Label Studio connection .*LOCAL_FILES_DOCUMENT_ROOT is not set"):
        ImageLoader(local_root="/").load("/data/local-files/?d=etc/hostname")  # "/" would expose every file


def test_http_urls(web):
    loader = ImageLoader(timeout=2, allow_hosts=("127.0.0.1",))  # a loopback server: allowed by name here
    assert loader.load(f"{web.url}/cat.png") == PNG
    assert loader.load(f"{web.url}/cat.png") == PNG
    assert [p for p, _ in web.requests].count("/cat.png") == 1  # the second came from the in-memory LRU
    assert all(auth is None for _, auth in web.requests)  # no token leaves for a host that is not Label Studio
    with pytest.raises(BadInput, match=r"task 7: image 'http://127.0.0.1:\d+/missing.png' is missing"):
        loader.load(f"{web.url}/missing.png", task_id=7)
    with pytest.raises(BadInput, match="answered 410"):
        loader.load(f"{web.url}/gone.png")
    with pytest.raises(BadInput, match="is not an image"):
        loader.load(f"{web.url}/notes.txt")
    with pytest.raises(BadInput, match=r"is too large: \d\d,\d\d\d bytes \(at most 20,000\)"):
        ImageLoader(max_bytes=20_000, allow_hosts="127.0.0.1").load(f"{web.url}/big.png")
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    with pytest.raises(BadInput, match="is unreachable"):
        loader.load(f"http://127.0.0.1:{port}/cat.png")
    with pytest.raises(BadInput, match="http\\(s\\) URL and loading those is turned off"):
        ImageLoader(allow_http=False).load(f"{web.url}/cat.png")


def test_http_timeout_is_unreachable():
    slow = Server({"/cat.png": (200, PNG)}, delay=1.5)
    try:
        with pytest.raises(BadInput, match="unreachable: no answer within 0.3 s"):
            ImageLoader(timeout=0.3, allow_hosts=("127.0.0.1",)).load(f"{slow.url}/cat.png")
    finally:
        slow.close()


def test_label_studio_uploads_are_fetched_with_the_token(label_studio):
    client = LabelStudioClient(label_studio.url, TOKEN)
    loader = ImageLoader(client)
    assert loader.load("/data/upload/3/1a2b-photo.png") == PNG
    assert label_studio.requests[-1] == ("/data/upload/3/1a2b-photo.png", f"Token {TOKEN}")
    # an absolute URL on the Label Studio host (as `hostname` from /setup writes it) is fetched by path
    assert loader.load("http://localhost:8080/data/upload/3/1a2b-photo.png") == PNG
    assert loader.load("upload/3/1a2b-photo.png") == PNG  # older exports drop the /data prefix
    assert loader.load("/data/local-files/?d=photos/a.png") == PNG  # no local root here: Label Studio serves it
    with pytest.raises(BadInput, match="missing: Label Studio answered 404"):
        loader.load("/data/upload/3/nope.png")
    with pytest.raises(BadInput, match="is too large"):
        ImageLoader(client, max_bytes=10).load("/data/upload/3/1a2b-photo.png")

    items, errors = loader.load_items([Item("/data/upload/3/1a2b-photo.png", 1), Item("/data/upload/3/x.png", 2)])
    assert items[0].data == PNG and items[1].data is None and list(errors) == [1] and "task 2" in errors[1]

    wrong = ImageLoader(LabelStudioClient(label_studio.url, "wrong-token-123"))
    with pytest.raises(BadInput, match="answered 401") as info:
        wrong.load("/data/upload/3/1a2b-photo.png")
    assert "wrong-token-123" not in str(info.value)
    with pytest.raises(BadInput, match="no Label Studio connection"):
        ImageLoader().load("/data/upload/3/1a2b-photo.png")


def test_references_it_cannot_load_say_what_it_can():
    loader = ImageLoader()
    with pytest.raises(BadInput, match="cloud storage URIs are not supported"):
        loader.load("s3://bucket/cat.png")
    with pytest.raises(BadInput, match="not a reference suggest can load"):
        loader.load("cat.png")
    with pytest.raises(BadInput, match="task 3: no image reference"):
        loader.load("  ", task_id=3)
