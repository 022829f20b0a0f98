"""What deploy (and plan) settle before the first resource exists: the instance type and
zones, the AMI, the key pair, the launch permission (a dry run), the load balancing service,
and who may reach the instances directly. Each check that fails exits with one line naming
its step, and leaves nothing behind (`created nothing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.aws import placement as placements
from infra.aws import preflight
from infra.aws.clients import Clients
from infra.aws.compute import launch_params
from infra.aws.failures import stepping
from infra.aws.network import Network
from infra.aws.placement import Placement
from infra.config import LEARNER_LAB_ROLE, Settings


@dataclass
class Decisions:
    """What preflight settled: the account, the AMI, where the instances go and of which
    type, and who may reach them directly."""

    account: str
    image_id: str
    placement: Placement
    default_vpc: tuple[str, dict[str, str]] | None
    public_cidr: str | None
    ssh_cidr: str | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Access:
    """Who reaches the instances directly: the app port from `public`, SSH from `ssh`."""

    public: str | None
    ssh: str | None
    notes: tuple[str, ...]


def decide(clients: Clients, settings: Settings, identity: dict, network: Network,
           first_instance: str) -> Decisions:
    """Every check of a deploy that needs no resource, in the order that costs least.
    `identity` is STS's answer (Account, Arn); `first_instance` the name the dry run uses."""
    learner_lab = LEARNER_LAB_ROLE in (identity.get("Arn") or "")
    s = settings
    with stepping("choosing the instance type and zones", created_nothing=True):
        default_vpc = network.default_vpc() if s.use_default_vpc else None
        zones = sorted(default_vpc[1]) if default_vpc else None
        placement = placements.choose_placement(clients, s, zones, learner_lab=learner_lab)
        if learner_lab:
            placements.check_learner_lab_instances(clients, s)
    with stepping("looking up the Amazon Linux 2023 AMI", created_nothing=True):
        image_id = preflight.resolve_image(clients, placement.architecture)
    if s.key_name:
        with stepping("checking the key pair", created_nothing=True):
            preflight.check_key_pair(clients, s.key_name)
    with stepping("trying RunInstances as a dry run", created_nothing=True):
        params = launch_params(s, first_instance, placement.instance_type, image_id,
                               burstable=placement.burstable)
        dry_run_note = preflight.check_launch_allowed(clients, params)
    # Last, so that against LocalStack's free code (no ELBv2) the whole preflight has run.
    with stepping("checking the load balancing service", created_nothing=True):
        preflight.check_elbv2_available(clients)
    access = who_reaches_the_instances(clients, s)
    notes = [*placement_notes(placement), *([dry_run_note] if dry_run_note else []),
             *access.notes]
    return Decisions(identity.get("Account"), image_id, placement, default_vpc,
                     access.public, access.ssh, notes)


def placement_notes(placement: Placement) -> list[str]:
    notes = [f"instance type {placement.instance_type}: {placement.why}; in "
             f"{' and '.join(placement.zones)}, which both offer it"
             + ("" if placement.architecture == "x86_64" else
                f"; {placement.architecture}, so the {placement.architecture} Amazon Linux "
                "2023 AMI")]
    if placement.burstable:
        notes.append("CPU credits: standard (never billed beyond the hourly price)")
    return notes


def who_reaches_the_instances(clients: Clients, s: Settings) -> Access:
    """--public-access and --key-name, as CIDRs: "me" is the deployer's own IP (looked up on
    real AWS only), "any" everyone, else the CIDR given."""
    notes = []
    chosen = preflight.public_cidr_choice(s.public_access)  # None: "me"
    explicit = None if s.public_access in ("me", "any") else chosen
    mine = None
    if s.public_access == "me" or (s.key_name and explicit is None):
        if clients.target.is_emulator:
            notes.append("the deployer's IP is never looked up against an emulator: "
                         "skipping the rules that would use it")
        else:
            mine = preflight.deployer_cidr(clients)
    public = mine if s.public_access == "me" else chosen
    ssh = (explicit or mine) if s.key_name else None
    notes.append(f"port {s.app_port} is open to the load balancer"
                 + (f" and to {public}" if public else " only"))
    if s.key_name:
        notes.append(f"SSH (22) with key {s.key_name} from {ssh}" if ssh
                     else "no SSH rule: your IP is unknown (pass --public-access CIDR)")
    else:
        notes.append("no SSH: pass --key-name to open port 22 to your IP only")
    return Access(public, ssh, tuple(notes))
