"""Which Label Studio hosts a /setup may point suggest at.

With basic auth off (the default) anyone who reaches port 9090 can POST /setup for a new project
with a `hostname` of their choosing, and suggest then calls that host in the background (project,
tasks, predictions) with the token that came along. Label Studio normally runs on this machine or
on the private network, so loopback and private addresses stay allowed; what is refused is what a
Label Studio never is and what an attacker wants: link-local addresses (169.254.169.254, the cloud
metadata service, and fe80::/10), multicast, reserved and broadcast ranges, the metadata services
that live elsewhere (AWS's fd00:ec2::254, Alibaba's 100.100.100.200), and any scheme but http(s).

Checked twice: at /setup (a 4xx that names the problem, the project is not registered) and on
every connection to a /setup hostname (a guarded transport that resolves the name itself and
connects to the checked address), so a DNS answer that changes after /setup cannot reach the
metadata service either. LABEL_STUDIO_URL is the operator's own setting and is not restricted.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from urllib.parse import urlsplit

from suggest.media import GuardedTransport, HostPolicy, NoHost, Refused, embedded_ipv4

# metadata services outside the link-local range (AWS's IPv6 one, Alibaba Cloud's)
_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
_RESOLVE_SECONDS = 2.0  # /setup answers within this even when the resolver hangs


def ls_address_refusal(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why suggest never calls this address as a Label Studio host, or None.

    0.0.0.0 and :: are allowed: connecting to them reaches this machine, as loopback does (and Label
    Studio started with `--host 0.0.0.0` may send them)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    # an IPv6 form of an IPv4 address: the IPv4 address decides (::ffff:0:0/96 is "reserved" itself)
    if (carried := embedded_ipv4(ip)) is not None:
        inner = ls_address_refusal(carried[0])
        return None if inner is None else f"{inner} (in an IPv6 form)"
    if ip in _METADATA:
        return "a cloud metadata service's address"
    if ip.is_loopback or ip.is_unspecified:
        return None
    for attribute, what in (("is_link_local", "a link-local"), ("is_multicast", "a multicast"),
                            ("is_reserved", "a reserved")):
        if getattr(ip, attribute):
            return f"{what} address"
    return None


class LabelStudioHosts(HostPolicy):
    """The guard on connections to a /setup hostname: loopback, private and public hosts only."""

    def refusal(self, address: str) -> str | None:
        return ls_address_refusal(address)

    def refused(self, shown: str, reason: str) -> str:
        return (f"Label Studio host {shown} is {reason}; suggest does not call such hosts (set LABEL_STUDIO_URL "
                "if Label Studio really runs there)")


def guarded_transport() -> GuardedTransport:
    """An httpx transport that connects only to hosts LabelStudioHosts allows (resolved once, then pinned)."""
    return GuardedTransport(LabelStudioHosts(()))


def hostname_problem(url: str) -> str | None:
    """What is wrong with a /setup `hostname` as a Label Studio URL, or None.

    A name is resolved here, bounded in time: one that resolves to a refused address is a problem; one
    that does not resolve (yet) is not, since the guarded transport checks it again on every connection."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"hostname {url!r} is not a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"hostname {url!r} must be an http(s) URL of Label Studio"
    host = parts.hostname
    if not host:
        return f"hostname {url!r} names no host"
    if parts.query or parts.fragment:
        return f"hostname {url!r} may not carry a query or fragment"
    try:
        reason = ls_address_refusal(host)
        addresses = [host]
    except ValueError:  # a name
        reason, addresses = None, _resolve(host, port or (443 if parts.scheme.lower() == "https" else 80))
    for address in addresses:
        reason = reason or ls_address_refusal(address)
        if reason is not None:
            shown = host if host == address else f"{host} ({address})"
            return LabelStudioHosts(()).refused(shown, reason)
    return None


def _resolve(host: str, port: int) -> list[str]:
    """The addresses a name resolves to; [] when it does not resolve within _RESOLVE_SECONDS."""
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="resolve")
    try:
        infos = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(_RESOLVE_SECONDS)
    except (concurrent.futures.TimeoutError, OSError, UnicodeError):
        return []
    finally:
        pool.shutdown(wait=False)
    return list(dict.fromkeys(info[4][0] for info in infos))


__all__ = ["LabelStudioHosts", "NoHost", "Refused", "guarded_transport", "hostname_problem", "ls_address_refusal"]
