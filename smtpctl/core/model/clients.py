"""Who an AUTH cap counts: a client's key, and the networks an operator
trusts. Pure rules on plain values, shared by ``serve`` (servers/guard.py),
which counts clients, and the commands that list or clear what it counted
(core/reporting/throttle.py), so an address typed by an operator finds the
rows ``serve`` wrote for it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from smtpctl.core.model.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_key(peer: Any) -> str:
    """The client a cap counts: its IPv4 address, or its IPv6 /64 (one
    subscriber's network: counting single IPv6 addresses would hand a client
    2^64 fresh budgets)."""
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def parse_client(text: str) -> str:
    """An operator's ``--client``: an IP address (or an IPv6 /64 as listed),
    as the key ``serve`` counts it under. Raises ``InvalidInput`` for
    anything else."""
    value = text.strip()
    try:
        if "/" in value:
            network = ipaddress.ip_network(value, strict=False)
            if network.version != 6 or network.prefixlen != 64:
                raise ValueError
            return str(network)
        return client_key((str(ipaddress.ip_address(value)),))
    except ValueError:
        raise InvalidInput(f"--client takes an IP address (an IPv6 client is counted as its /64), not "
                           f"{text!r}") from None


def parse_networks(texts: Iterable[str], option: str = "--trusted-network") -> tuple[Network, ...]:
    """CIDR networks (``10.0.0.0/8``, ``2001:db8::/32``, or one address).
    Raises ``InvalidInput`` naming the first one that is not a network,
    or that has host bits set (``10.0.0.1/8``: a typo for which network?)."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip()))
        except ValueError as exc:
            raise InvalidInput(f"{option} takes a network in CIDR notation such as 10.0.0.0/8 or "
                               f"2001:db8::/32, not {text!r} ({exc})") from None
    return tuple(networks)


def in_networks(peer: Any, networks: Sequence[Network]) -> bool:
    """Is the peer's address (an IPv4-mapped IPv6 one as IPv4) in one of ``networks``?"""
    if not networks:
        return False
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
