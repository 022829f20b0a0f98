"""The off-machine guard: only loopback may be connected to or looked up (and the booted
testbed's own machines, on the veths its code made).

Its own module (not conftest) so that tests can import OffMachineTraffic by a name that
no subfolder's conftest.py shadows.
"""

from __future__ import annotations

import ipaddress
import os
import socket


class OffMachineTraffic(BaseException):
    """A BaseException, so that no library's `except Exception` (botocore's retries,
    requests' adapters) can swallow it and carry on."""


def _is_loopback(host) -> bool:
    if host is None:
        return True  # AF_UNIX and the like
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host)
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


# The booted testbed's machines (infra/local/machines/network.py): 10.213.0.0/16 in /30s,
# block N's host veth named slb-m<N>. Allowed only while that veth exists on this host.
MACHINES = ipaddress.ip_network("10.213.0.0/16")


def _our_machine(host) -> bool:
    try:
        address = ipaddress.ip_address(str(host))
    except ValueError:
        return False
    if address not in MACHINES:
        return False
    block = (int(address) - int(MACHINES.network_address)) // 4
    return os.path.exists(f"/sys/class/net/slb-m{block}")


def _checked(address):
    if isinstance(address, tuple) and not _is_loopback(address[0]) and \
            not _our_machine(address[0]):
        raise OffMachineTraffic(f"test tried to connect to {address[0]}: only loopback is allowed")


def guarded_connect(self, address):
    _checked(address)
    return _real_connect(self, address)


def guarded_connect_ex(self, address):
    _checked(address)
    return _real_connect_ex(self, address)


def guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_loopback(host):
        raise OffMachineTraffic(f"test tried to resolve {host!r}: only loopback is allowed")
    return _real_getaddrinfo(host, *args, **kwargs)
