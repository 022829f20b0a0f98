"""Errors the CLI reports as one clear line, without a traceback."""


class UserError(Exception):
    """A mistake the user can fix: bad input, missing credentials, a port in use.

    The message says what was wrong and what to do next.
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def not_installed(what: str, setup: str = "make setup") -> str:
    """What to say when `what` (a package, Caddy) is missing: the set-up that installs it,
    and, when this Python is not the project's .venv (a bare `python` in a fresh shell is the
    system's), this very command again with the .venv's Python, which `setup` fills."""
    import shlex
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    venv = root / ".venv"
    if Path(sys.prefix).resolve() == venv.resolve():
        return f"{what} is not installed in .venv: run `{setup}`"
    where = Path(".venv") if (Path.cwd() / ".venv").resolve() == venv.resolve() else venv
    args = sys.argv[1:] if sys.argv and sys.argv[0].endswith("__main__.py") else ["..."]
    again = shlex.join([str(where / "bin" / "python"), "-m", "infra", *args])
    return (f"{what} is not installed for {sys.executable}, which is not the project's "
            f".venv: run `{setup}`, then `{again}`")
