"""Turn what a Label Studio task holds for an image into the image's bytes.

Label Studio puts a reference in the task, not the file: `/data/upload/<project>/<file>` for an
uploaded file (served by Label Studio, behind its token), `/data/local-files/?d=<path>` for Local
Storage (a file under LOCAL_FILES_DOCUMENT_ROOT on the Label Studio host), an http(s) URL, or a
`data:` URI. Each load either returns bytes that Pillow recognises as an image or raises BadInput
naming the reference and the problem (missing, not an image, too large, unreachable), so the
caller can give that task an empty result instead of failing the batch.

The token goes only to the configured Label Studio: a task's absolute URL that points at Label
Studio's media paths is fetched by path from the configured server, never sent elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import posixpath
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote_to_bytes, urlparse

import httpx

from suggest.schema import BadInput, Item

if TYPE_CHECKING:
    from suggest.labelstudio import LabelStudioClient

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # a 32 MB image file is already far larger than the encoder needs
LS_MEDIA_PREFIXES = ("/data/upload/", "/data/local-files", "/storage-data/uploaded")


def immutable_ref(ref: str) -> str | None:
    """A key for references whose bytes never change, else None: Label Studio uploads, whose file
    names carry a fresh random prefix per upload. Local files, URLs and cloud objects can change in
    place, and data: URIs hold their bytes already, so those are always read."""
    if not isinstance(ref, str):
        return None
    parsed = urlparse(ref.strip())
    if parsed.scheme and parsed.scheme not in ("http", "https"):
        return None
    path = parsed.path if parsed.scheme else "/" + parsed.path.lstrip("/")
    if path.startswith("/upload/"):
        path = "/data" + path  # what older exports hold
    if parsed.scheme and not path.startswith("/data/upload/"):
        return None
    return path if path.startswith("/data/upload/") and not parsed.query else None


class ImageLoader:
    """Loads image bytes for task references; thread-safe, with a small LRU of recent remote loads.

    `client` fetches Label Studio's own files (uploads, and Local Storage when no root is set
    here); `local_root` (default: env LOCAL_FILES_DOCUMENT_ROOT, as Label Studio reads it) lets
    `/data/local-files/` references be read straight from disk when this process shares it.
    """

    def __init__(
        self,
        client: LabelStudioClient | None = None,
        *,
        local_root: str | Path | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = 15.0,
        allow_http: bool = True,
        cache_bytes: int = 128 * 1024 * 1024,
    ):
        self.client = client
        root = local_root if local_root is not None else (
            os.environ.get("LOCAL_FILES_DOCUMENT_ROOT") or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
        )
        # "/" would make every readable file on this machine a Local Storage file
        self.local_root = Path(root).resolve() if root and Path(root).resolve() != Path("/") else None
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.allow_http = allow_http
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    # public -------------------------------------------------------------------------------------

    def load(self, ref: str, *, task_id: int | None = None) -> bytes:
        """The image file a reference points at; raises BadInput naming the reference and the problem."""
        who = f"task {task_id}: " if task_id is not None else ""
        if not isinstance(ref, str) or not ref.strip():
            raise BadInput(f"{who}no image reference in the task")
        ref = ref.strip()
        shown = ref if len(ref) <= 120 else ref[:60] + "..." + ref[-40:]
        try:
            data = self._load(ref)
            _check_image(data)
        except _Problem as exc:
            raise BadInput(f"{who}image {shown!r} {exc}") from None
        return data

    def load_item(self, item: Item) -> Item:
        """The same item with `data` loaded from its reference (`item.text`); no-op if already loaded."""
        if item.data is not None:
            return item
        return Item(item.text, item.task_id, self.load(item.text, task_id=item.task_id))

    def load_items(self, items: list[Item]) -> tuple[list[Item], dict[int, str]]:
        """Load many; unloadable ones come back unchanged (data None) with index -> message in the dict."""
        out, errors = [], {}
        for i, item in enumerate(items):
            try:
                out.append(self.load_item(item))
            except BadInput as exc:
                errors[i] = str(exc)
                out.append(item)
        return out, errors

    # sources ------------------------------------------------------------------------------------

    def _load(self, ref: str) -> bytes:
        if ref.startswith("data:"):
            return self._data_uri(ref)
        parsed = urlparse(ref)
        if parsed.scheme in ("http", "https"):
            if parsed.path.startswith(LS_MEDIA_PREFIXES) and self.client is not None:
                path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
                return self._label_studio_media(path)
            return self._remember(ref, lambda: self._http_get(ref))
        if parsed.scheme or parsed.netloc:
            raise _Problem(f"uses {parsed.scheme or 'a host'}: suggest loads /data/upload/, /data/local-files/, "
                           "http(s) and data: references (cloud storage URIs are not supported)")
        path = ref if ref.startswith("/") else "/" + ref
        if path.startswith("/upload/"):
            path = "/data" + path  # what older exports hold
        if path.startswith(LS_MEDIA_PREFIXES):
            return self._label_studio_media(path)
        raise _Problem("is not a reference suggest can load (expected /data/upload/..., /data/local-files/?d=..., "
                       "an http(s) URL or a data: URI)")

    def _label_studio_media(self, path: str) -> bytes:
        if path.startswith("/data/local-files"):
            relative = _local_files_param(path)
            if self.local_root is not None:
                return self._local_file(relative)
        if self.client is None:
            raise _Problem("is a Label Studio file, but no Label Studio connection (URL and token) is configured"
                           + (" and LOCAL_FILES_DOCUMENT_ROOT is not set" if path.startswith("/data/local") else ""))
        return self._remember(path, lambda: self._fetch_label_studio(path))

    def _fetch_label_studio(self, path: str) -> bytes:
        from suggest.labelstudio import LabelStudioError

        try:
            return self.client.fetch_file(path, max_bytes=self.max_bytes)
        except BadInput as exc:  # too large
            raise _Problem(str(exc)) from None
        except LabelStudioError as exc:
            text = str(exc)
            if " 404 " in text or "answered 404" in text:
                raise _Problem("is missing: Label Studio answered 404") from None
            raise _Problem(f"could not be fetched from Label Studio: {text}") from None

    def _local_file(self, relative: str) -> bytes:
        root = self.local_root
        target = (root / posixpath.normpath(relative).lstrip("/")).resolve()
        if not target.is_relative_to(root):
            raise _Problem(f"points outside the local files root {root}: refused")
        if not target.is_file():
            raise _Problem(f"is missing: no file {target}")
        size = target.stat().st_size
        if size > self.max_bytes:
            raise _Problem(_too_large(size, self.max_bytes))
        try:
            return target.read_bytes()
        except OSError as exc:
            raise _Problem(f"cannot be read ({exc.strerror or exc})") from None

    def _http_get(self, url: str) -> bytes:
        if not self.allow_http:
            raise _Problem("is an http(s) URL and loading those is turned off")
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout, follow_redirects=True, max_redirects=5)
        try:
            with self._http.stream("GET", url) as resp:
                if resp.status_code == 404:
                    raise _Problem("is missing: the server answered 404")
                if resp.status_code >= 400:
                    raise _Problem(f"could not be fetched: the server answered {resp.status_code}")
                return read_capped(resp, self.max_bytes)
        except _TooLarge as exc:
            raise _Problem(str(exc)) from None
        except httpx.TimeoutException:
            raise _Problem(f"is unreachable: no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise _Problem(f"is unreachable ({type(exc).__name__}: {exc})") from None

    def _data_uri(self, ref: str) -> bytes:
        header, sep, payload = ref[5:].partition(",")
        if not sep:
            raise _Problem("is a data: URI without a ',' before the data")
        if len(payload) * 3 // 4 > self.max_bytes:
            raise _Problem(_too_large(len(payload) * 3 // 4, self.max_bytes))
        if header.endswith(";base64"):
            try:
                return base64.b64decode(payload.strip(), validate=False)
            except (binascii.Error, ValueError):
                raise _Problem("is a data: URI whose base64 does not decode") from None
        return unquote_to_bytes(payload)

    # cache --------------------------------------------------------------------------------------

    def _remember(self, key: str, fetch) -> bytes:
        """Recent remote loads stay in memory: re-ranking the pool asks for the same images again."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = fetch()
        _check_image(data)  # only images are kept
        if len(data) <= self.cache_bytes // 4:
            with self._lock:
                if key not in self._cache:
                    self._cache[key] = data
                    self._cached += len(data)
                while self._cached > self.cache_bytes and self._cache:
                    _, old = self._cache.popitem(last=False)
                    self._cached -= len(old)
        return data


class _Problem(Exception):
    """What is wrong with a reference, phrased to follow it ("image '...' is missing ...")."""


class _TooLarge(Exception):
    pass


def read_capped(resp: httpx.Response, max_bytes: int) -> bytes:
    """A streamed body, refusing more than `max_bytes` (checked against Content-Length first)."""
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _TooLarge(_too_large(int(declared), max_bytes))
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > max_bytes:
            raise _TooLarge(_too_large(None, max_bytes))
    return bytes(buf)


def _too_large(size: int | None, limit: int) -> str:
    have = f"{size:,} bytes" if size is not None else "more bytes"
    return f"is too large: {have} (at most {limit:,})"


def _local_files_param(path: str) -> str:
    values = parse_qs(urlparse(path).query, keep_blank_values=True).get("d")
    relative = values[-1] if values else ""
    if not relative:
        raise _Problem("is a local-files reference without ?d=<path>")
    return relative


def _check_image(data: bytes) -> None:
    """Cheap header check: Pillow must recognise the format (full decoding happens in the encoder)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise _Problem("is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.size  # noqa: B018 - identifying reads the header only
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise _Problem(f"is not an image ({len(data):,} bytes that Pillow cannot identify)") from None


__all__ = ["DEFAULT_MAX_BYTES", "ImageLoader", "read_capped"]
