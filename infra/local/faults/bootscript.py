"""The `boot-script-fails` fault, for a booted testbed only (infra/local/machines).

A student pins a requirement that does not exist (`flask==31.3` for `flask==3.1.3`) and
deploys: both instances are replaced by ones whose user data carries that pin (what a
redeploy with it does: the old ones terminated, the new ones launched with the same names,
registered in their place). On each, pip fails, the boot script ends with its FAILED
marker, the app never starts: the targets turn unhealthy (Target.FailedHealthChecks, the
port refuses), the load balancer fails open to refusing targets (502), `make logs` shows
pip's error and the marker, the doctor names BOOT_SCRIPT_FAILED. The fix is the same
replacement with the requirement as it should be: two new machines boot to "done".
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path

from infra.aws import console_output
from infra.aws.compute import security_group_ids
from infra.aws.stack import render_default_user_data
from infra.aws.userdata import APP_SOURCE, REQUIREMENTS, app_files, render_user_data
from infra.errors import UserError
from infra.local.faults.fault import Fault, wait_for
from infra.local.faults.site import ROLES, FaultSite
from infra.local.runtime import MACHINES

GOOD, BROKEN = "flask==3.1.3", "flask==31.3"
PIP_ERROR = f"No matching distribution found for {BROKEN}"


def broken_user_data(settings) -> str:
    """The stack's user data with the app's requirements pinning a version that does not
    exist; everything else as deploy renders it."""
    requirements = (APP_SOURCE / REQUIREMENTS).read_text()
    if GOOD not in requirements:
        raise UserError(f"app/{REQUIREMENTS} does not pin {GOOD}: update "
                        "infra/local/faults/bootscript.py's GOOD")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "app"
        for path in app_files(APP_SOURCE):
            target = copy / path.relative_to(APP_SOURCE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        (copy / REQUIREMENTS).write_text(requirements.replace(GOOD, BROKEN))
        return render_user_data(app_port=settings.app_port, stack=settings.stack,
                                app_source=copy)


def _require_booted(site: FaultSite) -> None:
    meta = site.bed.meta
    if meta is None or meta.backend != MACHINES:
        raise UserError("boot-script-fails needs a booted testbed: `make local-up "
                        "ARGS=--machines` (root, Linux; docs/testbed.md)")


def _replace(site: FaultSite, user_data: str) -> None:
    """Terminate the stack's instances and launch new ones with `user_data` in their place."""
    old = {role: site.instance(role) for role in ROLES}
    missing = [role for role, inst in old.items() if inst is None]
    if missing:
        raise UserError(f"the stack {site.stack} has no instance {', '.join(missing)}")
    launched = {}
    for role, inst in old.items():
        launched[role] = site.ec2.run_instances(
            ImageId=inst["ImageId"], InstanceType=inst["InstanceType"], MinCount=1,
            MaxCount=1, SubnetId=inst["SubnetId"], SecurityGroupIds=security_group_ids(inst),
            UserData=user_data,
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": site.tags(site.settings.name(role))}],
        )["Instances"][0]["InstanceId"]
    new_ids = list(launched.values())
    wait_for(site.ec2.get_waiter("instance_running"), InstanceIds=new_ids)
    tg = site.target_group()["TargetGroupArn"]
    site.elbv2.register_targets(TargetGroupArn=tg, Targets=[
        {"Id": i, "Port": site.settings.app_port} for i in new_ids])
    old_ids = [inst["InstanceId"] for inst in old.values()]
    site.elbv2.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": i} for i in old_ids])
    site.ec2.terminate_instances(InstanceIds=old_ids)
    site.ids = dict(launched)  # the drill's instances from now on


class BootScriptFails(Fault):
    name = "boot-script-fails"
    faq = "seed step 3 (install the app's requirements); FAQ 4 (instances OutOfService)"
    does = (f"redeploy both instances with user data whose requirements pin {BROKEN}, a "
            "version that does not exist (booted testbed only)")
    code = "BOOT_SCRIPT_FAILED"
    seconds = 60
    booted = True

    def apply(self, site: FaultSite) -> None:
        _require_booted(site)
        _replace(site, broken_user_data(site.settings))

    def undo(self, site: FaultSite) -> None:
        _require_booted(site)
        _replace(site, render_default_user_data(site.settings))

    def effect(self, site: FaultSite) -> bool:
        """Both targets unhealthy, and each console (GetConsoleOutput, what `make logs`
        reads) ends with the FAILED marker after pip's error."""
        ids = set(site.ids.values())
        if not site.targets_are("unhealthy", "Target.FailedHealthChecks", ids=ids):
            return False
        for iid in ids:
            log = console_output.boot_log(site.ec2, {"InstanceId": iid})
            if not log.failed or not any(PIP_ERROR in line for line in log.before_failure()):
                return False
        return True

    def broken(self, site: FaultSite) -> bool:
        """An instance of the stack runs user data other than what deploy renders: `fix` has
        something to undo."""
        wanted = render_default_user_data(site.settings)
        for role in ROLES:
            inst = site.instance(role)
            if inst is None:
                continue
            data = site.ec2.describe_instance_attribute(InstanceId=inst["InstanceId"],
                                                        Attribute="userData")
            value = (data.get("UserData") or {}).get("Value") or ""
            if base64.b64decode(value).decode(errors="replace") != wanted:
                return True
        return False
