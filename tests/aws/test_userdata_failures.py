"""Every way the boot script can fail ends with its marker on the console.

The rendered script runs whole under bash, as cloud-init runs it, in a private mount
namespace (`unshare`): /var/log and /etc/systemd are this test's own directories there, and
the commands that would change the machine or reach the network are small stubs on PATH
(dnf, id, useradd, install, python3.11's venv, curl, systemctl, journalctl). The archive
is unpacked by the script's own Python program, for real. Each case breaks one step (or
sends a signal) and checks that the output ends with
`seed-lb user data: FAILED at line N: ... (exit S)`, that line N of the rendered script is
the step that failed, and that the log file says the same. The booted testbed runs the
script for real (`make test-boot`); these are the ways a boot there rarely goes wrong.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from infra.aws.userdata import render_user_data
from infra.local.machines.machine import DNF_LINE
from infra.local.processes import wait_until

MARKER = re.compile(r"^seed-lb user data: FAILED (at line (\d+): (.*)|on signal (\w+)) "
                    r"\(exit (\d+)\)$")
INSTANCE_ID = "i-0123456789abcdef0"

# name -> what the stub does: print its output and exit 0, or fail (FAIL_AT names it).
STUBS = {
    "dnf": 'echo "dnf $*"',
    "id": "exit 1",  # "no such user": useradd runs
    "useradd": "exit 0",
    "install": "exit 0",
    "systemctl": 'echo "systemctl $*"',
    "journalctl": 'echo "journal of $*"',
}
CURL = f"""
case "$*" in
  *api/token*) fail token; echo token-123 ;;
  *instance-id*) fail instance-id; echo "${{INSTANCE:-{INSTANCE_ID}}}" ;;
  *health*) fail health; echo ok ;;
  *) exit 22 ;;
esac
"""
PYTHON = """
if [ "$1" = -m ] && [ "$2" = venv ]; then
  fail venv
  mkdir -p "$3/bin"
  printf '#!/bin/sh\\n. "%s"\\nfail pip\\necho "pip $*"\\n' "$STUBLIB" > "$3/bin/pip"
  printf '#!/bin/sh\\n. "%s"\\nfail compileall\\n' "$STUBLIB" > "$3/bin/python"
  chmod +x "$3/bin/pip" "$3/bin/python"
  exit 0
fi
exec "$REAL_PYTHON" "$@"
"""
LIB = """
fail() {
  case " $FAIL_AT " in *" $1 "*)
    echo "$1: failing on purpose" >&2
    [ "$1" = pip ] && echo "ERROR: No matching distribution found for flask==31.3" >&2
    exit 1 ;;
  esac
  case " $SLOW_AT " in *" $1 "*) sleep 30 ;; esac
}
"""

# case -> (FAIL_AT, what the marker's line must hold, how it ends)
CASES = {
    "dnf": ("dnf", "dnf install", "at"),
    "useradd": ("useradd", "useradd", "at"),
    "install": ("install", "install -d", "at"),
    "venv": ("venv", "-m venv", "at"),
    "pip": ("pip", "pip\" install", "at"),
    "compileall": ("compileall", "compileall", "at"),
    "token": ("token", "imds_token=$(curl", "at"),
    "instance-id": ("instance-id", "instance_id=$(curl", "at"),
    "daemon-reload": ("systemctl-daemon-reload", "daemon-reload", "at"),
    "enable": ("systemctl-enable", "enable --now", "at"),
    # deliberate exits (`die`): an ERR trap alone never saw these
    "health": ("health", "die \"the app did not answer", "at"),
    "bad-instance-id": ("", "die \"unexpected instance id", "at"),
    "corrupt-archive": ("", "python3.11 -c \"$UNPACK\"", "at"),
}


def _sandbox_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if not unshare or not sys.platform.startswith("linux"):
        pytest.skip("needs util-linux's unshare (Linux) for a private mount namespace")
    if not Path("/etc/systemd").is_dir():
        pytest.skip("needs /etc/systemd to exist (to stand a private one in its place)")
    prefix = [unshare, "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        prefix[1:1] = ["--user", "--map-root-user"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    return prefix


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> tuple[str, Path]:
    """The script as deploy renders it, but with its app home and seed file in tmp."""
    base = tmp_path_factory.mktemp("boot")
    text = render_user_data(app_home=str(base / "opt"), seed_file=str(base / "var/x/seed"))
    return text, base


def _stubs(directory: Path) -> dict[str, str]:
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    lib = directory / "stublib.sh"
    lib.write_text(LIB)
    bodies = {**STUBS, "curl": CURL, "python3.11": PYTHON}
    for name, body in bodies.items():
        checks = f"fail {name}\n" if name in ("dnf", "useradd", "install") else ""
        if name == "systemctl":
            checks = 'fail "systemctl-$1"\n'
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\n. "{lib}"\n{checks}{body}\n')
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUBLIB": str(lib),
            "REAL_PYTHON": sys.executable}


def boot(script_text: str, tmp_path: Path, **env) -> tuple[subprocess.Popen, Path]:
    """Start the script in its sandbox; returns the process and the log directory."""
    prefix = _sandbox_prefix()
    logs, units = tmp_path / "log", tmp_path / "systemd"
    logs.mkdir()
    units.mkdir()
    path = tmp_path / "user-data"
    path.write_text(script_text)
    inner = (f'mount --bind "{logs}" /var/log && mount -t tmpfs none /etc/systemd && '
             f'mkdir /etc/systemd/system && exec bash "{path}"')
    full_env = {**_stubs(tmp_path), "HOME": str(tmp_path), **env}
    proc = subprocess.Popen([*prefix, "sh", "-c", inner], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=full_env, text=True,
                            start_new_session=True)
    return proc, logs


def finish(proc: subprocess.Popen) -> tuple[int, list[str]]:
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, [line for line in out.splitlines() if line.strip()]


def test_the_script_runs_to_done_when_nothing_fails(script, tmp_path):
    text, base = script
    code, lines = finish(boot(text, tmp_path)[0])
    assert code == 0, lines
    assert lines[-1].startswith("seed-lb user data: done ")
    assert not [line for line in lines if "FAILED" in line]
    steps = [line for line in lines if line.startswith("seed-lb user data: ")]
    assert [s.split(":", 1)[1].split()[0] for s in steps] == \
        ["start", "1/6", "2/6", "3/6", "4/6", "5/6", "6/6", "done"]
    assert (base / "opt/app/__main__.py").is_file()  # unpacked for real


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_failure_ends_with_the_marker(script, tmp_path, case):
    text, _ = script
    fail_at, expected, _how = CASES[case]
    env = {"FAIL_AT": fail_at}
    if case == "bad-instance-id":
        env["INSTANCE"] = "<html>not an id</html>"
    if case == "corrupt-archive":  # one base85 character changed: the digest check refuses
        start = text.index("<<'SEEDLB_APP_ARCHIVE'\n") + len("<<'SEEDLB_APP_ARCHIVE'\n") + 10
        text = text[:start] + ("0" if text[start] != "0" else "1") + text[start + 1:]
    proc, logs = boot(text, tmp_path, **env)
    code, lines = finish(proc)
    assert code != 0, lines
    match = MARKER.match(lines[-1])
    assert match, f"the output does not end with the marker: {lines[-5:]}"
    line_no = int(match.group(2))
    # a command continued over lines is counted at its last line
    command = "\n".join(text.splitlines()[line_no - 2:line_no])
    assert expected in command, (line_no, command)
    assert int(match.group(5)) == code
    log = (logs / "seed-lb-userdata.log").read_text().splitlines()
    assert log[-1] == lines[-1]  # the file for `sudo cat` says the same


def test_a_signal_ends_with_the_marker(script, tmp_path):
    text, _ = script
    proc, _logs = boot(text, tmp_path, SLOW_AT="pip")

    def in_session(name: str) -> list[str]:
        return subprocess.run(["pgrep", "-s", str(proc.pid), "-x", name], capture_output=True,
                              text=True).stdout.split()

    # The pip step (4/6) has begun when its stub sleeps: the signal lands mid-step.
    assert wait_until(lambda: proc.poll() is not None or in_session("sleep"), 30), \
        "the script never reached its pip step"
    bash = in_session("bash")
    assert bash, "the script's shell is not running"
    os.kill(int(bash[0]), signal.SIGTERM)
    code, lines = finish(proc)
    assert code != 0
    match = MARKER.match(lines[-1])
    assert match and match.group(4) == "TERM", lines[-3:]


def test_the_dnf_shim_accepts_exactly_the_scripts_install_line(script):
    text, _ = script
    lines = [line for line in text.splitlines() if line.startswith("dnf ")]
    assert lines == [f"dnf {DNF_LINE}"]
