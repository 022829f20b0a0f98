"""What the figures were measured on: CPU, cores, memory, OS, tool versions, load."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1024 * 1024)
    return None


def os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    return f"{platform.system()} {platform.release()}"


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def caddy_version(caddy: str | None) -> str:
    if caddy is None:
        return "not found"
    out = subprocess.run([caddy, "version"], capture_output=True, text=True, check=False)
    return (out.stdout.split() or ["unknown"])[0]


def describe_machine(wrk_version: str, caddy: str | None) -> dict[str, str]:
    mem = memory_gib()
    return {
        "CPU": cpu_model(),
        "Cores": str(os.cpu_count()),
        "Memory": f"{mem:.1f} GiB" if mem else "unknown",
        "OS": os_name(),
        "Python": platform.python_version(),
        "wrk": wrk_version,
        "Caddy": caddy_version(caddy),
        "granian / gunicorn": f"{package_version('granian')} / {package_version('gunicorn')}",
        "Flask / Werkzeug": f"{package_version('flask')} / {package_version('werkzeug')}",
        "moto / boto3": f"{package_version('moto')} / {package_version('boto3')}",
    }
