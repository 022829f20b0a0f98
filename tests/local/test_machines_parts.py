"""The booted testbed's parts that need no machine: the IMDS (a real server on loopback), the
wheelhouse server, security groups rendered as nftables (and, as root, enforced in a real
network namespace), the wheelhouse's entries from the lock, the dnf shim, and what
`make test-boot` says where it cannot run. The whole boot is `make test-boot`'s.

The IMDS is held to EC2's documented behaviour (EC2 User Guide, "Use IMDSv2"): a PUT to
/latest/api/token with X-aws-ec2-metadata-token-ttl-seconds between 1 and 21600 returns a
token; a request with X-Forwarded-For is refused (403); with HttpTokens=required a GET
without a valid token gets 401 Unauthorized.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from infra.errors import UserError
from infra.local.machines import backend, imds, machine, network, testboot, wheelhouse
from infra.local.processes import wait_until

REPO = Path(__file__).resolve().parents[2]
META = imds.InstanceMetadata(
    instance_id="i-0abc1234def567890", image_id="ami-0123", instance_type="t3.micro",
    availability_zone="us-east-1a", region="us-east-1", private_ip="10.0.1.23",
    public_ip="3.91.0.10", mac="0e:11:22:33:44:55", subnet_id="subnet-1", vpc_id="vpc-1",
    reservation_id="r-1", security_groups=(("sg-1", "app"),), user_data=b"#!/bin/bash\necho hi\n")


@pytest.fixture
def metadata(tmp_path):
    def make(meta: imds.InstanceMetadata = META):
        server = imds.MetadataServer(("127.0.0.1", 0), meta, tmp_path / "imds.log")
        imds.serve_in_background(server, "imds-test")
        made.append(server)
        return f"http://127.0.0.1:{server.port}", tmp_path / "imds.log"

    made: list = []
    yield make
    for server in made:
        server.shutdown()
        server.server_close()


def _token(base: str, ttl: str = "300", **headers) -> requests.Response:
    return requests.put(f"{base}/latest/api/token", timeout=5,
                        headers={imds.TTL_HEADER: ttl, **headers})


def test_imdsv2_token_then_get_and_401_without(metadata):
    base, log = metadata()
    assert requests.get(f"{base}/latest/meta-data/instance-id", timeout=5).status_code == 401
    token = _token(base)
    assert token.status_code == 200 and len(token.text) > 20
    got = requests.get(f"{base}/latest/meta-data/instance-id", timeout=5,
                       headers={imds.TOKEN_HEADER: token.text})
    assert (got.status_code, got.text) == (200, META.instance_id)
    wrong = requests.get(f"{base}/latest/meta-data/instance-id", timeout=5,
                         headers={imds.TOKEN_HEADER: "forged"})
    assert wrong.status_code == 401
    entries = imds.read_log(log)
    assert [(e["method"], e["status"], e["token"]) for e in entries] == [
        ("GET", 401, "none"), ("PUT", 200, "issued"), ("GET", 200, "valid"),
        ("GET", 401, "invalid")]


@pytest.mark.parametrize("ttl, headers, status", [
    ("", {}, 400), ("0", {}, 400), ("21601", {}, 400), ("abc", {}, 400),
    ("21600", {}, 200), ("1", {"X-Forwarded-For": "1.2.3.4"}, 403)])
def test_the_token_request_as_ec2_checks_it(metadata, ttl, headers, status):
    base, _ = metadata()
    assert _token(base, ttl, **headers).status_code == status


def test_a_token_expires(metadata):
    base, _ = metadata()
    issued = time.monotonic()
    token = _token(base, "1").text

    def status() -> int:
        return requests.get(f"{base}/latest/meta-data/", timeout=5,
                            headers={imds.TOKEN_HEADER: token}).status_code

    assert status() == 200
    # Refused once its one second is up, and not long after.
    assert wait_until(lambda: status() == 401, 3.0, 0.05)
    assert time.monotonic() - issued >= 1.0


def crawl(base: str, token: str, path: str) -> dict[str, str]:
    """What cloud-init's Ec2 materializer does: list a directory, follow `x/` entries."""
    text = requests.get(f"{base}{path}", timeout=5, headers={imds.TOKEN_HEADER: token})
    assert text.status_code == 200, path
    found = {}
    for line in text.text.splitlines():
        if line.endswith("/"):
            found.update(crawl(base, token, path + line))
        else:
            answer = requests.get(f"{base}{path}{line}", timeout=5,
                                  headers={imds.TOKEN_HEADER: token})
            assert answer.status_code == 200, path + line
            found[path + line] = answer.text
    return found


@pytest.mark.parametrize("version", ["latest", "2009-04-04", "2021-03-23"])
def test_every_listed_meta_data_path_answers(metadata, version):
    base, _ = metadata()
    token = _token(base).text
    tree = crawl(base, token, f"/{version}/meta-data/")
    prefix = f"/{version}/meta-data/"
    assert tree[prefix + "instance-id"] == META.instance_id
    assert tree[prefix + "placement/availability-zone"] == "us-east-1a"
    assert tree[prefix + "local-ipv4"] == "10.0.1.23"
    assert tree[prefix + f"network/interfaces/macs/{META.mac}/security-group-ids"] == "sg-1"
    assert tree[prefix + "local-hostname"] == "ip-10-0-1-23.ec2.internal"
    headers = {imds.TOKEN_HEADER: token}
    user_data = requests.get(f"{base}/{version}/user-data", timeout=5, headers=headers)
    assert user_data.content == META.user_data
    doc = requests.get(f"{base}/{version}/dynamic/instance-identity/document", timeout=5,
                       headers=headers).json()
    assert (doc["instanceId"], doc["region"]) == (META.instance_id, "us-east-1")
    assert requests.get(f"{base}/{version}/meta-data/nope", timeout=5,
                        headers=headers).status_code == 404
    assert "latest" in requests.get(f"{base}/", timeout=5).text.split()


def test_no_user_data_is_404_and_optional_tokens_allow_imdsv1(metadata):
    from dataclasses import replace

    base, _ = metadata(replace(META, user_data=None, http_tokens="optional"))
    assert requests.get(f"{base}/latest/user-data", timeout=5).status_code == 404
    assert requests.get(f"{base}/latest/meta-data/instance-id", timeout=5).text == \
        META.instance_id


def test_the_wheelhouse_server_serves_its_files_only(tmp_path):
    (tmp_path / "flask-3.1.3-py3-none-any.whl").write_bytes(b"wheel")
    server = imds.WheelhouseServer(("127.0.0.1", 0), tmp_path)
    imds.serve_in_background(server, "wheels-test")
    try:
        base = f"http://127.0.0.1:{server.port}"
        index = requests.get(f"{base}/", timeout=5)
        assert 'href="flask-3.1.3-py3-none-any.whl"' in index.text
        assert requests.get(f"{base}/flask-3.1.3-py3-none-any.whl", timeout=5).content == \
            b"wheel"
        assert requests.get(f"{base}/../../etc/passwd", timeout=5).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


# --- security groups as nftables -----------------------------------------------------------
LB_SG, APP_SG, HOST = "sg-lb", "sg-app", "10.213.0.1"


def _group(*perms) -> dict:
    return {"GroupId": APP_SG, "IpPermissions": list(perms)}


def _rules(text: str) -> list[str]:
    """The rules made from the groups (each carries its comment)."""
    return [line.strip() for line in text.splitlines() if " accept comment " in line]


def test_deploys_rule_admits_the_load_balancer_only():
    text = network.render_security_groups(
        [_group({"IpProtocol": "tcp", "FromPort": 5000, "ToPort": 5000,
                 "UserIdGroupPairs": [{"GroupId": LB_SG}]})], {LB_SG}, ["10.0.0.0/24"], HOST)
    rules = [r for r in _rules(text) if "dport" in r]
    assert rules == [f'ip saddr {HOST} tcp dport 5000 accept comment "{APP_SG}: tcp '
                     f'5000-5000 from {LB_SG}, the load balancers group"']
    assert "policy drop;" in text and "ct state established,related accept" in text


def _other_sources(host: str) -> str:
    return network.render_security_groups([_group(
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [
            {"CidrIp": "0.0.0.0/0"}, {"CidrIp": "10.0.0.0/16"}, {"CidrIp": "1.2.3.4/32"}],
         "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": LB_SG}, {"GroupId": "sg-other"}]},
        {"IpProtocol": "udp", "FromPort": 1000, "ToPort": 2000, "IpRanges": [
            {"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "50", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    )], {LB_SG}, ["10.0.0.0/24"], host)


def test_the_other_sources_and_protocols():
    text = _other_sources(HOST)
    rules = [r.split(" comment")[0] for r in _rules(text)]
    assert rules == [
        "meta nfproto ipv4 tcp dport 22 accept",
        f"ip saddr {HOST} tcp dport 22 accept",  # 10.0.0.0/16 covers the LB's subnet
        "ip saddr 1.2.3.4/32 tcp dport 22 accept",
        "meta nfproto ipv6 tcp dport 22 accept",
        f"ip saddr {HOST} accept",  # all traffic from the LB's group; sg-other has no one here
        "meta nfproto ipv4 udp dport 1000-2000 accept",
        "meta nfproto ipv4 icmp type 8 accept",
    ]


def test_a_comment_cannot_break_out_of_its_quotes():
    text = network.render_security_groups(
        [{"GroupId": 'sg-x"; flush ruleset; "', "IpPermissions": [
            {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "IpRanges": [
                {"CidrIp": "0.0.0.0/0"}]}]}], set(), [], HOST)
    assert "flush ruleset;" not in text and text.count('"') % 2 == 0


def _root_with_nft() -> None:
    why = backend.why_not()
    if why:
        pytest.skip(why)


def _listen_in(link: network.Link, port: int) -> subprocess.Popen:
    code = (f"import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
            f"socket.SO_REUSEADDR, 1); s.bind(('{link.peer_ip}', {port})); s.listen(); "
            "print('up', flush=True); time.sleep(60)")
    proc = subprocess.Popen(["ip", "netns", "exec", link.netns, "python3", "-c", code],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    return proc


def test_a_closed_port_times_out_and_an_open_one_connects():
    """As root: a real namespace, the rules applied with nft, a listener inside."""
    _root_with_nft()
    link = network.create()
    try:
        network.install_imds_redirect(link, 9)  # inbound: nothing admitted yet
        listener = _listen_in(link, 5000)
        try:
            assert testboot.connect_result(f"{link.peer_ip}:5000", 1.0) == "timeout"
            rule = {"IpProtocol": "tcp", "FromPort": 5000, "ToPort": 5000,
                    "UserIdGroupPairs": [{"GroupId": LB_SG}]}
            network.apply_security_groups(link, network.render_security_groups(
                [_group(rule)], {LB_SG}, [], link.host_ip))
            assert testboot.connect_result(f"{link.peer_ip}:5000", 2.0) == "connected"
            assert testboot.connect_result(f"{link.peer_ip}:5001", 1.0) == "timeout"
            network.apply_security_groups(link, network.render_security_groups(
                [_group()], {LB_SG}, [], link.host_ip))  # the rule revoked
            assert testboot.connect_result(f"{link.peer_ip}:5000", 1.0) == "timeout"
            network.apply_security_groups(link, _other_sources(link.host_ip))  # nft takes it
        finally:
            listener.kill()
            listener.wait()
    finally:
        network.destroy(link)
        machine.sweep(Path("/nonexistent"))  # no machine dir: only the block's route
    left = network.leftovers()
    assert link.netns not in left["namespaces"] and link.host_if not in left["links"]


# --- the wheelhouse, the dnf shim, the skip line --------------------------------------------
def test_the_wheelhouse_takes_the_locks_entries_with_their_hashes():
    reqs = (REPO / "app/requirements.txt").read_text()
    entries = wheelhouse.requirement_entries(reqs, (REPO / "requirements.lock").read_text())
    assert set(wheelhouse.pins(entries)) == set(wheelhouse.pins(reqs))
    assert entries.count("--hash=sha256:") >= len(wheelhouse.pins(reqs))
    with pytest.raises(UserError, match="disagree"):
        wheelhouse.requirement_entries("flask==0.1\n", (REPO / "requirements.lock").read_text())
    with pytest.raises(UserError, match="does not pin"):
        wheelhouse.requirement_entries("nothere==1.0\n", "flask==3.1.3 \\\n    --hash=sha256:00\n")


@pytest.mark.parametrize("args, code", [
    (machine.DNF_LINE.split(), 0),
    (["install", "-y", "python3.12"], 1),
    (["upgrade", "-y"], 1)])
def test_the_dnf_shim_runs_only_the_scripts_line(tmp_path, args, code):
    shim = tmp_path / "dnf"
    shim.write_text(machine.DNF_SHIM)
    shim.chmod(0o755)
    log = tmp_path / "dnf.log"
    result = subprocess.run([str(shim), *args], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "SEEDLB_DNF_LOG": str(log)})
    assert result.returncode == code, result.stderr
    assert log.read_text().strip().endswith("dnf " + " ".join(args))
    if code:
        assert "refusing" in result.stderr


def test_test_boot_says_in_one_line_why_it_is_skipped(monkeypatch, capsys):
    monkeypatch.setattr(backend, "why_not", lambda: "booted instances need root (...)")
    assert testboot.run(lambda progress: pytest.fail("no testbed may be made")) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["test-boot: skipped: booted instances need root (...)"]


def test_why_not_names_what_is_missing(monkeypatch):
    if not os.uname().sysname == "Linux":
        assert "Linux" in backend.why_not()
        return
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in backend.why_not()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool, path=None: None if tool == "nft" else "x")
    assert backend.why_not() == "no nft on this machine (apt-get install nftables)"


def test_the_platform_uuid_reads_as_ec2s():
    uuid = machine.hypervisor_uuid("i-0abc")
    assert uuid.startswith("ec2") and len(uuid) == 36 and uuid.count("-") == 4
    assert machine.hypervisor_uuid("i-0abc") == uuid != machine.hypervisor_uuid("i-0abd")


def test_boot_json_round_trips_into_the_imds(tmp_path):
    """boot.json as backend.py writes it, read back as machine.py reads it."""
    import base64
    from dataclasses import asdict, replace

    described = {k: v for k, v in asdict(META).items() if k != "user_data"}
    boot = json.loads(json.dumps({"instance": described, "user_data_b64": base64.b64encode(
        META.user_data).decode()}))
    assert imds.InstanceMetadata.from_boot(boot) == META
    assert imds.InstanceMetadata.from_boot({**boot, "user_data_b64": None}) == \
        replace(META, user_data=None)


def test_socket_guard_allows_only_our_own_machines():
    """tests/offmachine.py lets a test reach 10.213/16 only on a veth this code made."""
    from offmachine import OffMachineTraffic

    with socket.socket() as sock, pytest.raises(OffMachineTraffic):
        sock.connect(("10.213.250.2", 5000))  # block 16000: no such veth


class _ConsoleEc2:
    """GetConsoleOutput over a console file that the machine writes to around each call."""

    def __init__(self, console: Path, writes_before: list[bytes], writes_after: list[bytes],
                 answer=None):
        self.console, self.answer = console, answer
        self.before, self.after = writes_before, writes_after

    def get_console_output(self, InstanceId, Latest):  # noqa: N803 - boto3's names
        if self.before:
            with self.console.open("ab") as f:
                f.write(self.before.pop(0))
        output = self.answer or self.console.read_bytes()[-64 * 1024:].decode()
        if self.after:
            with self.console.open("ab") as f:
                f.write(self.after.pop(0))
        return {"InstanceId": InstanceId, "Output": output}


def test_console_check_allows_lines_written_during_the_call(tmp_path):
    """CI saw cloud-init's last lines land between the file read and GetConsoleOutput."""
    console = tmp_path / "console.log"
    console.write_bytes(b"seed-lb user data: done\n")
    always = [b"Cloud-init finished\n"] * 9
    assert testboot._console_matches(_ConsoleEc2(console, list(always), []), "i-1", console)
    assert testboot._console_matches(_ConsoleEc2(console, [], list(always)), "i-1", console)
    assert testboot._console_matches(_ConsoleEc2(console, [], []), "i-1", console)
    wrong = _ConsoleEc2(console, [], [], answer="another machine's console\n")
    assert not testboot._console_matches(wrong, "i-1", console)
    assert not testboot._console_matches(
        _ConsoleEc2(console, list(always), [], answer="another\n"), "i-1", console)
