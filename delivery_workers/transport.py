"""The address guard: deliveries never reach internal networks by default.

Checks every address a host name resolves to and refuses loopback, private,
link-local, multicast, reserved and unspecified ones (IPv4, IPv6 and
IPv4-mapped IPv6), unless ``allow_private_addresses`` is set for development.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from durian.exceptions import PermanentDeliveryError, TransientDeliveryError

__all__ = ["check_host", "is_public"]


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_host(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses of ``host``; raise ``PermanentDeliveryError`` if any is not public."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientDeliveryError(f"cannot resolve {host!r}: {exc.strerror}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not allow_private:
        blocked = [a for a in addresses if not is_public(a)]
        if blocked:
            raise PermanentDeliveryError(
                f"{host!r} resolves to a non-public address ({', '.join(blocked)}); deliveries "
                "to internal networks are refused (DURIAN_ALLOW_PRIVATE_ADDRESSES enables them "
                "for development)"
            )
    return addresses
