"""The stack's Application Load Balancer, its target group and listener, and target health.

ELBv2 has no tag filter on its describe calls, so the stack's resources are found by listing
them and keeping those whose tags (describe_tags) carry the stack's Project and Stack.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from infra.aws.lb_lookup import all_load_balancers, all_target_groups, stack_tagged
from infra.aws.waits import Waits, delete_once_released, ignore_missing
from infra.config import Settings, stack_tags

_TG_IN_USE = (
    "the target group is still attached to a load balancer that AWS is deleting; "
    "run the destroy again in a minute"
)


class LoadBalancer:
    def __init__(self, elbv2, settings: Settings, progress: Callable[[str], None]):
        self.elbv2 = elbv2
        self.settings = settings
        self.progress = progress
        self.waits = Waits(elbv2, settings, progress)

    def _tags(self, name: str) -> list[dict]:
        return stack_tags(self.settings.stack, name)

    # --- reading ------------------------------------------------------------------------

    def find_load_balancers(self) -> list[dict]:
        return stack_tagged(self.elbv2, all_load_balancers(self.elbv2), "LoadBalancerArn",
                            self.settings.stack)

    def find_target_groups(self) -> list[dict]:
        return stack_tagged(self.elbv2, all_target_groups(self.elbv2), "TargetGroupArn",
                            self.settings.stack)

    def listeners(self, lb_arn: str) -> list[dict]:
        return self.elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]

    def health(self, tg_arn: str) -> list[dict]:
        """Each registered target's state, with the reason AWS gives when it is not healthy."""
        described = self.elbv2.describe_target_health(TargetGroupArn=tg_arn)
        return [
            {
                "id": d["Target"]["Id"],
                "port": d["Target"].get("Port"),
                "state": d["TargetHealth"].get("State"),
                "reason": d["TargetHealth"].get("Reason"),
                "description": d["TargetHealth"].get("Description"),
            }
            for d in described["TargetHealthDescriptions"]
        ]

    # --- converging ---------------------------------------------------------------------

    def health_check(self) -> dict:
        s = self.settings
        return {
            "HealthCheckProtocol": "HTTP",
            "HealthCheckPort": "traffic-port",
            "HealthCheckPath": s.health_check_path,
            "HealthCheckIntervalSeconds": s.health_check_interval,
            "HealthCheckTimeoutSeconds": s.health_check_timeout,
            "HealthyThresholdCount": s.healthy_threshold,
            "UnhealthyThresholdCount": s.unhealthy_threshold,
            "Matcher": {"HttpCode": s.health_check_matcher},
        }

    def ensure_target_group(self, vpc_id: str, found: list[dict] | None = None) -> str:
        found = self.find_target_groups() if found is None else found
        wanted = self.health_check()
        for tg in found:
            if tg["VpcId"] == vpc_id and tg["Port"] == self.settings.app_port:
                drift = {k: v for k, v in wanted.items() if tg.get(k) != v}
                if drift:
                    self.elbv2.modify_target_group(TargetGroupArn=tg["TargetGroupArn"], **wanted)
                    self.progress(f"target group health check updated: {', '.join(drift)}")
                self._ensure_deregistration_delay(tg["TargetGroupArn"], known=False)
                return tg["TargetGroupArn"]
        if found:
            # A target group's VPC and port cannot change: a left-over one blocks the name.
            from infra.errors import UserError

            raise UserError(
                f"target group {found[0]['TargetGroupName']} belongs to another VPC or port: "
                "run destroy for this stack first, then deploy"
            )
        tg = self.elbv2.create_target_group(
            Name=self.settings.tg_name,
            Protocol="HTTP",
            Port=self.settings.app_port,
            VpcId=vpc_id,
            TargetType="instance",
            Tags=self._tags(self.settings.tg_name),
            **wanted,
        )["TargetGroups"][0]
        self.progress(f"created target group {tg['TargetGroupName']} (HTTP {tg['Port']}, "
                      f"health check GET {self.settings.health_check_path} every "
                      f"{self.settings.health_check_interval}s)")
        self._ensure_deregistration_delay(tg["TargetGroupArn"], known=True)
        return tg["TargetGroupArn"]

    def _ensure_deregistration_delay(self, tg_arn: str, *, known: bool) -> None:
        """A few seconds instead of AWS's 300: the app's requests take milliseconds, and every
        instance replacement waits this long. CreateTargetGroup takes no attributes, so a new
        group (`known`: its delay is AWS's default) gets it right after."""
        key = "deregistration_delay.timeout_seconds"
        wanted = str(self.settings.deregistration_delay)
        if not known:
            attributes = self.elbv2.describe_target_group_attributes(
                TargetGroupArn=tg_arn)["Attributes"]
            if {a["Key"]: a["Value"] for a in attributes}.get(key) == wanted:
                return
        self.elbv2.modify_target_group_attributes(
            TargetGroupArn=tg_arn, Attributes=[{"Key": key, "Value": wanted}])
        self.progress(f"target group deregistration delay: {wanted}s")

    def ensure_load_balancer(self, subnet_ids: list[str], sg_id: str,
                             found: list[dict] | None = None) -> dict:
        """Create the ALB (it provisions in the background) or repair its subnets and group."""
        found = self.find_load_balancers() if found is None else found
        if found:
            lb = found[0]
            arn = lb["LoadBalancerArn"]
            have_subnets = {z["SubnetId"] for z in lb.get("AvailabilityZones") or []}
            if have_subnets != set(subnet_ids):
                self.elbv2.set_subnets(LoadBalancerArn=arn, Subnets=subnet_ids)
                self.progress("load balancer subnets updated")
            if set(lb.get("SecurityGroups") or []) != {sg_id}:
                self.elbv2.set_security_groups(LoadBalancerArn=arn, SecurityGroups=[sg_id])
                self.progress("load balancer security group updated")
            return lb
        lb = self.elbv2.create_load_balancer(
            Name=self.settings.lb_name,
            Subnets=subnet_ids,
            SecurityGroups=[sg_id],
            Scheme="internet-facing",
            Type="application",
            IpAddressType="ipv4",
            Tags=self._tags(self.settings.lb_name),
        )["LoadBalancers"][0]
        self.progress(f"created load balancer {lb['LoadBalancerName']} (provisioning)")
        return lb

    def ensure_listener(self, lb_arn: str, tg_arn: str, found: list[dict] | None = None) -> str:
        """HTTP on the listener port, forwarding to the target group: the seed's port mapping."""
        port = self.settings.listener_port
        forward = [{"Type": "forward", "TargetGroupArn": tg_arn}]
        for listener in self.listeners(lb_arn) if found is None else found:
            if listener["Port"] != port:
                continue
            actions = listener.get("DefaultActions") or []
            if listener.get("Protocol") != "HTTP" or [
                (a.get("Type"), a.get("TargetGroupArn")) for a in actions
            ] != [("forward", tg_arn)]:
                self.elbv2.modify_listener(ListenerArn=listener["ListenerArn"], Protocol="HTTP",
                                           Port=port, DefaultActions=forward)
                self.progress(f"listener {port} now forwards to the target group")
            return listener["ListenerArn"]
        listener = self.elbv2.create_listener(
            LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port, DefaultActions=forward,
            Tags=self._tags(self.settings.name(f"listener-{port}")),
        )["Listeners"][0]
        self.progress(f"created listener HTTP {port} -> target group port "
                      f"{self.settings.app_port}")
        return listener["ListenerArn"]

    def register(self, tg_arn: str, instance_ids: list[str]) -> None:
        """Exactly these instances, on the app port, are the group's targets."""
        registered = {h["id"] for h in self.health(tg_arn)}
        missing = [i for i in instance_ids if i not in registered]
        extra = [i for i in registered if i not in instance_ids]
        if missing:
            self.elbv2.register_targets(
                TargetGroupArn=tg_arn,
                Targets=[{"Id": i, "Port": self.settings.app_port} for i in missing],
            )
            self.progress(f"registered targets {', '.join(missing)}")
        if extra:
            self.elbv2.deregister_targets(TargetGroupArn=tg_arn,
                                          Targets=[{"Id": i} for i in extra])
            self.progress(f"deregistered targets {', '.join(extra)}")

    def wait_available(self, lb_arn: str) -> None:
        # waits.STRICTER_WAITERS' LoadBalancerAvailable: `failed` or `active_impaired` ends the
        # wait at once, with the reason AWS gives.
        self.waits.until("load_balancer_available", "load balancer active",
                         LoadBalancerArns=[lb_arn])

    def wait_in_service(self, tg_arn: str, instance_ids: list[str]) -> None:
        self.waits.until("target_in_service", "targets healthy", TargetGroupArn=tg_arn,
                         Targets=[{"Id": i, "Port": self.settings.app_port}
                                  for i in instance_ids])

    # --- tearing down -------------------------------------------------------------------

    def delete_load_balancers(self) -> list[str]:
        """Start deleting the stack's load balancers (their listeners go with them)."""
        arns = [lb["LoadBalancerArn"] for lb in self.find_load_balancers()]
        for arn in arns:
            ignore_missing("LoadBalancerNotFound", self.elbv2.delete_load_balancer,
                           LoadBalancerArn=arn)
            self.progress(f"deleting load balancer {arn.rsplit('/', 2)[-2]}")
        return arns

    def wait_deleted(self, arns: list[str]) -> None:
        if arns:
            self.waits.until("load_balancers_deleted", "load balancer deleted",
                             LoadBalancerArns=arns)

    def delete_target_groups(self) -> list[str]:
        names = []
        for tg in self.find_target_groups():
            delete = functools.partial(self.elbv2.delete_target_group,
                                       TargetGroupArn=tg["TargetGroupArn"])
            delete_once_released(delete, f"deleting target group {tg['TargetGroupName']}",
                                 self.progress, missing_code="TargetGroupNotFound",
                                 busy=("ResourceInUse",), explain=_TG_IN_USE,
                                 delay=self.settings.dependency_retry_delay,
                                 budget=self.settings.dependency_retry_budget)
            names.append(tg["TargetGroupName"])
        return names
