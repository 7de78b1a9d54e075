"""Which network addresses a webhook may be delivered to.

Only public (globally routable, non-multicast) addresses by default: never
loopback, private, link-local, multicast, reserved or unspecified ones, in
IPv4, IPv6 or IPv4-mapped IPv6 form. ``AddressPolicy`` adds the settings'
openings: every address (``allow_private_addresses``, development) or a list
of networks (``address_allowlist``). Both delivery paths (the delivery
workers and the producer's inline mode) ask this module.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from durian.conf import Settings

__all__ = ["AddressPolicy", "is_public"]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(address: str) -> _Address:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_public(address: str) -> bool:
    ip = _parse(address)
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class AddressPolicy:
    """The addresses deliveries may reach: public ones, plus the settings' openings."""

    allow_all: bool = False
    allowlist: tuple[_Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        return cls(
            allow_all=settings.allow_private_addresses,
            allowlist=tuple(
                ipaddress.ip_network(n, strict=False) for n in settings.address_allowlist
            ),
        )

    def allows(self, address: str) -> bool:
        if self.allow_all or is_public(address):
            return True
        ip = _parse(address)
        return any(ip.version == net.version and ip in net for net in self.allowlist)

    def blocked_reason(self, host: str, addresses: Iterable[str]) -> str | None:
        """Why a delivery to ``host`` (resolved to ``addresses``) is refused, or ``None``."""
        blocked = sorted({address for address in addresses if not self.allows(address)})
        if not blocked:
            return None
        return (
            f"{host!r} resolves to a non-public address ({', '.join(blocked)}); deliveries to "
            "internal networks are refused (DURIAN_ADDRESS_ALLOWLIST opens given networks, "
            "DURIAN_ALLOW_PRIVATE_ADDRESSES all of them, for development)"
        )
