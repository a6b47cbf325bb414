"""Turn what a Label Studio task holds for an image into the image's bytes.

Label Studio puts a reference in the task, not the file: `/data/upload/<project>/<file>` for an
uploaded file (served by Label Studio, behind its token), `/data/local-files/?d=<path>` for Local
Storage (a file under LOCAL_FILES_DOCUMENT_ROOT on the Label Studio host), an http(s) URL, or a
`data:` URI. Each load either returns bytes that Pillow recognises as an image or raises BadInput
naming the reference and the problem (missing, not an image, too large, unreachable, refused), so
the caller can give that task an empty result instead of failing the batch.

What a task says is not trusted (anyone who can import tasks writes it):

- The token goes only to the configured Label Studio, and only for its media paths: a task's
  absolute URL that points at those paths is fetched by path from the configured server, never
  sent elsewhere, and a path that leaves its media folder once percent-decoded and normalized
  (`/data/upload/../../api/projects`) is refused, never sent.
- Any other http(s) URL is fetched without credentials and only from public addresses: the host
  name is resolved once, every address it resolves to is checked (private, loopback, link-local,
  unspecified, multicast, reserved, IPv4-mapped/NAT64/6to4 IPv6 forms of those), and the
  connection goes to the checked address itself, so a DNS answer that changes between the check
  and the connection (rebinding) cannot reach an internal host. `allow_hosts` names the host
  names, addresses or networks that may be fetched anyway. Redirects are followed by hand, at
  most `max_redirects`, each hop checked the same way; proxies and .netrc from the environment
  are not used for these fetches.
- Each download has a total `deadline` (connect, headers, body and redirects together), enforced
  on every socket operation, so a server that trickles a byte a second cannot hold a thread.
  Residual risk: the name lookup itself (getaddrinfo) is bounded only by the resolver's own
  timeouts.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import logging
import posixpath
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, unquote_to_bytes, urljoin, urlparse

import httpcore
import httpx

from suggest.schema import BadInput, Item

if TYPE_CHECKING:
    from suggest.labelstudio import LabelStudioClient

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # a 32 MB image file is already far larger than the encoder needs
DEFAULT_DEADLINE = 30.0  # seconds for a whole download, redirects included
MAX_REDIRECTS = 5
LS_MEDIA_PREFIXES = ("/data/upload/", "/data/local-files", "/storage-data/uploaded")
ALLOW_HOSTS_SETTING = "SUGGEST_MEDIA_ALLOW_HOSTS"  # named in refusals, so an operator knows what to set
_REDIRECT_CODES = (301, 302, 303, 307, 308)


def immutable_ref(ref: str) -> str | None:
    """A key for references whose bytes never change, else None: Label Studio uploads, whose file
    names carry a fresh random prefix per upload. Local files, URLs and cloud objects can change in
    place, and data: URIs hold their bytes already, so those are always read."""
    if not isinstance(ref, str):
        return None
    try:
        parsed = urlparse(ref.strip())
    except ValueError:  # "http://[::1/x.png": not a URL, and not an upload
        return None
    if parsed.scheme and parsed.scheme not in ("http", "https"):
        return None
    path = parsed.path if parsed.scheme else "/" + parsed.path.lstrip("/")
    if path.startswith("/upload/"):
        path = "/data" + path  # what older exports hold
    if parsed.scheme and not path.startswith("/data/upload/"):
        return None
    if not path.startswith("/data/upload/") or parsed.query or _media_path_problem(path) is not None:
        return None
    return path


# addresses ------------------------------------------------------------------------------------

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 one carries, with its form ("IPv4-mapped", "NAT64", "6to4"), or None."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on the wire
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    return None


def address_refusal(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not fetched from a task URL ("a loopback address", ...), or None if public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if (carried := embedded_ipv4(ip)) is not None:
        embedded, form = carried
        inner = address_refusal(embedded)
        if form == "IPv4-mapped":
            return None if inner is None else f"{inner} (IPv4-mapped IPv6)"
        if inner is not None:
            return f"{inner} ({form} IPv6)"
    for attribute, what in (("is_unspecified", "an unspecified"), ("is_loopback", "a loopback"),
                            ("is_link_local", "a link-local"), ("is_multicast", "a multicast"),
                            ("is_reserved", "a reserved"), ("is_private", "a private")):
        if getattr(ip, attribute):
            return f"{what} address"
    if not ip.is_global:  # e.g. 100.64.0.0/10, shared carrier-grade NAT space
        return "a non-public address"
    return None


class HostPolicy:
    """Which hosts a task URL may reach: public addresses, plus `allow_hosts` (names, IPs or CIDRs).

    A name entry ("images.internal", "localhost", or "*.corp.example" for every subdomain) lets
    that host through whatever it resolves to; an address or network entry lets those addresses
    through whatever name led to them.
    """

    def __init__(self, allow_hosts: Iterable[str] | str = ()):
        if isinstance(allow_hosts, str):
            allow_hosts = re.split(r"[,\s]+", allow_hosts)
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow_hosts:
            entry = str(entry).strip().strip("[]").lower().rstrip(".")
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                self.suffixes.append(entry[1:])
            else:
                self.names.add(entry)

    def name_allowed(self, host: str) -> bool:
        host = host.strip("[]").lower().rstrip(".")
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in net or (mapped is not None and mapped in net) for net in self.networks)

    def refusal(self, address: str) -> str | None:
        """Why this policy refuses an address, or None: task URLs reach only public addresses."""
        return address_refusal(address)

    def refused(self, shown: str, reason: str) -> str:
        return f"host {shown} is {reason}; only public hosts are fetched unless allowed ({ALLOW_HOSTS_SETTING})"

    def resolve(self, host: str, port: int) -> list[tuple]:
        """getaddrinfo entries to connect to, every one checked; raises Refused, or NoHost."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise NoHost(f"its host {host!r} does not resolve ({exc})") from None
        if not infos:
            raise NoHost(f"its host {host!r} does not resolve")
        if not self.name_allowed(host):
            for info in infos:
                address = info[4][0]
                reason = self.refusal(address)
                if reason is not None and not self.address_allowed(address):
                    raise Refused(self.refused(host if host == address else f"{host} ({address})", reason))
        return infos


# downloads ------------------------------------------------------------------------------------

_download = threading.local()  # `until`: the monotonic deadline of the download this thread runs


def _remaining(timeout: float | None, exc_class: type[Exception]) -> float | None:
    """The socket timeout for the next operation: the per-operation one, cut to the deadline."""
    until = getattr(_download, "until", None)
    if until is None:
        return timeout
    left = until - time.monotonic()
    if left <= 0:
        raise exc_class("the download's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the download's deadline."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _remaining(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _remaining(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None, timeout: float | None = None):
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                     _remaining(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves and checks the host itself, then connects to a checked address (no second lookup)."""

    def __init__(self, policy: HostPolicy):
        self.policy = policy
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        infos = self.policy.resolve(host, port)
        last: Exception | None = None
        for address in dict.fromkeys(info[4][0] for info in infos):
            try:  # a numeric address: create_connection looks nothing up
                stream = self._sockets.connect_tcp(address, port, _remaining(timeout, httpcore.ConnectTimeout),
                                                   local_address, socket_options)
                return _DeadlineStream(stream)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"cannot connect to {host}")

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise Refused("unix sockets are never fetched")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport (request mapping, errors) over a pool that connects through _GuardedBackend."""

    def __init__(self, policy: HostPolicy):
        super().__init__()
        self._pool.close()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=32, max_keepalive_connections=8,
            keepalive_expiry=5.0, network_backend=_GuardedBackend(policy),
        )


class ImageLoader:
    """Loads image bytes for task references; thread-safe, with a small LRU of recent remote loads.

    `client` fetches Label Studio's own files (uploads, and Local Storage when no root is set
    here), with its token; those fetches follow the configured Label Studio URL, whatever its
    address. `local_root` (the caller passes LOCAL_FILES_DOCUMENT_ROOT; None: not read from disk)
    lets `/data/local-files/` references be read straight from disk when this process shares it.
    Task URLs on other hosts go through HostPolicy(`allow_hosts`) with a total `deadline` in
    seconds per download, `timeout` per network operation, and at most `max_redirects` hops.
    """

    def __init__(
        self,
        client: LabelStudioClient | None = None,
        *,
        local_root: str | Path | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = 15.0,
        deadline: float = DEFAULT_DEADLINE,
        allow_http: bool = True,
        allow_hosts: Iterable[str] | str = (),
        max_redirects: int = MAX_REDIRECTS,
        cache_bytes: int = 128 * 1024 * 1024,
    ):
        self.client = client
        # "/" would make every readable file on this machine a Local Storage file
        root = Path(local_root).resolve() if local_root else None
        self.local_root = root if root is not None and root != Path("/") else None
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.deadline = deadline
        self.allow_http = allow_http
        self.policy = HostPolicy(allow_hosts)
        self.max_redirects = max_redirects
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None

    def close(self) -> None:
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()

    # public -------------------------------------------------------------------------------------

    def load(self, ref: str, *, task_id: int | None = None) -> bytes:
        """The image file a reference points at; raises BadInput naming the reference and the problem."""
        who = f"task {task_id}: " if task_id is not None else ""
        if not isinstance(ref, str) or not ref.strip():
            raise BadInput(f"{who}no image reference in the task")
        ref = ref.strip()
        shown = _shown(ref)
        try:
            data = self._load(ref)
            _check_image(data)
        except _Problem as exc:
            raise BadInput(f"{who}image {shown!r} {exc}") from None
        except Exception as exc:  # a bug or an odd failure here must cost one task, not the batch
            log.warning("loading image %r failed unexpectedly", shown, exc_info=True)
            raise BadInput(f"{who}image {shown!r} could not be loaded ({type(exc).__name__})") from None
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
        try:
            parsed = urlparse(ref)
        except ValueError as exc:
            raise _Problem(f"is not a valid URL ({exc})") from None
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
        problem = _media_path_problem(path)
        if problem is not None:
            raise _Problem(problem)
        if path.startswith("/data/local-files"):
            relative = _local_files_param(path)
            if self.local_root is not None:
                return self._local_file(relative)
            if _leaves_root(relative):
                raise _Problem("points outside the local files root: refused")
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

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(transport=GuardedTransport(self.policy), timeout=self.timeout,
                                          follow_redirects=False, trust_env=False)
            return self._http

    def _http_get(self, url: str) -> bytes:
        if not self.allow_http:
            raise _Problem("is an http(s) URL and loading those is turned off")
        http = self._client()
        until = time.monotonic() + self.deadline
        _download.until = until
        current, hop = url, ""
        try:
            for _ in range(self.max_redirects + 1):
                wait = max(0.001, min(self.timeout, until - time.monotonic()))  # a pool slot too waits no longer
                with http.stream("GET", current, headers={"Accept": "image/*"}, timeout=wait) as resp:
                    location = resp.headers.get("location")
                    if resp.status_code in _REDIRECT_CODES and location:
                        current = urljoin(current, location.strip())
                        hop = f"redirects to {_shown(current)!r}, which "
                        if urlparse(current).scheme not in ("http", "https"):
                            raise _Problem(f"{hop}is refused: only http(s) redirects are followed")
                        continue
                    if resp.status_code == 404:
                        raise _Problem(f"{hop}is missing: the server answered 404")
                    if resp.status_code >= 400:
                        raise _Problem(f"{hop}could not be fetched: the server answered {resp.status_code}")
                    return read_capped(resp, self.max_bytes, until=until)
            raise _Problem(f"redirects more than {self.max_redirects} times: refused")
        except Refused as exc:
            raise _Problem(f"{hop}is refused: {exc}") from None
        except NoHost as exc:
            raise _Problem(f"{hop}is unreachable: {exc}") from None
        except _TooLarge as exc:
            raise _Problem(f"{hop}{exc}") from None
        except (httpx.TimeoutException, _Late):
            if time.monotonic() >= until - 0.05:
                raise _Problem(f"{hop}could not be fetched within {self.deadline:g} s (the deadline for a "
                               "download): the server is too slow") from None
            raise _Problem(f"{hop}is unreachable: no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise _Problem(f"{hop}is unreachable ({type(exc).__name__}: {exc})") from None
        except httpx.InvalidURL as exc:
            raise _Problem(f"{hop}is not a valid URL ({exc})") from None
        finally:
            _download.until = None

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


class Refused(Exception):
    """A host a task URL may not reach; the message says which and why."""


class NoHost(Exception):
    """A task URL's host name that does not resolve."""


class _TooLarge(Exception):
    pass


class _Late(Exception):
    pass


def read_capped(resp: httpx.Response, max_bytes: int, *, until: float | None = None) -> bytes:
    """A streamed body, refusing more than `max_bytes` (checked against Content-Length first), and
    giving up once time.monotonic() passes `until`."""
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _TooLarge(_too_large(int(declared), max_bytes))
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > max_bytes:
            raise _TooLarge(_too_large(None, max_bytes))
        if until is not None and time.monotonic() > until:
            raise _Late()
    return bytes(buf)


def _too_large(size: int | None, limit: int) -> str:
    have = f"{size:,} bytes" if size is not None else "more bytes"
    return f"is too large: {have} (at most {limit:,})"


def _shown(ref: str) -> str:
    """The reference as messages show it: shortened, without credentials in the URL."""
    ref = re.sub(r"^(https?://)[^/@?#]*@", r"\1***@", ref, flags=re.IGNORECASE)
    return ref if len(ref) <= 120 else ref[:60] + "..." + ref[-40:]


def _media_path_problem(path: str) -> str | None:
    """Why a Label Studio media path (query allowed) is not sent to Label Studio, or None.

    The path must stay in its media folder however a server reads it: after percent-decoding
    (twice, for a double-encoded '%252e'), with no '.'/'..' segments, backslashes or NULs.
    """
    raw = path.split("?", 1)[0].split("#", 1)[0]
    decoded = raw
    for _ in range(3):
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    refused = "is refused: its path leaves Label Studio's media folders"
    if "\\" in decoded or "\x00" in decoded or any(seg in (".", "..") for seg in decoded.split("/")):
        return refused + " ('.' or '..' segments)"
    normal = posixpath.normpath(decoded)
    if normal.startswith("/data/upload/") or any(
        normal == p or normal.startswith(p + "/") for p in ("/data/local-files", "/storage-data/uploaded")
    ):
        return None
    return refused


def _leaves_root(relative: str) -> bool:
    decoded = unquote(relative).replace("\\", "/")
    normal = posixpath.normpath(decoded.lstrip("/"))
    return normal == ".." or normal.startswith("../") or "\x00" in decoded


def _local_files_param(path: str) -> str:
    values = parse_qs(urlparse(path).query, keep_blank_values=True).get("d")
    relative = values[-1] if values else ""
    if not relative:
        raise _Problem("is a local-files reference without ?d=<path>")
    return relative


def _check_image(data: bytes) -> None:
    """Cheap header check: Pillow must recognise the format (full decoding happens in the encoder)."""
    from PIL import Image

    from backends.images import image_formats  # the decoder's own list: nothing it would refuse is kept

    if not data:
        raise _Problem("is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data), formats=image_formats()) as img:
            img.size  # noqa: B018 - identifying reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        have = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise _Problem(f"is too large: {have} (a decompression bomb?)") from None
    except Exception:  # UnidentifiedImageError, or whatever a plugin raises on a malformed header
        raise _Problem(f"is not an image ({len(data):,} bytes that Pillow cannot identify as JPEG, PNG, GIF, "
                       "WebP, BMP, TIFF or AVIF)") from None


__all__ = ["DEFAULT_DEADLINE", "DEFAULT_MAX_BYTES", "HostPolicy", "ImageLoader", "address_refusal", "read_capped"]
