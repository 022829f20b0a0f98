"""`make test-boot`: `make test-local` with booted machines as the instances.

Where this machine cannot boot machines (not Linux, not root, no systemd-nspawn, no
namespaces) it says why in one line and exits 0, "skipped". Otherwise, each phase timed,
then a PASS/FAIL table:

1. image: the Debian image (debootstrap, once; cached after) and the wheelhouse;
2. up: moto, the unchanged Stack, then one machine per instance booted from the user data
   deploy sent (cloud-init, Ec2 datasource, IMDSv2), Caddy and the supervisor;
3. boot: what the boot did, checked: cloud-init used the Ec2 datasource and got the user
   data byte for byte as rendered by infra.aws.stack; the script's own IMDS calls all
   carried a token; `dnf` ran only the script's line; GetConsoleOutput returns the
   machine's console; `python -m infra logs` shows each instance's "done" line;
4. grade: the grader, as `make grade` does;
5. drill: `systemctl kill -s KILL` of one app; systemd restarts it (machines/failover.py);
6. sg: the app security group's rule revoked: a connection to the instance times out (the
   machine's nftables drop it) and its target turns unhealthy with Target.Timeout; then
   the rule put back and the instance answers again;
7. down: everything stopped, and no namespace, veth, route, mount, cgroup or process of the
   run is left (nftables tables live in the namespaces, and go with them).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from infra.console import Progress
from infra.local.faults.catalog import FAULTS
from infra.local.faults.commands import command_env, infra_argv
from infra.local.faults.roundtrip import effect_window
from infra.local.faults.site import FaultSite
from infra.local.interrupts import sigterm_as_interrupt
from infra.local.machines import backend, cgroups, image, imds, machine, network
from infra.local.phases import phase_table, run_phase
from infra.local.processes import PROJECT_ROOT, wait_until
from infra.local.testrun import Phase, down_phase, grade_phase

CONNECT_TIMEOUT = 3.0


def render(phases: list[Phase], total: float, figures: list[str]) -> str:
    overall = all(p.passed for p in phases)
    return phase_table(phases, [*figures, f"{'PASS' if overall else 'FAIL'}  make test-boot "
                                          f"({total:.1f}s)"])


# --- the boot, checked -----------------------------------------------------------------------
def user_data_sent(testbed) -> bytes:
    """What deploy sends as UserData: infra.aws.stack's rendering for this stack."""
    from infra.aws.stack import render_default_user_data

    return render_default_user_data(testbed.settings()).encode()


def check_boot(testbed) -> tuple[bool, str]:
    problems, notes = [], []
    expected = user_data_sent(testbed)
    ec2 = testbed.clients().ec2
    for iid in testbed.instances:
        directory = machine.machine_dir(testbed.runtime_dir, iid)
        upper = directory / "upper"
        got = _read(upper / "var/lib/cloud/instances" / iid / "user-data.txt")
        if got != expected:
            problems.append(f"{iid}: cloud-init's user-data.txt is not the rendered script "
                            f"({len(got or b'')} bytes, expected {len(expected)})")
        source = (_read(upper / "var/lib/cloud/instances" / iid / "datasource") or b"").decode()
        if "DataSourceEc2" not in source:
            problems.append(f"{iid}: cloud-init's datasource was {source.strip()!r}, not Ec2")
        calls = [e for e in imds.read_log(directory / machine.IMDS_LOG)
                 if e["agent"].startswith("curl/")]
        untokened = [e["path"] for e in calls
                     if e["method"] == "GET" and e["token"] != "valid"]  # noqa: S105
        if len(calls) < 2 or untokened:
            problems.append(f"{iid}: the script's IMDS calls {[c['path'] for c in calls]}: "
                            f"without a token: {untokened}")
        dnf = (_read(upper / "var/log/seed-lb-dnf-shim.log") or b"").decode().splitlines()
        if len(dnf) != 1 or not dnf[0].endswith(f"dnf {machine.DNF_LINE}"):
            problems.append(f"{iid}: dnf shim log {dnf}")
        if not _console_matches(ec2, iid, machine.console_path(testbed.runtime_dir, iid)):
            problems.append(f"{iid}: GetConsoleOutput is not the machine's console")
    notes.append(f"cloud-init (Ec2 datasource) ran the rendered user data, {len(expected)} "
                 "bytes, byte for byte; its IMDS calls carried tokens; console = "
                 "GetConsoleOutput")
    logs = _logs(testbed)
    for iid in testbed.instances:
        if not any(iid in line for line in logs.stdout.splitlines()) or \
                logs.stdout.count("seed-lb user data: done") < len(testbed.instances):
            problems.append(f"`make logs` does not show {iid}'s done line:\n"
                            f"{logs.stdout[-1500:]}{logs.stderr[-500:]}")
            break
    else:
        notes.append("`make logs` shows each instance's \"done\" line")
    return not problems, "\n".join(problems or notes)


def _console_matches(ec2, iid: str, console: Path, tries: int = 5) -> bool:
    """GetConsoleOutput is the console file's last 64 KiB. The machine may still write to
    it (systemd's lines after the script's "done"), so the file is read on both sides of
    the call: the answer must be the file as it was at some moment in between."""
    def tail(data: bytes) -> str:
        return data[-64 * 1024:].decode("utf-8", "replace")

    for _ in range(tries):
        before = console.read_bytes()
        # botocore decodes the base64 EC2 sends (tests/local/test_motohook.py checks the wire)
        output = ec2.get_console_output(InstanceId=iid, Latest=True).get("Output", "")
        after = console.read_bytes()
        if before == after:
            return output == tail(before)
    return after.startswith(before) and any(
        output == tail(after[:end]) for end in range(len(before), len(after) + 1))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _logs(testbed) -> subprocess.CompletedProcess:
    """`python -m infra logs` as a user runs it against the testbed's moto server."""
    return subprocess.run(infra_argv("logs", "--stack", testbed.stack, "--state-dir",
                                     str(testbed.state_dir), "--lines", "5"),
                          capture_output=True, text=True, env=command_env(testbed),
                          cwd=PROJECT_ROOT, timeout=60)


# --- a closed security group -----------------------------------------------------------------
def connect_result(address: str, timeout: float = CONNECT_TIMEOUT) -> str:
    """"connected", "timeout" or "refused": what a TCP connect to the address does."""
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, int(port)))
        except TimeoutError:
            return "timeout"
        except ConnectionRefusedError:
            return "refused"
        except OSError as exc:
            return f"error {exc.errno}"
    return "connected"


def check_closed_security_group(testbed, say: Callable[[str], None]) -> tuple[bool, str]:
    fault = FAULTS["app-sg-closed"]
    site = FaultSite(testbed)
    victim = next(iter(testbed.instances))
    address = testbed.instances[victim]
    sg_file = machine.machine_dir(testbed.runtime_dir, victim) / backend.SG_FILE
    before = _read(sg_file)
    problems = []
    say(f"sg: {fault.does}")
    fault.apply(site)
    if not wait_until(lambda: _read(sg_file) != before, 10.0, 0.1):
        problems.append("the supervisor did not apply the changed rules within 10 s")
    closed = connect_result(address)
    if closed != "timeout":
        problems.append(f"a connection to {address} with the rule revoked: {closed}, "
                        "not a timeout")
    window = effect_window(testbed)
    timed_out = wait_until(lambda: site.targets_are("unhealthy", "Target.Timeout",
                                                    ids={victim}), window, 0.5)
    if not timed_out:
        problems.append(f"{victim}'s target did not turn unhealthy (Target.Timeout) within "
                        f"{window:.0f}s")
    say(f"sg: connect -> {closed}; target unhealthy (Target.Timeout): {timed_out}; "
        "putting the rule back")
    fault.undo(site)
    opened = wait_until(lambda: connect_result(address, 1.0) == "connected", 10.0, 0.2)
    if not opened:
        problems.append(f"{address} does not accept connections after the rule is back")
    recovered = wait_until(lambda: site.recovered() is None, window, 0.5)
    if not recovered:
        problems.append(f"not recovered within {window:.0f}s: {site.recovered()}")
    detail = (f"rule revoked: connect to {address} timed out ({CONNECT_TIMEOUT:.0f}s, the "
              f"machine's nftables dropped the SYN); target {victim} unhealthy with "
              "Target.Timeout; rule back: connects, healthy again")
    return not problems, "\n".join(problems) or detail


# --- leftovers ---------------------------------------------------------------------------------
def leftovers(runtime_dir: Path) -> list[str]:
    """Namespaces, veths, mounts and processes of this run still there."""
    found = []
    left = network.leftovers()
    found += [f"namespace {n}" for n in left["namespaces"]]
    found += [f"interface {n}" for n in left["links"]]
    found += [f"route {r}" for r in left["routes"]]
    found += [f"mount {m}" for m in image.mounts_under(runtime_dir)]
    found += [f"cgroup {g}" for g in cgroups.leftovers()]
    for pid in _processes_under(runtime_dir):
        found.append(f"process {pid}")
    return found


def _processes_under(runtime_dir: Path) -> list[int]:
    """Processes whose command line or environment names the runtime dir (the machines,
    moto, Caddy, the supervisor) or that run in a machine's root."""
    marker = str(runtime_dir).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (os.getpid(), os.getppid()):
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if marker in cmdline or marker in environ or root.startswith(str(runtime_dir)):
            pids.append(int(entry))
    return pids


PHASES = ("1 image", "2 up", "3 boot", "4 grade", "5 drill", "6 sg", "7 down")


def run(make_testbed: Callable[..., object]) -> int:
    why = backend.why_not()
    if why:
        print(f"test-boot: skipped: {why}", flush=True)
        return 0
    progress = Progress()
    testbed = make_testbed(progress)
    phases = [Phase(n) for n in PHASES]
    image_phase, up, boot, grade, drill, sg, down = phases
    figures: list[str] = []

    def timed(phase: Phase, step: Callable[[], tuple[bool, str]]) -> None:
        run_phase(progress, phase, step)

    interrupted = False
    with sigterm_as_interrupt(testbed.interrupts):  # Ctrl-C as in make test-local
        try:
            timed(image_phase, lambda: _prepare(progress, figures))
            if image_phase.passed:
                timed(up, lambda: _up(testbed, figures))
            if up.passed:
                timed(boot, lambda: check_boot(testbed))
                timed(grade, lambda: grade_phase(testbed))
                timed(drill, lambda: _restart_drill(testbed, progress))
                timed(sg, lambda: check_closed_security_group(testbed, progress))
        except KeyboardInterrupt:
            interrupted = True
            progress("interrupted: cleaning up")
        finally:
            with testbed.interrupts.cleaning():
                timed(down, lambda: _down(testbed, bool(up.passed)))
            interrupted = interrupted or testbed.interrupts.hurry.is_set()
        figures.append(f"image + up (to both instances healthy behind Caddy): "
                       f"{image_phase.seconds + up.seconds:.1f}s")
        print(render(phases, progress.elapsed, figures), flush=True)
    if interrupted:
        return 130
    return 0 if all(p.passed for p in phases) else 1


def _prepare(progress: Callable[[str], None], figures: list[str]) -> tuple[bool, str]:
    prepared = backend.prepare(progress)
    built = prepared["image_seconds"]
    kind = f"built by debootstrap in {built:.0f}s" if built else "cached"
    figures.append(f"image: {kind} ({prepared['image']})")
    return True, f"image {kind}; wheelhouse {prepared['wheelhouse']}"


def _up(testbed, figures: list[str]) -> tuple[bool, str]:
    testbed.up()
    meta = testbed.meta
    times = []
    for iid in meta.instances:
        ready = json.loads(_read(machine.machine_dir(testbed.runtime_dir, iid)
                                 / "ready.json") or b"{}")
        times.append(f"{iid} {ready.get('seconds', '?')}s")
    figures.append(f"boot to healthy (machine start -> the script's \"done\", after its "
                   f"own /health check): {', '.join(times)}")
    return True, (f"moto, {len(meta.instances)} machines ({', '.join(meta.instances.values())})"
                  f" and Caddy on {meta.lb}; boot to \"done\": {', '.join(times)}")


def _restart_drill(testbed, progress: Callable[[str], None]) -> tuple[bool, str]:
    from infra.local.machines.failover import run_restart_drill

    result = run_restart_drill(testbed, progress)
    return result.passed, result.summary()


def _down(testbed, was_up: bool) -> tuple[bool, str]:
    ok, detail = down_phase(testbed, was_up)
    left = leftovers(testbed.runtime_dir)
    if left:
        return False, "; ".join(filter(None, [detail, f"left behind: {', '.join(left)}"]))
    return ok, (detail + "; " if detail else "") + \
        "no namespace, veth, route, mount, cgroup or process left"


