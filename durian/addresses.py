"""Which network addresses a webhook may be delivered to.

Only public (globally routable, non-multicast) addresses by default: never
loopback, private, link-local, multicast, reserved or unspecified ones, in
IPv4, IPv6 or IPv4-mapped IPv6 form. Both delivery paths (the delivery
workers and the producer's inline mode) ask this module.
"""

from __future__ import annotations

import ipaddress

__all__ = ["blocked_reason", "is_public"]


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def blocked_reason(host: str, addresses: list[str]) -> str | None:
    """Why a delivery to ``host`` (resolved to ``addresses``) is refused, or ``None``."""
    blocked = [address for address in addresses if not is_public(address)]
    if not blocked:
        return None
    return (
        f"{host!r} resolves to a non-public address ({', '.join(blocked)}); deliveries to "
        "internal networks are refused (DURIAN_ALLOW_PRIVATE_ADDRESSES enables them "
        "for development)"
    )
