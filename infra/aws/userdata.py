"""The EC2 instance's boot script (user data), with the app carried inside it.

The script comes from `infra/aws/templates/user_data.sh`. The repository's `app/` package
travels in it as a bzip2'ed tar in base85, so an instance never needs to reach the
repository; the script unpacks it with the Python 3.11 it has just installed. bzip2 and
base85 rather than gzip and base64: about 1.5 KB less, and the 16 KB limit is close (the
app is ~30 KB of source). The app's comments stay behind too, about 1.7 KB more; each
shipped file keeps its lines and code exactly, so a traceback on an instance points at the
repository's line. The archive is deterministic (sorted names, fixed times and
owners; bzip2 stores no time stamp): the same source renders the same bytes.

AWS refuses user data over 16 KB, counted on the raw bytes before the SDK base64-encodes
them: `user_data_size()` / `ensure_fits()` let the preflight refuse an oversize script
before anything is created.
"""

from __future__ import annotations

import base64
import bz2
import hashlib
import io
import re
import shlex
import tarfile
import tokenize
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from infra.config import APP_PORT, PROJECT, STACK_NAME_RE
from infra.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_SOURCE = REPO_ROOT / "app"
TEMPLATE = Path(__file__).resolve().parent / "templates" / "user_data.sh"

# "16 KB, in raw form, before it is base64-encoded". RunInstances checks the base64 text
# against 21847 characters, which admits at most 16383 raw bytes: the limit is exclusive.
USER_DATA_LIMIT = 16384
DEFAULT_SEED_FILE = "/var/lib/seed-lb/seed"
DEFAULT_APP_HOME = "/opt/seed-lb"

# Fixed archive metadata, so the bytes depend on file contents and names only.
# 2000-01-01: tar tools warn about "implausibly old" time stamps at the epoch.
ARCHIVE_MTIME = 946684800
ARCHIVE_LINE = 76  # base85 characters per line of the heredoc
REQUIREMENTS = "requirements.txt"

# Absolute paths of plain characters: they go unquoted into a systemd unit and an
# unquoted heredoc, so no spaces, quotes, `$`, backslashes or `..`.
_SAFE_PATH = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")  # Linux user and unit names
# Directories the script must never chown to the service user (a seed file right inside).
_SHARED_DIRS = {"/var/lib", "/var/tmp", "/var/log", "/usr/local", "/usr/lib", "/etc/systemd"}  # noqa: S108


@dataclass(frozen=True)
class UserDataSize:
    """The rendered script's size against EC2's limit."""

    size: int
    limit: int = USER_DATA_LIMIT

    @property
    def fits(self) -> bool:
        return self.size < self.limit

    def describe(self) -> str:
        return f"user data is {self.size} bytes; EC2 accepts less than {self.limit}"


def user_data_size(script: str) -> UserDataSize:
    """Bytes as AWS counts them: the raw script, before base64."""
    return UserDataSize(size=len(script.encode("utf-8")))


def ensure_fits(script: str) -> UserDataSize:
    """Raise a UserError (for the preflight) when EC2 would refuse the script."""
    measured = user_data_size(script)
    if not measured.fits:
        raise UserError(
            f"{measured.describe()} (16 KB, before base64). Shrink app/ "
            "(only *.py and requirements.txt are shipped) or move code out of it."
        )
    return measured


def app_files(app_source: Path = APP_SOURCE) -> list[Path]:
    """What ships: every *.py under app/ and app/requirements.txt, without __pycache__."""
    if not (app_source / REQUIREMENTS).is_file() or not (app_source / "__main__.py").is_file():
        raise UserError(
            f"{app_source} has no __main__.py or {REQUIREMENTS}: the instance could not run "
            "`python -m app`. Run from a complete checkout of the repository."
        )
    files = [
        path
        for path in app_source.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.relative_to(app_source).parts
        and (path.suffix == ".py" or path.relative_to(app_source) == Path(REQUIREMENTS))
    ]
    return sorted(files, key=lambda p: p.relative_to(app_source).as_posix())


def without_comments(source: str) -> str:
    """Python source with its comments cut off: the same lines, the same code at the same
    columns (a coding line, which only the first two lines can hold, stays)."""
    cut: dict[int, int] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        row, col = token.start
        if token.type == tokenize.COMMENT and not (row <= 2 and "coding" in token.string):
            cut[row] = col
    lines = source.splitlines(keepends=True)
    for row, col in cut.items():
        line = lines[row - 1]
        lines[row - 1] = line[:col].rstrip() + line[len(line.rstrip("\r\n")):]
    return "".join(lines)


def app_archive(app_source: Path = APP_SOURCE) -> bytes:
    """A deterministic .tar.bz2 of the app, with members named app/<relative path>, its
    Python files without comments."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in app_files(app_source):
            data = path.read_bytes()
            if path.suffix == ".py":
                data = without_comments(data.decode("utf-8")).encode("utf-8")
            name = PurePosixPath("app") / path.relative_to(app_source).as_posix()
            info = tarfile.TarInfo(str(name))
            info.size = len(data)
            info.mtime = ARCHIVE_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return bz2.compress(tar_bytes.getvalue(), compresslevel=9)


def _base85_lines(data: bytes) -> str:
    text = base64.b85encode(data).decode("ascii")
    return "\n".join(text[i : i + ARCHIVE_LINE] for i in range(0, len(text), ARCHIVE_LINE))


def _without_comments(template: str) -> str:
    """Drop comment lines after the two-line header: ~1 KB that the app needs more.

    The template keeps them. Only whole lines starting with '#' go, and the template has
    none inside its heredocs (the archive is substituted afterwards, so a base85 line
    starting with '#' is never touched).
    """
    lines = template.splitlines(keepends=True)
    return "".join(lines[:2] + [ln for ln in lines[2:] if not ln.lstrip().startswith("#")])


def _check_inputs(app_port: int, seed_file: str, stack: str, app_home: str, user: str) -> None:
    if isinstance(app_port, bool) or not isinstance(app_port, int) or not 1 <= app_port <= 65535:
        raise UserError(f"app port {app_port!r} is not a TCP port: use 1-65535")
    for label, path in (("seed file", seed_file), ("app home", app_home)):
        if not _SAFE_PATH.match(path) or ".." in path.split("/"):
            raise UserError(
                f"{label} {path!r} must be an absolute path of letters, digits, '.', '_', '-'"
            )
    state_dir = PurePosixPath(seed_file).parent
    if len(state_dir.parts) < 3 or str(state_dir) in _SHARED_DIRS:
        # The script hands this directory to the service user: never a shared one.
        raise UserError(f"seed file {seed_file!r} needs its own directory, e.g. /var/lib/x/seed")
    if not STACK_NAME_RE.match(stack):
        raise UserError(
            f"stack name {stack!r}: start with a letter, then letters, digits or '-', "
            "at most 20 characters"
        )
    if not _SAFE_NAME.match(user):
        raise UserError(f"service user {user!r}: lower-case letters, digits, '_' or '-'")


def render_user_data(
    *,
    app_port: int = APP_PORT,
    seed_file: str = DEFAULT_SEED_FILE,
    stack: str = PROJECT,
    app_home: str = DEFAULT_APP_HOME,
    user: str = PROJECT,
    service: str = PROJECT,
    app_source: Path = APP_SOURCE,
) -> str:
    """The boot script for one instance of the stack, as text (ASCII)."""
    _check_inputs(app_port, seed_file, stack, app_home, user)
    if not _SAFE_NAME.match(service):
        raise UserError(f"service name {service!r}: lower-case letters, digits, '_' or '-'")
    archive = app_archive(app_source)
    values = {
        "STACK": stack,
        "APP_PORT": str(app_port),
        "SEED_FILE": seed_file,
        "STATE_DIR": str(PurePosixPath(seed_file).parent),
        "APP_HOME": app_home,
        "APP_USER": user,
        "SERVICE": service,
        "APP_SHA256": hashlib.sha256(archive).hexdigest(),
        "APP_ARCHIVE": _base85_lines(archive),
    }
    script = _without_comments(TEMPLATE.read_text(encoding="utf-8"))
    for key, value in values.items():
        # The values land in shell code, an unquoted heredoc and a systemd unit; the checks
        # above admit only characters that need no quoting in any of them.
        if key != "APP_ARCHIVE" and shlex.quote(value) != value:
            raise UserError(f"{key.lower()} {value!r} contains characters the script cannot carry")
        script = script.replace(f"@@{key}@@", value)
    leftover = re.findall(r"@@[A-Z_]+@@", script)
    if leftover:
        raise RuntimeError(f"user data template has unknown placeholders: {sorted(set(leftover))}")
    return script
