"""What a fault is: one of the seed FAQ's mistakes, as a small class of its own.

Its words are class attributes (the FAQ entry it stands for, what `break` does, the doctor's
finding code, the grade while broken), and its four methods stand side by side: `apply`
makes the mistake, `undo` puts back what apply changed and nothing else, `effect` says the
mistake shows (control plane and data path), `broken` says `fix` has work to do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from infra.local.faults.site import FaultSite


class Fault(ABC):
    name: ClassVar[str]
    faq: ClassVar[str]  # the seed's FAQ entry (or step) it stands for
    does: ClassVar[str]  # what `break` does, in the console's words
    code: ClassVar[str]  # the doctor's finding code that names it
    grade: ClassVar[str] = "FAIL"  # what the autograder says while it is broken
    why_grade: ClassVar[str] = ""
    seconds: ClassVar[float] = 30.0  # its time in `local faults` (measured, loaded 2 cores)
    booted: ClassVar[bool] = False  # needs booted instances (infra/local/machines)

    @abstractmethod
    def apply(self, site: FaultSite) -> None: ...

    @abstractmethod
    def undo(self, site: FaultSite) -> None: ...

    @abstractmethod
    def effect(self, site: FaultSite) -> bool: ...

    @abstractmethod
    def broken(self, site: FaultSite) -> bool: ...

    def __repr__(self) -> str:
        return f"<fault {self.name}>"


def ignoring(code: str, call, **kwargs) -> None:
    """`call(**kwargs)`, where AWS's error `code` means there is nothing to do."""
    try:
        call(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != code:
            raise


def tcp(port: int, **sources) -> dict:
    """An IpPermissions entry: TCP `port` from `sources` (IpRanges=..., UserIdGroupPairs=...)."""
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **sources}


def wait_for(waiter, attempts: int = 100, **params) -> None:
    """A boto3 waiter, paced for an emulator: every 0.2 s, `attempts` times at most."""
    waiter.wait(**params, WaiterConfig={"Delay": 0.2, "MaxAttempts": attempts})
