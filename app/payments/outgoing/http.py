"""Sending a delivery over HTTP, guarded against server-side request forgery.

A merchant (or whoever holds a write key) chooses the URL, so a request must never reach
what only Kassa's own network can: loopback, private, link-local (169.254.169.254, the
cloud metadata address), carrier-grade NAT, multicast, reserved. The check runs on the
addresses the name resolves to, inside the connection itself, and the socket connects to
the very address that was checked (no second lookup a rebinding DNS server could answer
differently); redirects are followed by hand, each hop through the same check. Proxies
from the environment are ignored (they would connect on our behalf, unchecked).

OUTGOING_WEBHOOK_ALLOW_PRIVATE (development only, refused in production) turns the check
off; OUTGOING_WEBHOOK_ALLOWED_NETWORKS lets named networks through (an internal receiver).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import connection as urllib3_connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 3
RESPONSE_KEEP = 2048  # bytes of a response body kept in the delivery log
USER_AGENT = "Kassa-Webhooks/1.0"
# Not globally reachable, though Python's is_global may say otherwise for some of them.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in ("100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "64:ff9b::/96")
)


class TargetRefused(Exception):
    """The URL leads somewhere a webhook must not go; nothing was sent there."""


class Unresolvable(TargetRefused):
    """The name does not resolve (now): a failed attempt, not a refusal to save it."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class TargetPolicy:
    allow_private: bool = False
    allowed_networks: tuple[Network, ...] = ()
    resolve: Resolver = system_resolver

    @classmethod
    def from_config(cls, config: Any) -> TargetPolicy:
        networks = tuple(
            ipaddress.ip_network(n.strip(), strict=False)
            for n in (config.get("OUTGOING_WEBHOOK_ALLOWED_NETWORKS") or "").split(",")
            if n.strip()
        )
        return cls(bool(config.get("OUTGOING_WEBHOOK_ALLOW_PRIVATE")), networks)

    def refusal(self, address: str) -> str | None:
        """What kind of address this is when it may not be reached, or None when it may."""
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if self.allow_private or any(ip in n for n in self.allowed_networks):
            return None
        if ip.is_loopback:
            return "a loopback address"
        if ip.is_link_local:
            return "a link-local address"
        if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
            return "not a public address"
        if ip.is_private or any(ip in n for n in _EXTRA_BLOCKED):
            return "a private address"
        if not ip.is_global:
            return "not a public address"
        return None

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to; refused if any the name has is not allowed (a
        name that mixes public and private addresses is a rebinding trick)."""
        try:
            found = [host] if _is_ip(host) else self.resolve(host, port)
        except OSError as exc:
            raise Unresolvable(f"{host} does not resolve ({exc})") from exc
        if not found:
            raise Unresolvable(f"{host} does not resolve")
        for address in found:
            kind = self.refusal(address)
            if kind:
                if address == host:
                    raise TargetRefused(f"refused: {address} is {kind}")
                raise TargetRefused(f"refused: {host} resolves to {address}, {kind}")
        return found

    def check_url(self, url: str) -> None:
        """The checks a URL gets before it is saved (and again on every request)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetRefused("must be an absolute http(s) URL")
        if parts.username or parts.password:
            raise TargetRefused("must not carry credentials")
        self.addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _connect(conn: HTTPConnection, policy: TargetPolicy) -> socket.socket:
    error: OSError | None = None
    for address in policy.addresses(conn._dns_host.strip("[]"), conn.port or 80):
        try:
            return urllib3_connection.create_connection(
                (address, conn.port or 80),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except OSError as exc:
            error = exc
    assert error is not None
    raise error


def _pool_classes(policy: TargetPolicy) -> dict[str, type[HTTPConnectionPool]]:
    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, policy)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, policy)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}


def guarded_pool(policy: TargetPolicy, pool_maxsize: int = 32) -> urllib3.PoolManager:
    """A urllib3 pool manager whose connections go through the policy: keep-alive, shared
    by the sending threads (urllib3's pools are thread-safe), no retries of its own, no
    proxies (they would connect on our behalf, unchecked), certificates checked against
    certifi's bundle as requests would."""
    manager = urllib3.PoolManager(
        num_pools=pool_maxsize,
        maxsize=pool_maxsize,
        retries=False,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
    )
    manager.pool_classes_by_scheme = _pool_classes(policy)
    return manager


@dataclass
class Result:
    status: int | None
    duration_ms: int
    body: str | None = None
    error: str | None = None
    retry_after: str | None = None
    redirects: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Sender:
    """POSTs deliveries through one guarded pool manager (keep-alive, shared by the
    sending threads): urllib3 directly, without requests' per-call session machinery,
    which cost as much CPU as the rest of a delivery (bench/RESULTS.md, issue 19)."""

    def __init__(self, policy: TargetPolicy, timeout: float, pool_maxsize: int = 32) -> None:
        self.policy = policy
        self.timeout = timeout
        self._pool = guarded_pool(policy, pool_maxsize)
        self._timeout = urllib3.Timeout(connect=min(timeout, 5.0), read=timeout)

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Result:
        started = time.perf_counter()
        hops: list[str] = []

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            for _ in range(MAX_REDIRECTS + 1):
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or parts.username or parts.password:
                    raise TargetRefused(f"refused: {url} is not a plain http(s) URL")
                response = self._pool.request(
                    "POST",
                    url,
                    body=body,
                    headers={"content-type": "application/json", "user-agent": USER_AGENT}
                    | headers,
                    timeout=self._timeout,
                    redirect=False,
                    retries=False,
                    preload_content=False,
                )
                complete = False
                try:
                    location = response.headers.get("location")
                    if response.status in REDIRECTS and location:
                        url = urljoin(url, location)
                        hops.append(url)
                        continue
                    text, complete = _read_some(response)
                    return Result(
                        response.status,
                        elapsed(),
                        body=text,
                        retry_after=response.headers.get("retry-after"),
                        redirects=hops,
                    )
                finally:
                    _finish(response, complete)
            return Result(None, elapsed(), error="too many redirects", redirects=hops)
        except TargetRefused as exc:
            return Result(None, elapsed(), error=str(exc), redirects=hops)
        except urllib3.exceptions.NewConnectionError as exc:  # (a TimeoutError subclass)
            return Result(None, elapsed(), error=f"ConnectionError: {_reason(exc)}")
        except (urllib3.exceptions.TimeoutError, TimeoutError):
            return Result(None, elapsed(), error=f"timed out after {self.timeout:g} s")
        except urllib3.exceptions.HTTPError as exc:
            return Result(None, elapsed(), error=f"{_kind(exc)}: {_reason(exc)}")
        except OSError as exc:
            return Result(None, elapsed(), error=f"{type(exc).__name__}: {_reason(exc)}")


def _kind(exc: urllib3.exceptions.HTTPError) -> str:
    """The failure's name as the delivery log has always shown it (requests' names)."""
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "SSLError"
    if isinstance(exc, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ProtocolError):
        return "ConnectionError"
    return type(exc).__name__


def _read_some(response: urllib3.BaseHTTPResponse) -> tuple[str, bool]:
    """The first RESPONSE_KEEP bytes of the body, and whether that was all of it."""
    chunks: list[bytes] = []
    size = 0
    complete = True
    for chunk in response.stream(1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > RESPONSE_KEEP:
            complete = False
            break
    return b"".join(chunks)[:RESPONSE_KEEP].decode("utf-8", "replace"), complete


def _finish(response: urllib3.BaseHTTPResponse, complete: bool) -> None:
    """Hand the connection back for the next delivery when the answer was read to its end
    (or what is left is small); otherwise close it rather than read an endless body."""
    remaining = getattr(response, "length_remaining", None)
    if complete or (remaining is not None and remaining <= 65536):
        response.drain_conn()
    else:
        response.close()
    response.release_conn()


def _reason(exc: BaseException) -> str:
    # requests nests urllib3's errors; the innermost one says what happened.
    inner: BaseException = exc
    seen: Sequence[BaseException] = ()
    while inner.__context__ is not None and inner not in seen:
        seen = (*seen, inner)
        inner = inner.__context__
    return str(inner)[:300]
