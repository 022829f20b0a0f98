"""Which addresses a grade for others may reach: public ones only.

A class run (`--roster`) and Gradescope (`--gradescope`, `--submission`) grade addresses that
students typed, on the instructor's machine or on Gradescope's cloud hosts. Without this, a
submission of `169.254.169.254`, `127.0.0.1:PORT`, `10.0.0.5` or a name that resolves to one
of them has the grading host fetch its own metadata service or private network, and shows
the student part of the answer (server-side request forgery). So the grader resolves each
name once, checks every address it resolves to here, and connects only to the addresses it
checked (http_probe.ProbeClient keeps them): a name that answers differently the second
time (DNS rebinding) is never asked a second time.

Addresses that embed an IPv4 address (::ffff:10.0.0.1, 6to4, Teredo, NAT64's 64:ff9b::/96)
are judged by the IPv4 address they lead to.
"""

from __future__ import annotations

import ipaddress

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_KINDS = (
    ("is_unspecified", "the unspecified address"),
    ("is_loopback", "a loopback address (this machine)"),
    ("is_link_local", "a link-local address (169.254.0.0/16 or fe80::/10: the cloud "
                      "metadata service lives there)"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private address (RFC 1918, fc00::/7 and the like)"),
    ("is_reserved", "a reserved address"),
)


def not_public(ip: str) -> str | None:
    """Why `ip` is not a public unicast address (a phrase), or None when it is public."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return "not an IP address"
    for inner in _embedded(addr):
        why = not_public(str(inner))
        if why:
            return f"{why}, inside {addr}"
    for attribute, words in _KINDS:
        if getattr(addr, attribute):
            return words
    if not addr.is_global:  # 100.64.0.0/10 (carrier NAT), 192.0.0.0/24, ...
        return "not a globally routable address"
    return None


def _embedded(addr) -> list:
    if addr.version != 6:
        return []
    found = [addr.ipv4_mapped, addr.sixtofour]
    if addr.teredo:
        found += list(addr.teredo)
    if addr in _NAT64:
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return [a for a in found if a is not None]
