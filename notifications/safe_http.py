"""Sending an HTTP request to an address somebody else chose (a webhook endpoint) without
letting them point it at the console's own network (SSRF), or hold it past a deadline.

The host is resolved once and refused unless every address is public; the connection goes
to an address that was checked, so a DNS answer that changes in between cannot redirect it;
and every read and write ends at one wall-clock deadline. Only the webhooks use it: the
gateway's upstreams are configured by staff and may well be private."""

import ipaddress
import socket
import time
from typing import Any

import httpcore
import httpx
from django.views.decorators.debug import sensitive_variables

# Each phase of a request gets the full timeout, but never past the deadline.
PHASES = ("connect", "read", "write", "pool")


class AddressNotPublic(Exception):
    """The host resolves to an address that is not public."""


def address_is_public(address: str) -> bool:
    """Whether an IP address is on the public internet (not loopback, private, link-local
    such as 169.254.169.254, reserved, multicast or unspecified)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone index is not the address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


def host_is_private_literal(host: str) -> bool:
    """`localhost` or an IP literal that is not public (a name is checked when it is sent)."""
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not address_is_public(host)
    except ValueError:
        return False


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends at the deadline: the per-phase timeouts
    alone let a server that trickles its answer hold the request for ever."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream = stream
        self._deadline = deadline

    def _timeout(self, timeout: float | None, error: type[Exception]) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise error("the attempt's deadline passed")
        return remaining if timeout is None else min(timeout, remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        stream = self._stream.start_tls(
            ssl_context, server_hostname, self._timeout(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _PublicAddressBackend(httpcore.SyncBackend):
    """Resolves the host once, refuses it unless every address is public (or private networks
    are allowed), and connects to an address it checked: a DNS answer that changes between
    the check and the connection cannot redirect the request. TLS still verifies the host
    name."""

    def __init__(self, *, deadline: float, allow_private: bool):
        self._deadline = deadline
        self._allow_private = allow_private

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise httpcore.ConnectError("the host name did not resolve") from error
        addresses = list(dict.fromkeys(info[4][0] for info in resolved))
        if not self._allow_private and not all(address_is_public(a) for a in addresses):
            raise AddressNotPublic
        last_error: Exception = httpcore.ConnectError("no address")
        for address in addresses:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise httpcore.ConnectTimeout("the attempt's deadline passed")
            try:
                stream = super().connect_tcp(
                    address,
                    port,
                    timeout=remaining if timeout is None else min(timeout, remaining),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
                continue
            return _DeadlineStream(stream, self._deadline)
        raise last_error


@sensitive_variables("headers")
def post_status(
    url: str,
    *,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
    deadline: float,
    allow_private: bool,
) -> int:
    """POST `body` to `url` and return the status code (the response body is never read):
    each phase within `timeout` seconds, all of it before `deadline` (a `time.monotonic()`
    value). Raises AddressNotPublic, httpcore's TimeoutException, NetworkError or
    ProtocolError, or whatever a URL that cannot be sent raises."""
    parsed = httpx.URL(url)
    backend = _PublicAddressBackend(deadline=deadline, allow_private=allow_private)
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    with (
        httpcore.ConnectionPool(network_backend=backend, max_connections=1) as pool,
        pool.stream(
            "POST",
            target,
            headers=list(headers.items()),
            content=body,
            extensions={"timeout": dict.fromkeys(PHASES, timeout)},
        ) as response,
    ):
        return response.status
