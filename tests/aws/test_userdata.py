"""The instance boot script: how it renders, its size, its content, and the app it carries.

The script itself never runs here (it would install packages and call the metadata
service). What it carries is checked for real: shellcheck on the rendered text, the
archive unpacked by the script's own Python snippet, the systemd unit through
`systemd-analyze verify`, and the extracted app started as a real `python -m app` (granian).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tokenize
from pathlib import Path

import pytest
import requests

from infra.aws import userdata
from infra.aws.userdata import (
    USER_DATA_LIMIT,
    app_archive,
    ensure_fits,
    render_user_data,
    user_data_size,
)
from infra.errors import UserError
from infra.local.processes import listening, wait_until

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"
SHELLCHECK = REPO / ".venv" / "bin" / "shellcheck"
CUSTOM = {"app_port": 8123, "seed_file": "/srv/seedy/state/seed.txt", "stack": "blue-2"}

ARCHIVE_RE = re.compile(r"<<'SEEDLB_APP_ARCHIVE'\n(.*?)\nSEEDLB_APP_ARCHIVE\n", re.S)
DIGEST_RE = re.compile(r'python3\.11 -c "\$UNPACK" ([0-9a-f]{64}) "\$APP_HOME" <<')
UNPACK_RE = re.compile(r"^readonly UNPACK='\n(.*?)\n'$", re.S | re.M)
UNIT_RE = re.compile(r"<<UNIT\n(.*?)\nUNIT\n", re.S)


def repo_app_files() -> dict[str, bytes]:
    """What should ship, worked out independently of infra.aws.userdata.app_files()."""
    files = {"app/requirements.txt": (APP / "requirements.txt").read_bytes()}
    for path in APP.rglob("*.py"):
        if "__pycache__" not in path.parts:
            files["app/" + path.relative_to(APP).as_posix()] = path.read_bytes()
    return files


def comments(source: str) -> list[str]:
    return [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type == tokenize.COMMENT]


def assert_ships_the_app(shipped: dict[str, bytes]) -> None:
    """Exactly the repository's app files: requirements.txt as it is, each Python file with
    the same code at the same lines and columns (the AST with positions) and no comments."""
    expected = repo_app_files()
    assert sorted(shipped) == sorted(expected)
    assert shipped["app/requirements.txt"] == expected["app/requirements.txt"]
    for name in (n for n in expected if n.endswith(".py")):
        ours, theirs = shipped[name].decode("utf-8"), expected[name].decode("utf-8")
        assert ast.dump(ast.parse(ours), include_attributes=True) == \
            ast.dump(ast.parse(theirs), include_attributes=True), name
        assert ours.count("\n") == theirs.count("\n"), name
        assert comments(ours) == [], name
    assert any(comments(expected[n].decode()) for n in expected if n.endswith(".py"))


def test_without_comments_keeps_code_strings_and_lines():
    source = ('# -*- coding: utf-8 -*-\nx = "# not a comment"  # a comment\n'
              '# a whole line\ny = [1,  # inside brackets\n     2]\n')
    assert userdata.without_comments(source) == (
        '# -*- coding: utf-8 -*-\nx = "# not a comment"\n\ny = [1,\n     2]\n')
    assert userdata.without_comments("a = 1  # c\r\nb = 2") == "a = 1\r\nb = 2"


def embedded_archive(script: str) -> bytes:
    match = ARCHIVE_RE.search(script)
    assert match, "no SEEDLB_APP_ARCHIVE heredoc in the script"
    return base64.b85decode("".join(match.group(1).split()))


def open_tar(data: bytes) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:bz2")


def unit_of(script: str) -> str:
    match = UNIT_RE.search(script)
    assert match, "no systemd unit heredoc in the script"
    return match.group(1)


def unit_entries(unit: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every line, keeping repeated keys such as Environment."""
    section, entries = "", []
    for line in unit.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            key, value = line.split("=", 1)
            entries.append((section, key, value))
    return entries


def logical_lines(script: str) -> list[str]:
    """Shell lines with backslash continuations joined, without the archive's base64."""
    code = ARCHIVE_RE.sub("<<'SEEDLB_APP_ARCHIVE'\n(archive)\nSEEDLB_APP_ARCHIVE\n", script)
    return code.replace("\\\n", " ").splitlines()


@pytest.fixture(scope="module")
def default_script() -> str:
    return render_user_data()


@pytest.fixture(scope="module")
def custom_script() -> str:
    return render_user_data(**CUSTOM)


# --- rendering -------------------------------------------------------------------------


def test_default_script_installs_python_and_logs(default_script):
    lines = default_script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "set -Eeuo pipefail" in lines
    assert "/var/log/seed-lb-userdata.log" in default_script
    dnf = [line for line in logical_lines(default_script) if line.startswith("dnf install")]
    assert len(dnf) == 1 and "-y" in dnf[0].split()
    assert {"python3.11", "python3.11-pip"} <= set(dnf[0].split())
    assert 'python3.11 -m venv "$APP_HOME/venv"' in default_script
    assert '-r "$APP_HOME/app/requirements.txt"' in " ".join(logical_lines(default_script))
    assert "readonly APP_PORT=5000\n" in default_script
    assert "readonly STATE_DIR=/var/lib/seed-lb\n" in default_script
    # Python 3.11 is installed before the script uses it to unpack the app.
    assert default_script.index("dnf install") < default_script.index('python3.11 -c "$UNPACK"')


def test_comments_stay_in_the_template_only(default_script):
    code = [line for line in logical_lines(default_script) if line.lstrip().startswith("#")]
    assert code == [
        "#!/bin/bash",
        "# seed-lb boot script, stack seed-lb: infra/aws/templates/user_data.sh, "
        "comments left out.",
    ]
    template = userdata.TEMPLATE.read_text()
    assert len([ln for ln in template.splitlines() if ln.startswith("#")]) > 10


def test_other_port_paths_and_stack(custom_script, default_script):
    assert custom_script != default_script
    unit = unit_of(custom_script)
    assert "ExecStart=/opt/seed-lb/venv/bin/python -m app --host 0.0.0.0 --port 8123" in unit
    assert "Environment=SEED_FILE=/srv/seedy/state/seed.txt" in unit.splitlines()
    assert "Description=seed-lb app (stack blue-2)" in unit
    assert "readonly STATE_DIR=/srv/seedy/state\n" in custom_script
    assert "readonly APP_PORT=8123\n" in custom_script
    assert '"http://127.0.0.1:$APP_PORT/health"' in custom_script
    assert "5000" not in unit


def test_other_install_dir_user_and_service():
    script = render_user_data(app_home="/opt/other", user="seedsvc", service="seed-two")
    unit = unit_of(script)
    assert "ExecStart=/opt/other/venv/bin/python -m app --host 0.0.0.0 --port 5000" in unit
    assert ("Service", "User", "seedsvc") in unit_entries(unit)
    assert "readonly SERVICE=seed-two\n" in script


@pytest.mark.parametrize(
    "kwargs",
    [
        {"app_port": 0},
        {"app_port": 70000},
        {"app_port": "5000"},
        {"app_port": True},
        {"seed_file": "seed"},  # relative
        {"seed_file": "/var/lib/seed lb/seed"},  # a space would split the unit's value
        {"seed_file": "/var/lib/$HOME/seed"},  # expanded by the unquoted heredoc
        {"seed_file": "/var/lib/../etc/seed"},
        {"seed_file": "/var/lib/seed"},  # would hand /var/lib to the service user
        {"seed_file": "/seed"},
        {"stack": "bad stack"},
        {"stack": "x" * 21},
        {"stack": "1abc"},
        {"app_home": "opt/seed"},
        {"user": "Root User"},
        {"service": "seed;lb"},
    ],
)
def test_bad_input_is_a_user_error(kwargs):
    with pytest.raises(UserError):
        render_user_data(**kwargs)


def test_incomplete_app_is_a_user_error(tmp_path):
    (tmp_path / "__main__.py").write_text("print('no requirements')\n")
    with pytest.raises(UserError, match="requirements.txt"):
        render_user_data(app_source=tmp_path)


# --- size ------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, CUSTOM], ids=["defaults", "custom"])
def test_under_the_16_kb_limit(kwargs):
    script = render_user_data(**kwargs)
    raw = script.encode("utf-8")
    measured = user_data_size(script)
    assert measured.size == len(raw)
    assert measured.limit == USER_DATA_LIMIT == 16384
    assert len(raw) < 16384, (
        f"user data is {len(raw)} bytes: EC2 refuses 16384 and more. app/ grew; "
        "see infra/aws/userdata.py for what ships"
    )
    # What RunInstances checks after the SDK's base64: at most 21847 characters.
    assert len(base64.b64encode(raw)) <= 21847
    assert ensure_fits(script).fits
    assert script.isascii()


def test_oversize_script_is_refused(tmp_path):
    shutil.copytree(APP, tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    # Incompressible bytes, written as Python, make the archive too big to carry.
    blob = base64.b64encode(os.urandom(12000)).decode()
    (tmp_path / "app" / "blob.py").write_text(f"BLOB = {blob!r}\n")
    script = render_user_data(app_source=tmp_path / "app")
    assert not user_data_size(script).fits
    with pytest.raises(UserError, match="16 KB"):
        ensure_fits(script)


def test_limit_is_exclusive():
    assert user_data_size("x" * 16383).fits
    assert not user_data_size("x" * 16384).fits
    assert user_data_size("é").size == 2  # bytes, not characters


# --- shellcheck ------------------------------------------------------------------------


def run_shellcheck(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SHELLCHECK), "--shell=bash", "--severity=style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("kwargs", [{}, CUSTOM], ids=["defaults", "custom"])
def test_shellcheck_passes(kwargs, tmp_path):
    script_path = tmp_path / "user_data.sh"
    script_path.write_text(render_user_data(**kwargs))
    result = run_shellcheck(script_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_would_catch_a_mistake(tmp_path, default_script):
    # The check above can fail: the same binary flags an unquoted expansion.
    broken = default_script.replace(
        '"X-aws-ec2-metadata-token: $imds_token"', "X-aws-ec2-metadata-token:$imds_token"
    )
    assert broken != default_script
    script_path = tmp_path / "broken.sh"
    script_path.write_text(broken)
    result = run_shellcheck(script_path)
    assert result.returncode != 0 and "SC2086" in result.stdout


# --- the embedded app ------------------------------------------------------------------


def test_archive_holds_exactly_the_apps_files(tmp_path, default_script):
    archive = embedded_archive(default_script)
    digest = DIGEST_RE.search(default_script)
    assert digest and hashlib.sha256(archive).hexdigest() == digest.group(1)

    with open_tar(archive) as tar:
        members = tar.getmembers()
        tar.extractall(tmp_path, filter="data")
    assert all(m.isfile() and m.uid == 0 and m.gid == 0 and m.mode == 0o644 for m in members)
    assert_ships_the_app({m.name: (tmp_path / m.name).read_bytes() for m in members})
    assert {"app/__main__.py", "app/__init__.py"} <= {m.name for m in members}


def run_unpack(script: str, payload: str, digest: str, dest: Path):
    """The script's own unpack program, fed as the script feeds it (without the script)."""
    program = UNPACK_RE.search(script)
    assert program, "no UNPACK program in the script"
    return subprocess.run(
        [sys.executable, "-c", program.group(1), digest, str(dest)],
        input=payload,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_archive_unpacks_with_the_scripts_own_program(tmp_path, default_script):
    payload = ARCHIVE_RE.search(default_script).group(1) + "\n"
    digest = DIGEST_RE.search(default_script).group(1)
    result = run_unpack(default_script, payload, digest, tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    extracted = {
        p.relative_to(tmp_path).as_posix(): p.read_bytes()
        for p in tmp_path.rglob("*")
        if p.is_file()
    }
    assert_ships_the_app(extracted)


def test_corrupt_archive_is_refused(tmp_path, default_script):
    payload = ARCHIVE_RE.search(default_script).group(1)
    flipped = ("1" if payload[40] != "1" else "2").join((payload[:40], payload[41:]))
    digest = DIGEST_RE.search(default_script).group(1)
    result = run_unpack(default_script, flipped, digest, tmp_path)
    assert result.returncode != 0
    assert "corrupt" in result.stderr
    assert not list(tmp_path.iterdir())


def test_pycache_and_other_files_are_left_out(tmp_path):
    src = tmp_path / "app"
    shutil.copytree(APP, src, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0compiled")
    (src / "notes.md").write_text("not shipped\n")
    (src / "sub").mkdir()
    (src / "sub" / "extra.py").write_text("X = 1\n")
    with open_tar(app_archive(src)) as tar:
        names = tar.getnames()
    assert "app/sub/extra.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".md", ".pyc"))]


# --- determinism -----------------------------------------------------------------------


def test_rendering_is_deterministic(tmp_path, default_script):
    assert render_user_data() == default_script
    # A fresh copy: new mtimes, new inode order, a __pycache__; same bytes out.
    copy = tmp_path / "app"
    shutil.copytree(APP, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "junk.pyc").write_bytes(b"junk")
    assert render_user_data(app_source=copy) == default_script

    # ... and a change in the app changes the script.
    (copy / "__init__.py").write_text((APP / "__init__.py").read_text() + "\n# changed\n")
    assert render_user_data(app_source=copy) != default_script


# --- the systemd unit ------------------------------------------------------------------


def test_unit_runs_the_production_command(default_script):
    unit = unit_of(default_script)
    entries = unit_entries(unit)
    service = {key: value for section, key, value in entries if section == "Service"}
    env = [value for section, key, value in entries if key == "Environment"]

    assert service["ExecStart"] == "/opt/seed-lb/venv/bin/python -m app --host 0.0.0.0 --port 5000"
    assert service["Restart"] in ("always", "on-failure")
    assert float(service["RestartSec"]) > 0
    assert service["User"] == service["Group"] == "seed-lb"
    assert service["WorkingDirectory"] == "/opt/seed-lb"
    assert "SEED_FILE=/var/lib/seed-lb/seed" in env
    assert "INSTANCE_ID=${instance_id}" in env  # filled in on the instance, from IMDSv2
    assert ("Install", "WantedBy", "multi-user.target") in entries
    assert ("Unit", "StartLimitIntervalSec", "0") in entries
    assert 'systemctl enable --now "$SERVICE.service"' in default_script


def test_execstart_is_what_the_app_accepts(default_script):
    """The arguments after `-m app` parse with the app's own command line."""
    from app.__main__ import build_parser

    exec_start = dict((k, v) for _, k, v in unit_entries(unit_of(default_script)))["ExecStart"]
    argv = exec_start.split()
    assert argv[1:3] == ["-m", "app"]
    args = build_parser().parse_args(argv[3:])
    assert (args.host, args.port) == ("0.0.0.0", 5000)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_passes_systemd_analyze(tmp_path, default_script):
    unit = tmp_path / "seed-lb.service"
    unit.write_text(unit_of(default_script).replace("${instance_id}", "i-0123456789abcdef0"))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "--generators=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The only complaint allowed: the venv's python does not exist on this machine.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "is not executable" not in line
    ]
    assert problems == []


# --- instance metadata -----------------------------------------------------------------


def test_instance_id_comes_from_imdsv2_only(default_script):
    lines = logical_lines(default_script)
    imds = [line for line in lines if "$IMDS" in line or "169.254.169.254" in line]
    imds = [line for line in imds if not line.startswith("readonly IMDS=")]
    assert len(imds) == 2, imds
    token_call, get_call = imds
    assert "-X PUT" in token_call and '"$IMDS/api/token"' in token_call
    assert "X-aws-ec2-metadata-token-ttl-seconds:" in token_call
    assert '-H "X-aws-ec2-metadata-token: $imds_token"' in get_call
    assert '"$IMDS/meta-data/instance-id"' in get_call
    assert lines.index(token_call) < lines.index(get_call)
    # No IMDSv1 way in: every metadata request carries the token, no other tool is used.
    assert "readonly IMDS=http://169.254.169.254/latest" in lines
    assert "\n".join(lines).count("169.254.169.254") == 1
    assert not [line for line in lines if re.match(r"\s*(wget|ec2-metadata|imds)\b", line)]
    assert re.search(r"\[\[ ! \$instance_id =~ \^i-\[0-9a-f\]\+\$ \]\]", default_script)


# --- the carried app really runs -------------------------------------------------------


@pytest.mark.integration
def test_extracted_app_serves(tmp_path, free_port, default_script):
    """Start the app as the unit would (`python -m app`), from the extracted archive only."""
    home = tmp_path / "opt"
    home.mkdir()
    with open_tar(embedded_archive(default_script)) as tar:
        tar.extractall(home, filter="data")
    seed_file = tmp_path / "state" / "seed"
    seed_file.parent.mkdir()
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "SEED_FILE")
    }
    env.update(INSTANCE_ID="i-0123456789abcdef0", SEED_FILE=str(seed_file))
    # Like the unit's WorkingDirectory: `app` is imported from the extracted copy.
    where = subprocess.run(
        [sys.executable, "-c", "import app; print(app.__file__)"],
        cwd=home, env=env, capture_output=True, text=True, check=True,
    )
    assert Path(where.stdout.strip()) == home / "app" / "__init__.py"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(free_port)],
        cwd=home,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{free_port}"
    try:
        up = wait_until(lambda: proc.poll() is not None or listening("127.0.0.1", free_port), 30)
        assert up and proc.poll() is None, proc.stderr.read().decode()
        # Granian listens before its worker accepts: the first answer may take a moment.
        assert requests.get(f"{base}/health", timeout=10).status_code == 200
        first = requests.get(f"{base}/", timeout=3)
        assert (first.status_code, first.text) == (200, "0")
        assert first.headers["X-Served-By"] == "i-0123456789abcdef0"
        assert requests.post(f"{base}/", json={"num": 42}, timeout=3).status_code == 200
        assert requests.get(f"{base}/", timeout=3).text == "42"
        assert seed_file.exists()  # SEED_FILE from the environment was honoured
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()


def test_module_paths_point_into_the_repo():
    assert userdata.APP_SOURCE == APP
    assert userdata.TEMPLATE.is_file()
