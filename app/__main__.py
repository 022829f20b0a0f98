"""`python -m app`: serve the seed app with gunicorn, configured here rather than by flags
scattered over user data, systemd units and Makefiles."""

from __future__ import annotations

import argparse
import os
import sys

from gunicorn.app.base import BaseApplication

# Chosen from measurements on a 2-core machine (README, "The app" / "Concurrency").
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 4
# Longer than the ALB's 60 s idle timeout, so the load balancer, not the app, closes idle
# connections; otherwise a request can meet a connection the app just closed (a 502).
KEEPALIVE_SECONDS = 75

EPILOG = """\
environment:
  INSTANCE_ID       value of the X-Served-By header on every response (default: host name)
  SEED_FILE         file that keeps the seed across restarts (default: memory only)
  APP_WORKERS       default for --workers (also read: WEB_CONCURRENCY)
  APP_THREADS       default for --threads

every worker process and thread shares one seed: once a POST returns, every later GET
returns its value. Access log (combined format) on stdout, errors with tracebacks on stderr.

examples:
  python -m app                                   # 127.0.0.1:5000
  python -m app --host 0.0.0.0 --port 5000        # reachable from the load balancer
  INSTANCE_ID=i-0abc SEED_FILE=/var/lib/seed-lb/seed python -m app --host 0.0.0.0
  flask --app app run                             # development server (single process)
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if os.environ.get(name):
            try:
                return _positive_int(os.environ[name])
            except argparse.ArgumentTypeError as err:
                sys.exit(f"error: environment variable {name}: {err}")
    return default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Serve the seed app (GET / returns the seed, POST / {\"num\": N} sets it,"
                    " GET /health) with the production server, gunicorn.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=5000,
                        help="TCP port to listen on (default: %(default)s)")
    parser.add_argument("--workers", type=_positive_int,
                        default=_env_int(("APP_WORKERS", "WEB_CONCURRENCY"), DEFAULT_WORKERS),
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--threads", type=_positive_int,
                        default=_env_int(("APP_THREADS",), DEFAULT_THREADS),
                        help="threads per worker (default: %(default)s)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error", "critical"],
                        help="error log level (default: %(default)s)")
    parser.add_argument("--no-access-log", action="store_true",
                        help="do not log one line per request (for benchmarks)")
    return parser


def gunicorn_options(args: argparse.Namespace) -> dict:
    """The project's gunicorn configuration for the parsed command line."""
    return {
        "bind": [f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"],
        "workers": args.workers,
        "threads": args.threads,
        "worker_class": "gthread",
        # The app (and so the shared seed) is created once in the master, before the fork.
        "preload_app": True,
        "keepalive": KEEPALIVE_SECONDS,
        "timeout": 30,
        # Requests take milliseconds; a stop (systemd, the testbed's failover drill) need
        # not wait longer for workers than this before gunicorn kills them.
        "graceful_timeout": 5,
        "accesslog": None if args.no_access_log else "-",  # combined log format, stdout
        "errorlog": "-",  # stderr
        "loglevel": args.log_level,
        "proc_name": "seed-lb-app",
        # gunicorn >= 25 opens a control socket at a fixed per-user path by default; several
        # app processes on one machine (the local testbed) would fight over it.
        "control_socket_disable": True,
    }


class SeedServer(BaseApplication):
    """gunicorn with the options above and the app from create_app()."""

    def __init__(self, options: dict, app_config: dict | None = None):
        self.options = options
        self.app_config = app_config
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        import logging

        from . import create_app

        # The app's own lines (seed restored, seed file corrupt, tracebacks) in gunicorn's
        # error log format and stream; Flask adds its default handler only to a bare logger.
        gunicorn_logger = logging.getLogger("gunicorn.error")
        app_logger = logging.getLogger("app")
        app_logger.handlers = list(gunicorn_logger.handlers)
        app_logger.setLevel(gunicorn_logger.level)  # --log-level applies to both
        app_logger.propagate = False
        return create_app(self.app_config)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        build_parser().error(f"--port {args.port} is not a TCP port (1-65535)")
    SeedServer(gunicorn_options(args)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
