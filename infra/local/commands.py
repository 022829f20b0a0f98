"""The commands that a testbed prints (stop it, see it, the doctor, start it elsewhere), each
as the user types it in a fresh shell: its make target with this testbed's flags, or, for a
testbed with a runtime dir of its own, `.venv/bin/python -m infra local ...`."""

from __future__ import annotations

from pathlib import Path

from infra.config import STATE_DIR
from infra.local.runtime import (
    DEFAULT_LB_PORT,
    DEFAULT_TESTBED_STACK,
    FIRST_ADDRESS,
    RUNTIME_ROOT,
    Meta,
)


class TestbedCommands:
    """One testbed's commands; `meta()` gives its runtime file (the doctor's endpoint)."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, *, stack: str, mode: str, lb_port: int, first_address: str,
                 region: str, runtime_dir: Path, state_dir: Path, meta=lambda: None):
        self.stack, self.mode, self.region = stack, mode, region
        self.lb_port, self.first_address = lb_port, first_address
        self.runtime_dir, self.state_dir = runtime_dir, state_dir
        self._meta = meta

    def own_runtime_dir(self) -> bool:
        return self.runtime_dir != (Path(RUNTIME_ROOT) / self.stack).resolve()

    def local(self, action: str, fault: str = "") -> str:
        """`local ACTION` on this testbed: its make target, with STACK= beyond the default;
        with a runtime dir of its own, the module."""
        if self.own_runtime_dir():
            return (f".venv/bin/python -m infra local {action}{f' {fault}' if fault else ''}"
                    f" --stack {self.stack} --runtime-dir {self.runtime_dir}")
        target = "test-local" if action == "test" else f"local-{action}"
        words = [f"make {target}", *([f"FAULT={fault}"] if fault else []),
                 *([f"STACK={self.stack}"] if self.stack != DEFAULT_TESTBED_STACK else [])]
        return " ".join(words)

    def doctor(self) -> str:
        """The doctor on this testbed's stack: `make doctor` finds the endpoint, the region
        and the fake keys in the stack's state file."""
        if self.state_dir != Path(STATE_DIR).resolve():
            meta: Meta | None = self._meta()
            return (f"AWS_ENDPOINT_URL={meta.endpoint if meta else '<endpoint>'} "
                    f"AWS_REGION={self.region} AWS_ACCESS_KEY_ID=testing "
                    f"AWS_SECRET_ACCESS_KEY=testing .venv/bin/python -m infra doctor "
                    f"--stack {self.stack}")
        return f"make doctor STACK={self.stack}"

    def up(self, *, lb_port: int | None = None, first_address: str | None = None) -> str:
        """`local up` (or `local test`) with this testbed's flags, one of them changed."""
        lb_port = lb_port or self.lb_port
        first = first_address or self.first_address
        options = " ".join([*([f"--lb-port {lb_port}"] if lb_port != DEFAULT_LB_PORT else []),
                            *([f"--first-address {first}"] if first != FIRST_ADDRESS else [])])
        action = "test" if self.mode == "test" else "up"
        if not options:
            return self.local(action)
        if self.own_runtime_dir():
            return f"{self.local(action)} {options}"
        return f"{self.local(action)} ARGS='{options}'"

    def down(self) -> str:
        """How the user stops this testbed, in backquotes: `make local-down`, STACK= as needed."""
        return f"`{self.local('down')}`"
