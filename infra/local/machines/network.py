"""A booted instance's network: its own namespace, a veth /30 to the host, nftables inside.

    slb-m<N> (host)  10.213.x.y+1/30  <---- veth ---->  eth0 (in netns slb-m<N>)  10.213.x.y+2/30

Block N of 10.213.0.0/16 (16384 /30s) is the first whose namespace does not exist yet;
`ip netns add` claims it atomically, so parallel testbeds never share one. Every name the
host sees starts with `slb-` (namespace and host veth) or `slb_` (nftables tables, which
live inside the namespace and go with it).

While any machine exists, the host has a blackhole route for all of 10.213.0.0/16 (each
/30 on its veth is more specific): a packet for a machine that is gone, from a health check
or a proxy that has not stopped yet, is dropped here instead of following the default
route off this machine. `sweep` removes it once no namespace of ours is left.

Inside the namespace, two nftables tables:
- `ip slb_imds`: 169.254.169.254:80 is DNATed to the machine's IMDS on the host's end of
  the veth (machines/imds.py); a /32 route sends it over eth0. There is no other route.
- `inet slb_sg`: the instance's security groups (`render_security_groups`), inbound:
  stateful (replies pass), everything else dropped, so a closed port times out as on AWS.
  The host's end of the veth is where the load balancer's traffic comes from (Caddy and its
  health checks); a rule admits it when it names one of the load balancer's security groups
  or a CIDR that covers the load balancer's subnets, the same test as infra/aws/sg_rules.py
  and the doctor's. Outbound rules are not modelled: the boot reaches only its IMDS and
  wheelhouse on the host, and deploy leaves outbound open.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

PREFIX = "slb-"
BLOCK = ipaddress.ip_network("10.213.0.0/16")
BLOCKS = BLOCK.num_addresses // 4
NETNS_DIR = Path("/run/netns")
IMDS_ADDRESS = "169.254.169.254"
IMDS_TABLE = "slb_imds"
SG_TABLE = "slb_sg"
PEER_IFNAME = "eth0"


@dataclass(frozen=True)
class Link:
    """One machine's namespace and veth pair."""

    block: int
    netns: str
    host_if: str
    host_ip: str
    peer_ip: str

    @classmethod
    def for_block(cls, block: int) -> Link:
        base = BLOCK.network_address + 4 * block
        name = f"{PREFIX}m{block}"
        return cls(block, name, name, str(base + 1), str(base + 2))

    def to_dict(self) -> dict:
        return asdict(self)


def run(argv: list[str], *, input: str | None = None, check: bool = True,  # noqa: A002
        timeout: float = 20.0) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}")
    return result


def in_netns(netns: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return run(["ip", "netns", "exec", netns, *argv], **kwargs)


def guard_block() -> None:
    """The blackhole route for the whole block (idempotent)."""
    run(["ip", "route", "replace", "blackhole", str(BLOCK)])


def unguard_block_if_idle() -> bool:
    """Remove the blackhole route when no namespace of ours is left; True if removed."""
    if any(NETNS_DIR.glob(f"{PREFIX}m*")) if NETNS_DIR.is_dir() else False:
        return False
    return run(["ip", "route", "del", "blackhole", str(BLOCK)], check=False).returncode == 0


def block_guarded() -> bool:
    return bool(run(["ip", "route", "show", "type", "blackhole", str(BLOCK)],
                    check=False).stdout.strip())


def create() -> Link:
    """Claim the first free block, then build its namespace and veth pair. One at a time on
    this host: the first `ip netns add` makes /run/netns a mount point, and two at once can
    stack two mounts there, hiding the first namespace."""
    from infra.local.machines.image import cache_root, file_lock

    with file_lock(cache_root() / "locks" / "netns.lock"):
        return _create()


def _create() -> Link:
    guard_block()
    for block in range(BLOCKS):
        link = Link.for_block(block)
        if (NETNS_DIR / link.netns).exists() or Path(f"/sys/class/net/{link.host_if}").exists():
            continue
        if run(["ip", "netns", "add", link.netns], check=False).returncode != 0:
            continue  # another testbed took it a moment ago
        try:
            _wire(link)
        except BaseException:
            destroy(link)
            raise
        return link
    raise RuntimeError(f"no free /30 left in {BLOCK} for another machine")


def _wire(link: Link) -> None:
    ns = link.netns
    host = [
        f"link add {link.host_if} type veth peer name {PEER_IFNAME} netns {ns}",
        f"addr add {link.host_ip}/30 dev {link.host_if}",
        f"link set {link.host_if} up",
    ]
    inside = [
        f"addr add {link.peer_ip}/30 dev {PEER_IFNAME}",
        f"link set {PEER_IFNAME} up",
        "link set lo up",
        # EC2's IMDS is link-local: the only route besides the /30 itself.
        f"route add {IMDS_ADDRESS}/32 dev {PEER_IFNAME} scope link",
    ]
    run(["ip", "-batch", "-"], input="\n".join(host) + "\n")
    run(["ip", "-n", ns, "-batch", "-"], input="\n".join(inside) + "\n")


def install_imds_redirect(link: Link, imds_port: int) -> None:
    """169.254.169.254:80 -> the IMDS on the host's end; inbound dropped until the security
    groups are applied."""
    ruleset = (
        f"table ip {IMDS_TABLE} {{\n"
        f"  chain output {{\n"
        f"    type nat hook output priority -100; policy accept;\n"
        f"    ip daddr {IMDS_ADDRESS} tcp dport 80 dnat to {link.host_ip}:{imds_port}\n"
        f"  }}\n"
        f"}}\n"
        + render_security_groups([], set(), [], link.host_ip)
    )
    in_netns(link.netns, ["nft", "-f", "-"], input=ruleset)


def destroy(link: Link) -> None:
    """Kill whatever runs in the namespace, delete it (its veth end with it) and the host's
    veth end if it is still there. Safe to call twice."""
    kill_netns_processes(link.netns)
    if (NETNS_DIR / link.netns).exists():
        run(["ip", "netns", "del", link.netns], check=False)
    if Path(f"/sys/class/net/{link.host_if}").exists():
        run(["ip", "link", "del", link.host_if], check=False)


def netns_processes(netns: str) -> list[int]:
    """Pids of the processes whose network namespace is `netns` (what `ip netns pids` says,
    without a process per call)."""
    try:
        target = os.stat(NETNS_DIR / netns)
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{entry}/ns/net")
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                found.append(int(entry))
    return found


def kill_netns_processes(netns: str, rounds: int = 50) -> None:
    """SIGKILL everything in the namespace until nothing is left (a dying machine's init may
    still fork for a moment)."""
    import signal
    import time

    for _ in range(rounds):
        pids = [p for p in netns_processes(netns) if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def leftovers() -> dict[str, list[str]]:
    """Every namespace and host interface named like ours, on this host (for tests)."""
    namespaces = sorted(p.name for p in NETNS_DIR.glob(f"{PREFIX}*")) \
        if NETNS_DIR.is_dir() else []
    links = sorted(p.name for p in Path("/sys/class/net").glob(f"{PREFIX}*"))
    routes = [f"blackhole {BLOCK}"] if block_guarded() else []
    return {"namespaces": namespaces, "links": links, "routes": routes}


# --- security groups -> nftables ------------------------------------------------------------
_PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp"}
ANYWHERE_V4 = ipaddress.ip_network("0.0.0.0/0")
ANYWHERE_V6 = ipaddress.ip_network("::/0")


def _comment(text: str) -> str:
    return 'comment "' + re.sub(r'[^A-Za-z0-9 ._:/,()+=-]', "", text)[:120] + '"'


def _port_match(perm: dict, proto: str) -> str | None:
    """The nft match for the rule's protocol and ports ('' for all traffic; None: skip)."""
    if proto == "-1":
        return ""
    kind = _PROTOCOLS.get(proto)
    if kind is None:
        return None  # another IP protocol: nothing in the testbed speaks it
    low, high = perm.get("FromPort"), perm.get("ToPort")
    if kind == "icmp":
        if low in (None, -1):
            return "meta l4proto icmp"
        return f"icmp type {int(low)}" + ("" if high in (None, -1) else f" icmp code {int(high)}")
    if low in (None, -1) or high in (None, -1):
        return f"meta l4proto {kind}"
    ports = str(low) if low == high else f"{low}-{high}"
    return f"{kind} dport {ports}"


def _cidrs(perm: dict, ranges: str, key: str):
    """The networks of a rule's IpRanges (CidrIp) or Ipv6Ranges (CidrIpv6); a malformed
    one matches nothing, so it is left out."""
    for item in perm.get(ranges, []):
        try:
            network = ipaddress.ip_network(item.get(key, ""), strict=False)
        except ValueError:
            continue
        yield network


def _sources(perm: dict, lb_groups: set[str], lb_nets: list, lb_source: str):
    """(nft source match, why) for each source of a rule that can match in the testbed."""
    for cidr in _cidrs(perm, "IpRanges", "CidrIp"):
        if cidr == ANYWHERE_V4:
            yield "meta nfproto ipv4", "from 0.0.0.0/0"
        elif lb_nets and all(net.subnet_of(cidr) for net in lb_nets):
            yield f"ip saddr {lb_source}", f"from {cidr}, which covers the load balancer's subnets"
        else:
            yield f"ip saddr {cidr}", f"from {cidr}"
    for cidr in _cidrs(perm, "Ipv6Ranges", "CidrIpv6"):
        if cidr == ANYWHERE_V6:
            yield "meta nfproto ipv6", "from ::/0"
        else:
            yield f"ip6 saddr {cidr}", f"from {cidr}"
    for pair in perm.get("UserIdGroupPairs", []):
        group = pair.get("GroupId", "")
        if group in lb_groups:
            yield f"ip saddr {lb_source}", f"from {group}, the load balancer's group"
        # another group's members (other instances) have no path to this machine here


def render_security_groups(groups: list[dict], lb_groups: set[str], lb_cidrs: list[str],
                           lb_source: str) -> str:
    """The `inet slb_sg` table for an instance with these security groups (as
    DescribeSecurityGroups gives them). `lb_source`: where the load balancer's traffic comes
    from (the host's end of the veth). Replaces the table in one transaction."""
    lb_nets = []
    for cidr in lb_cidrs:
        with contextlib.suppress(ValueError):
            lb_nets.append(ipaddress.ip_network(cidr, strict=False))
    rules = []
    for group in groups:
        gid = group.get("GroupId", "?")
        for perm in group.get("IpPermissions", []):
            ports = _port_match(perm, str(perm.get("IpProtocol", "")))
            if ports is None:
                continue
            what = "all traffic" if perm.get("IpProtocol") == "-1" else \
                f"{perm.get('IpProtocol')} {perm.get('FromPort')}-{perm.get('ToPort')}"
            for source, why in _sources(perm, lb_groups, lb_nets, lb_source):
                match = " ".join(x for x in (source, ports) if x)
                rules.append(f"    {match} accept {_comment(f'{gid}: {what} {why}')}")
    body = "\n".join(rules) if rules else "    # no inbound rule admits anything"
    return (
        f"table inet {SG_TABLE}\n"
        f"delete table inet {SG_TABLE}\n"
        f"table inet {SG_TABLE} {{\n"
        f"  chain input {{\n"
        f"    type filter hook input priority 0; policy drop;\n"
        f"    ct state established,related accept\n"
        f"    iif \"lo\" accept\n"
        f"{body}\n"
        f"  }}\n"
        f"}}\n"
    )


def apply_security_groups(link: Link, ruleset: str) -> None:
    in_netns(link.netns, ["nft", "-f", "-"], input=ruleset)
