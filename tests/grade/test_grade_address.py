"""Address normalization, instance lists, and finding instances in a state file."""

from __future__ import annotations

import json

import pytest

from infra.errors import UserError
from infra.grade.address import Endpoint, instances_from_state, parse_address, parse_instances

ELB = "seed-lb-123456.us-east-1.elb.amazonaws.com"


@pytest.mark.parametrize(
    ("given", "host", "port", "note"),
    [
        (ELB, ELB, 80, None),
        (f"http://{ELB}", ELB, 80, "http://"),
        (f"http://{ELB}/", ELB, 80, "http://"),
        (f"{ELB}/", ELB, 80, "trailing '/'"),
        (f"{ELB}:80", ELB, 80, ":80"),
        (f"  HTTP://{ELB.upper()}:80/  ", ELB, 80, "http://"),
        ("127.0.0.1:8080", "127.0.0.1", 8080, None),
        ("localhost", "localhost", 80, None),
        ("[::1]:8080", "::1", 8080, None),
        (f"{ELB}/health?x=1", ELB, 80, "ignored the path"),
    ],
)
def test_address_forms_normalize_and_say_so(given, host, port, note):
    address = parse_address(given)
    assert (address.host, address.port) == (host, port)
    if note is None:
        assert address.notes == []
    else:
        assert any(note in n for n in address.notes), address.notes
    assert address.warnings == []


def test_port_80_and_http_both_noted():
    address = parse_address(f"http://{ELB}:80/")
    text = " ".join(address.notes)
    assert "http://" in text and ":80" in text and "FAQ 3" in text
    assert address.endpoint.url == f"http://{ELB}/"


def test_other_port_on_elb_name_warns_faq3():
    address = parse_address(f"{ELB}:8080")
    assert address.port == 8080
    assert len(address.warnings) == 1
    assert "FAQ 3" in address.warnings[0] and "80" in address.warnings[0]


def test_other_port_on_local_address_is_fine():
    assert parse_address("127.0.0.1:8080").warnings == []


def test_https_gets_a_clear_note_and_plain_http():
    address = parse_address(f"https://{ELB}")
    assert address.port == 80
    assert any("https://" in n and "plain HTTP" in n for n in address.notes)
    assert address.endpoint.url == f"http://{ELB}/"


def test_internal_load_balancer_name_warns():
    address = parse_address("internal-seed-lb-1.us-east-1.elb.amazonaws.com")
    assert any("internal" in w for w in address.warnings)


@pytest.mark.parametrize("bad", ["", "   ", "ftp://x", "a b", "host:port", "host:99999", "-x-"])
def test_bad_addresses_are_user_errors(bad):
    with pytest.raises(UserError):
        parse_address(bad)


@pytest.mark.parametrize(("given", "words"), [
    ("user:hunter2@" + ELB, ["'***@" + ELB, "user name and password", "not shown"]),
    ("127.0.0.1:8080@127.0.0.2:9090", ["'***@127.0.0.2:9090'", "another address"]),
    ("http://admin:hunter2@127.0.0.1/", ["'***@127.0.0.1/'"]),
    (f"{ELB}:", ["ends in ':' with no port"]),
    (f"{ELB}:0", ["port 0"]),
    ("999.999.999.999", ["not a valid IPv4 address"]),
    ("10.0.0", ["not a valid IPv4 address"]),
    ("1.2.3.4.5", ["not a valid IPv4 address"]),
    ("lb\x1b[2J.example.com", ["control characters", "\\x1b[2J"]),
])
def test_refusals_say_what_was_wrong_and_never_echo_a_password(given, words):
    with pytest.raises(UserError) as err:
        parse_address(given)
    message = str(err.value)
    for word in words:
        assert word in message, message
    assert "hunter2" not in message and "user:" not in message and "admin" not in message
    assert message.isprintable()


def test_a_long_address_is_cut_in_the_message_and_said_once():
    with pytest.raises(UserError) as err:
        parse_address("a" * 10_000)
    message = str(err.value)
    assert len(message) < 400
    assert message.count("(10,000 characters in all)") == 1


def test_a_long_path_is_cut_in_the_note():
    address = parse_address(f"{ELB}/" + "p" * 5000)
    assert address.host == ELB
    (note,) = address.notes
    assert "(5,001 characters in all)" in note and len(note) < 200


def test_instances_default_to_the_app_port_and_allow_host_port():
    assert parse_instances("10.0.0.1, 10.0.0.2:5001,,10.0.0.1") == [
        Endpoint("10.0.0.1", 5000),
        Endpoint("10.0.0.2", 5001),
    ]
    assert parse_instances("http://10.0.0.3:5000/") == [Endpoint("10.0.0.3", 5000)]
    with pytest.raises(UserError):
        parse_instances(" , ")


def _state(tmp_path, name, **state):
    directory = tmp_path / ".state"
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(state))
    return directory


def test_state_file_with_matching_lb_dns_gives_public_ips_on_app_port(tmp_path):
    directory = _state(
        tmp_path, "seed-lb", lb_dns=ELB, listener_port=80, app_port=5000,
        instances=[{"id": "i-1", "public_ip": "3.3.3.3"}, {"id": "i-2", "public_ip": None}],
    )
    match = instances_from_state(parse_address(f"http://{ELB}/"), directory)
    assert match is not None
    assert match.instances == [Endpoint("3.3.3.3", 5000)]
    assert match.skipped == ["i-2"]
    assert match.path.name == "seed-lb.json"


def test_state_file_grade_endpoints_match_the_local_lb(tmp_path):
    directory = _state(
        tmp_path, "local", lb_dns="local-lb.elb.localhost.localstack.cloud",
        instances=[{"id": "i-1", "public_ip": "54.0.0.1"}],
        grade_endpoints={"lb": "127.0.0.1:8080", "instances": ["127.0.0.11:5000", "127.0.0.12"]},
    )
    match = instances_from_state(parse_address("127.0.0.1:8080"), directory)
    assert match.instances == [Endpoint("127.0.0.11", 5000), Endpoint("127.0.0.12", 5000)]
    # the same file's lb_dns still matches its own name, with the public IPs
    match = instances_from_state(parse_address("local-lb.elb.localhost.localstack.cloud"),
                                 directory)
    assert match.instances == [Endpoint("54.0.0.1", 5000)]


def test_state_lookup_never_guesses(tmp_path):
    directory = _state(tmp_path, "seed-lb", lb_dns=ELB,
                       instances=[{"id": "i-1", "public_ip": "3.3.3.3"}],
                       grade_endpoints={"lb": "127.0.0.1:8080", "instances": ["127.0.0.11"]})
    (directory / "broken.json").write_text("{not json")
    assert instances_from_state(parse_address("other.example.com"), directory) is None
    assert instances_from_state(parse_address("127.0.0.1:8081"), directory) is None
    assert instances_from_state(parse_address(f"{ELB}:8080"), directory) is None
    assert instances_from_state(parse_address(ELB), tmp_path / "missing") is None
