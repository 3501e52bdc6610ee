"""The controller's connection to a simulated lab, and the lab's clock.

A dry-run's devices are simulated in their own process (``simulators/lab``), which
outlives the controller and keeps its state on disk. The controller reaches the
lab's serial devices on their pseudo-terminals, and everything else through this
link: the liquid handler's and imager's PyLabRobot back ends, the incubator and
counter link drivers, the arm, the simulated operator, and the clock. On
hardware there is no link and none of this is built.

``LabClock`` is the dry-run's clock: the lab owns time. Every reply from the lab
says what time it is there, so ``now()`` never needs a round trip; ``sleep`` asks
the lab to advance; ``sync`` asks what time it is (at the start of every step,
since another controller may have moved the lab's time on).

The ``truth`` methods (a vessel's cells, a container's liquid) exist only because
a simulated lab can be asked; dry-run reports and tests use them to judge from the
world. No protocol decides anything from them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from workcell.clock import Clock
from workcell.errors import DeviceError, DeviceRefused, TipPickupError
from workcell.wire import LinkClient, LinkError, LinkRefused


class VesselTruth(BaseModel):
    """A vessel as the simulated lab knows it (what no instrument can see all of)."""

    name: str
    area_cm2: float
    attached_viable: float
    floating_viable: float
    dead: float
    medium_volume_uL: float
    nutrient: float
    confluence: float
    population_doublings: float
    cell_length_um: float = 0.0
    cell_width_um: float = 0.0
    confluent_density_per_cm2: float = 0.0
    donor: str | None = None
    viable: float
    viability: float


class LiquidTruth(BaseModel):
    volume_uL: float
    viable: float
    dead: float
    nutrient: float
    pd: float
    enzyme: float
    serum: float = 0.0
    donor: str | None = None

    @property
    def cells(self) -> float:
        return self.viable + self.dead


class LabClock(Clock):
    """The lab's time, as the lab last said it was."""

    def __init__(self, link: LabLink, kind: str, start: datetime, elapsed: float) -> None:
        self.link = link
        self.kind = kind
        self.simulated = kind == "simulated"
        self._start = start.astimezone(UTC)
        self._elapsed = elapsed

    def observe(self, elapsed: float) -> None:
        """Every reply's lab time; the clock never goes back."""
        if elapsed > self._elapsed:
            self._elapsed = elapsed

    def now(self) -> datetime:
        if not self.simulated:
            return datetime.now(UTC)
        return self._start + timedelta(seconds=self._elapsed)

    def elapsed(self) -> float:
        if not self.simulated:
            return (datetime.now(UTC) - self._start).total_seconds()
        return self._elapsed

    def start(self) -> datetime:
        return self._start

    def sync(self) -> float:
        """Ask the lab what time it is (another controller may have moved it on)."""
        self.link.call("lab", "clock.now")
        return self.elapsed()

    async def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds} s)")
        if not self.simulated:
            await asyncio.sleep(seconds)
            return
        if seconds > 0:
            self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move the lab's time on without yielding (an outage in a kill campaign)."""
        self.link.call("lab", "clock.advance", seconds=float(seconds))


class LabLink:
    """One controller's connection to one lab."""

    def __init__(self, host: str, port: int, timeout_s: float = 120.0) -> None:
        self.client = LinkClient(host, port, timeout_s, on_time=self._observe)
        self.clock: LabClock | None = None
        hello = self.call("lab", "hello")
        self.name: str = hello["name"]
        self.fingerprint: str = hello["fingerprint"]
        self.ports: dict[str, str] = hello["ports"]
        self.clock = LabClock(
            self, hello["clock"], datetime.fromisoformat(hello["start"]), hello["elapsed"]
        )

    def _observe(self, t: float) -> None:
        if self.clock is not None:
            self.clock.observe(t)

    def close(self) -> None:
        self.client.close()

    def request(self, who: str, op: str, /, **args: Any) -> tuple[Any, list[bytes]]:
        """One request; a lost lab or a refusal becomes a DeviceError naming ``who`` (a device)."""
        try:
            return self.client.request(op, **args)
        except LinkError as err:
            raise DeviceError(who, op, f"no answer from the simulated lab: {err}") from err
        except LinkRefused as err:
            if err.kind == "no_tip" and op.endswith("pick_up_tip"):
                raise TipPickupError(who, "pick up tip", err.message) from None
            if err.kind in ("fault", "bad_request"):  # the lab failed mid-action: unknown
                raise DeviceError(who, op, err.message) from None
            raise DeviceRefused(who, op, err.message) from None

    def call(self, who: str, op: str, /, **args: Any) -> Any:
        return self.request(who, op, **args)[0]

    # --- the truth of a simulated world ---------------------------------------------

    def vessel(self, name: str) -> VesselTruth:
        return VesselTruth.model_validate(self.call("lab", "truth.vessel", name=name))

    def vessels(self) -> list[str]:
        return list(self.call("lab", "truth.vessels"))

    def liquid(self, name: str) -> LiquidTruth:
        return LiquidTruth.model_validate(self.call("lab", "truth.liquid", name=name))

    def chamber(self, name: str) -> dict[str, Any]:
        return dict(self.call("lab", "truth.chamber", name=name))

    def star(self) -> dict[str, Any]:
        return dict(self.call("lab", "truth.star"))

    def serial(self, name: str) -> dict[str, Any]:
        return dict(self.call("lab", "truth.serial", name=name))

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        """The lab's physical log (rows after ``since``), as its own file has it."""
        return list(self.call("lab", "truth.log", since=since))

    def ot2(self, name: str) -> dict[str, Any]:
        return dict(self.call(name, "truth.ot2", name=name))

    def where(self, plates: list[str]) -> dict[str, str]:
        return dict(self.call("lab", "plates.where", plates=plates))

    # --- levers for drills and tests ------------------------------------------------------

    def set_door(self, incubator: str, is_open: bool) -> None:
        self.call(incubator, "admin.door", incubator=incubator, open=is_open)

    def heater_fault(self, incubator: str, delta_C: float, seconds: float) -> None:
        self.call(
            incubator, "admin.heater_fault", incubator=incubator, delta_C=delta_C, seconds=seconds
        )

    def ot2_fault(
        self, name: str, fault: str, command: str | None = None, slow_answer_s: float | None = None
    ) -> None:
        self.call(
            name,
            "admin.ot2_fault",
            name=name,
            fault=fault,
            command=command,
            slow_answer_s=slow_answer_s,
        )

    def queue_faults(self, device: str, faults: list[str | None]) -> None:
        self.call(device, "admin.fault_queue", device=device, faults=faults)


class LabArm:
    """The simulated lab's plate mover between the deck and the incubators' transfer stations."""

    name = "arm"

    def __init__(self, link: LabLink) -> None:
        self.link = link

    async def move(self, plate: str, to: str, by: str = "arm") -> None:
        """Carry ``plate`` to ``to``: by the lab's arm, or by the simulated operator's hands."""
        self.link.call(
            self.name if by == "arm" else "operator", "arm.move", plate=plate, to=to, by=by
        )

    async def where(self, plates: list[str]) -> dict[str, str]:
        return self.link.where(plates)
