"""`python -m app`: the seed app on granian, configured here. Why granian: docs/app.md."""

from __future__ import annotations

import argparse
import logging.config
import os
import signal
import socket
import sys
from functools import partial

WORKERS = 2  # one per core of the 2-core machines measured
IDLE_SECONDS = 75  # headers and keep-alive idle: over the ALB's 60 s (docs/app.md)
BODY_SECONDS = 10
STOP_SECONDS = 1  # after SIGTERM, workers still busy are killed (requests take ms)
HEADER_BYTES = 16384  # a request head's bound (granian's default: 408 KiB a connection)

EPILOG = """\
environment: INSTANCE_ID (X-Served-By; default: host name), SEED_FILE (keeps the seed
across restarts; default: memory only), APP_WORKERS or WEB_CONCURRENCY (--workers).
Access log on stdout, errors on stderr; SIGTERM, SIGINT or SIGQUIT stop the server.
example: INSTANCE_ID=i-0abc SEED_FILE=/var/lib/seed-lb/seed python -m app --host 0.0.0.0
"""


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a "
                                             f"{'whole ' * (kind is int)}number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be more than 0")
        return value
    return parse


def _env_int(*names: str, default: int | None = None) -> int | None:
    for name in names:
        if os.environ.get(name):
            try:
                return _positive(int)(os.environ[name])
            except argparse.ArgumentTypeError as err:
                sys.exit(f"error: environment variable {name}: {err}")
    return default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the seed app (GET / returns the seed, POST / {\"num\": N} sets it, "
                    "GET /health) with the production server, granian.")
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    add("--port", type=int, default=5000, help="TCP port (%(default)s)")
    add("--workers", type=_positive(int), default=_env_int("APP_WORKERS", "WEB_CONCURRENCY",
        default=WORKERS), help="worker processes (%(default)s)")
    add("--threads", type=_positive(int), default=_env_int("APP_THREADS"),
        help="ignored (also APP_THREADS): a worker serves from one event loop")
    add("--idle-timeout", type=_positive(float), default=IDLE_SECONDS, metavar="S",
        help="seconds for a request's headers, keep-alive idle included (%(default)s)")
    add("--body-timeout", type=_positive(float), default=BODY_SECONDS, metavar="S",
        help="seconds for the body after the headers, else 408 (%(default)s)")
    add("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add("--no-access-log", action="store_true", help="no line per request (for benchmarks)")
    return parser


def log_config(level: str) -> dict:
    """granian's and the app's lines on stderr, with time and pid (the access log: server.py)."""
    logger = {"handlers": ["error"], "level": level.upper(), "propagate": False}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"error": {
            "format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"}},
        "handlers": {"error": {"class": "logging.StreamHandler", "formatter": "error",
                               "stream": "ext://sys.stderr"}},
        "loggers": {"_granian": logger, "app": logger},
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        build_parser().error(f"--port {args.port} is not a TCP port (1-65535)")
    if args.threads:
        print("note: --threads and APP_THREADS are ignored now; see --workers", file=sys.stderr)
    try:
        from granian.http import HTTP1Settings
        from granian.server import Server
    except ImportError as err:
        sys.exit(f"error: {err}; install app/requirements.txt (`make setup` does)")
    # granian's workers bind with SO_REUSEPORT: a second server on a port in use would start
    # and silently share it. A probe without that option fails instead.
    with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((args.host, args.port))
        except OSError as err:
            sys.exit(f"error: cannot listen on {args.host}:{args.port}: {err.strerror}. "
                     "Stop what listens there, or choose another --host or --port.")
    logging.config.dictConfig(log_config(args.log_level))
    from . import from_environment, server
    from .seed_store import SeedStore

    store = SeedStore.publish(from_environment()["SEED_FILE"], logging.getLogger("app"))
    try:
        granian = Server(
            "app.server:load", address=args.host, port=args.port, interface="rsgi",
            workers=args.workers, http="1", websockets=False, log_level=args.log_level,
            http1_settings=HTTP1Settings(header_read_timeout=int(args.idle_timeout * 1000),
                                         max_buffer_size=HEADER_BYTES),
            log_dictconfig=log_config(args.log_level), respawn_failed_workers=True,
            workers_kill_timeout=STOP_SECONDS)
        # SIGQUIT too: the local testbed stops app processes with it (gunicorn's quick stop).
        granian.on_startup(lambda: signal.signal(signal.SIGQUIT, granian.signal_handler_interrupt))
        config = {"SEED_FILE": store.path, "SEED_MAP": store.map_path}
        granian.serve(target_loader=partial(server.load, config, args.body_timeout,
                                            not args.no_access_log), wrap_loader=False)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
