"""The client's address behind trusted reverse proxies (orchestrator.trusted_proxies).

Behind nginx every peer is nginx. nginx appends the address it saw to X-Forwarded-For
(``$proxy_add_x_forwarded_for``), so the header's rightmost hop is the only one a
trusted proxy vouches for; anything left of it came from the client and may be forged.
Only when the peer is a trusted proxy is the header read, from the right, skipping
hops that are trusted proxies themselves; the first untrusted hop is the client:

    nets = parse_trusted(["127.0.0.1", "10.0.0.0/8"])
    client_address("127.0.0.1", ["6.6.6.6, 203.0.113.9"], nets)  # '203.0.113.9'
    client_address("198.51.100.1", ["203.0.113.9"], nets)       # '198.51.100.1'

``forwarded_for(settings)`` is the middleware: handlers see ``request.remote`` as the
client (login limits, logs), and ``ClientAccessLogger`` writes it in access logs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest

from plenary.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

client_key = web.RequestKey("client_key", str)


def parse_trusted(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and CIDR networks; ValueError names the entry that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (CIDR)") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """An address from a hop or peer: bare, '[v6]:port' or 'v4:port'; None otherwise."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], networks: Sequence[Network]
) -> str | None:
    """The client's address: the peer unless it is trusted, else the rightmost
    untrusted X-Forwarded-For hop (or the leftmost hop when every one is trusted).
    A hop that is not an address ends the walk at the last trusted one."""
    current = _address(peer) if peer else None
    if current is None or not _trusted(current, networks):
        return peer
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, networks):
            break
    return str(current)


def forwarded_for(settings: Settings) -> Middleware:
    """Middleware giving handlers the client's address as ``request.remote``."""
    networks = parse_trusted(settings.orchestrator.trusted_proxies)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not networks:
            return await handler(request)
        client = client_address(
            request.remote, request.headers.getall(hdrs.X_FORWARDED_FOR, []), networks
        )
        if client is None or client == request.remote:
            return await handler(request)
        request[client_key] = client  # for ClientAccessLogger, which sees this request
        return await handler(request.clone(remote=client))

    return middleware


class ClientAccessLogger(AccessLogger):
    """aiohttp's access log, with %a the client's address the middleware found."""

    def _format_line(
        self, request: BaseRequest, response: web.StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        line = super()._format_line(request, response, time)
        client = request.get(client_key) if request is not None else None
        if client is None:
            return line
        return [(key, client if key == "remote_address" else value) for key, value in line]
