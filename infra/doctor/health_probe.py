"""GET an instance's health check path directly, as the load balancer would.

Only for real AWS, from the operator's machine: the doctor never calls it against an
emulator or with SEEDLB_LOOPBACK_ONLY=1. Bounded: one request, a short timeout, no retries.
"""

from __future__ import annotations

import requests

PROBE_TIMEOUT = 3.0


def probe_health_check(address: str, port: int, path: str,
                       timeout: float = PROBE_TIMEOUT) -> tuple[int | None, str]:
    """(HTTP status, "") when the instance answered, else (None, why not)."""
    if not path.startswith("/"):
        path = "/" + path
    url = f"http://{address}:{port}{path}"
    try:
        response = requests.get(url, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        return None, f"no answer within {timeout:g}s"
    except requests.ConnectionError as exc:
        return None, f"connection failed: {type(exc).__name__}"
    return response.status_code, ""
