"""Does a set of security groups let a given kind of traffic through? Pure functions.

Security groups are allow-lists: traffic passes when any rule of any group attached to
the resource matches it. A rule matches a port when its protocol is TCP (or all traffic)
and its range covers the port.
"""

from __future__ import annotations

import ipaddress

ANYWHERE_V4 = ipaddress.ip_network("0.0.0.0/0")


def _covers_port(perm: dict, port: int) -> bool:
    proto = str(perm.get("IpProtocol", ""))
    if proto == "-1":
        return True  # all traffic, no port range
    if proto not in ("tcp", "6"):
        return False
    low, high = perm.get("FromPort"), perm.get("ToPort")
    if low is None or high is None:
        return False
    if low == -1 and high == -1:
        return True
    return low <= port <= high


def _cidrs(perm: dict) -> list[ipaddress.IPv4Network]:
    out = []
    for item in perm.get("IpRanges", []):
        try:
            out.append(ipaddress.ip_network(item["CidrIp"], strict=False))
        except (KeyError, ValueError):
            continue
    return out


def _group_ids(perm: dict) -> set[str]:
    return {pair["GroupId"] for pair in perm.get("UserIdGroupPairs", []) if "GroupId" in pair}


def allows_from_anywhere(groups: list[dict], port: int) -> bool:
    """Inbound TCP `port` from 0.0.0.0/0, as the autograder on the internet needs."""
    return any(
        _covers_port(perm, port) and ANYWHERE_V4 in _cidrs(perm)
        for group in groups
        for perm in group.get("IpPermissions", [])
    )


def allows_from(groups: list[dict], port: int, source_groups: set[str],
                source_cidrs: list[str], *, egress: bool = False) -> bool:
    """Traffic on `port` from (or, with egress, to) a peer known by its security groups or
    by the CIDR blocks its addresses lie in: a rule naming one of the groups, or a CIDR that
    contains every one of the blocks, lets it through."""
    peers = [ipaddress.ip_network(c, strict=False) for c in source_cidrs]
    key = "IpPermissionsEgress" if egress else "IpPermissions"
    for group in groups:
        for perm in group.get(key, []):
            if not _covers_port(perm, port):
                continue
            if _group_ids(perm) & source_groups:
                return True
            for cidr in _cidrs(perm):
                if peers and all(peer.subnet_of(cidr) for peer in peers):
                    return True
    return False


def describe_rule_summary(groups: list[dict], port: int) -> str:
    """What the groups do allow on `port` inbound, for a finding's message."""
    parts = []
    for group in groups:
        for perm in group.get("IpPermissions", []):
            if not _covers_port(perm, port):
                continue
            sources = [str(c) for c in _cidrs(perm)] + sorted(_group_ids(perm))
            parts.extend(sources)
    return ", ".join(parts) if parts else "nothing"
