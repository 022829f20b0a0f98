"""The load generator: wrk (Debian's package), run with --latency and its report parsed.

Only wrk is implemented. Without it on PATH the throughput section is skipped with a
message that says how to get it; a pip-installable generator is not wired in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from infra.errors import UserError

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}  # to milliseconds
_METRIC_UNITS = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}

_LATENCY_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.M)
_RPS = re.compile(r"^Requests/sec:\s*([\d.]+)\s*$", re.M)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_VERSION = re.compile(r"^wrk\s+(\S+)")


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    non_2xx: int

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


def to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Read a `wrk --latency` report. Raises ValueError if a needed line is missing."""
    percentiles = {float(p): to_ms(v, u) for p, v, u in _LATENCY_PCT.findall(output)}
    requests = _REQUESTS.search(output)
    rps = _RPS.search(output)
    if requests is None or rps is None or 50.0 not in percentiles or 99.0 not in percentiles:
        raise ValueError("not a complete `wrk --latency` report:\n" + output.strip())
    sock = _SOCKET_ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        requests=int(requests.group(1)),
        duration_s=to_ms(requests.group(2), requests.group(3)) / 1e3,
        requests_per_sec=float(rps.group(1)),
        p50_ms=percentiles[50.0],
        p99_ms=percentiles[99.0],
        socket_errors=sum(int(n) for n in sock.groups()) if sock else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def find_wrk() -> str | None:
    return shutil.which("wrk")


def wrk_version(path: str) -> str:
    # `wrk --version` prints its banner and the usage, and exits 1.
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    match = _VERSION.search(out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def run_wrk(path: str, url: str, *, duration_s: int, connections: int, threads: int,
            timeout_s: int = 5) -> WrkResult:
    argv = [path, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s",
            f"--timeout={timeout_s}s", "--latency", url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30,
                          check=False)
    if proc.returncode != 0:
        raise UserError(f"wrk failed against {url} (exit {proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()}")
    return parse_wrk(proc.stdout)
