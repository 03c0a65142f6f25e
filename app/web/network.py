"""The server's own addresses, for a join link people in the room can open.

A presenter who opened the room on the server itself (localhost) would put `localhost` in the
QR code, which on a participant's phone means the phone. The server knows its interfaces: it
lists the join link at each of its LAN addresses instead, read from the kernel (no traffic).
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def interface_addresses() -> list[str]:
    """IPv4 addresses of this machine's interfaces, loopback and link-local left out."""
    found = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR,
                                     struct.pack("256s", name[:15].encode()))
            except OSError:  # no IPv4 address on it
                continue
            found.append(socket.inet_ntoa(packed[20:24]))
    usable = [a for a in found if not (ipaddress.ip_address(a).is_loopback
                                       or ipaddress.ip_address(a).is_link_local)]
    return list(dict.fromkeys(usable))


def lan_urls(request_url, join_url: str) -> list[str]:
    """The join link at each LAN address when the presenter's address is loopback, else []."""
    if not is_loopback(request_url.hostname or ""):
        return []
    port = f":{request_url.port}" if request_url.port else ""
    path = join_url.split("://", 1)[-1].split("/", 1)[-1]
    return [f"{request_url.scheme}://{addr}{port}/{path}" for addr in interface_addresses()]
