"""The OT-2 through PyLabRobot's ``OpentronsOT2Backend``, with errors a lab user can act on.

PyLabRobot drives the OT-2 over the robot server's HTTP API (``ot_api``). Every HTTP
request and every command payload is PyLabRobot's own; this subclass only

* checks at set-up that the pipettes mounted on the robot are the ones the config
  names (a P300 where the plan expects a P1000 would move the wrong volumes), and
* turns what ``ot_api`` raises (a failed command, an HTTP error, a dropped connection)
  into ``DeviceError`` naming the device and the command, and a failed tip pick-up into
  ``TipPickupError``, so the protocols' recovery (the next tip) works as on the STAR.

A command whose connection dropped may or may not have run on the robot; the error
says so, and nothing is retried here: the protocol faults and the record shows where.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pylabrobot.liquid_handling.backends.opentrons_backend import OpentronsOT2Backend

from workcell.errors import DeviceError, TipPickupError

T = TypeVar("T")


def _reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, ConnectionError | OSError) or "RemoteDisconnected" in type(err).__name__:
        return f"connection to the robot lost ({text}); the command may or may not have run"
    return text


class CheckedOT2Backend(OpentronsOT2Backend):
    """PyLabRobot's OT-2 back end; faults as ``DeviceError``, mounted pipettes checked."""

    # An OT-2 senses neither tips nor liquid levels: its "tip presence" is what this back
    # end remembers, so after a crash it is no answer (workcell/assembly/reconcile.py)
    tip_sensor = False

    def __init__(self, device: str, host: str, port: int, pipettes: dict[str, str | None]) -> None:
        super().__init__(host=host, port=port)
        self.device = device
        self.expected = pipettes

    async def _checked(
        self, command: str, call: Callable[[], Awaitable[T]], tip: bool = False
    ) -> T:
        try:
            return await call()
        except DeviceError:
            raise
        except Exception as err:  # noqa: BLE001 - ot_api raises bare Exception for HTTP errors
            cls = TipPickupError if tip else DeviceError
            raise cls(self.device, command, _reason(err)) from err

    async def setup(self, skip_home: bool = False) -> None:  # type: ignore[override]
        await self._checked("setup", lambda: super(CheckedOT2Backend, self).setup(skip_home))
        mounted = {
            "left": (self.left_pipette or {}).get("name"),
            "right": (self.right_pipette or {}).get("name"),
        }
        if mounted != self.expected:
            raise DeviceError(
                self.device,
                "GET /pipettes",
                f"the robot has left={mounted['left']}, right={mounted['right']}; the config "
                f"says left={self.expected['left']}, right={self.expected['right']}",
            )

    async def pick_up_tips(self, ops: list[Any], use_channels: list[int], **kw: Any) -> None:  # type: ignore[override]
        await self._checked(
            "pickUpTip",
            lambda: super(CheckedOT2Backend, self).pick_up_tips(ops, use_channels),
            tip=True,
        )

    async def drop_tips(self, ops: list[Any], use_channels: list[int], **kw: Any) -> None:  # type: ignore[override]
        await self._checked(
            "dropTip", lambda: super(CheckedOT2Backend, self).drop_tips(ops, use_channels)
        )

    async def aspirate(self, ops: list[Any], use_channels: list[int], **kw: Any) -> None:  # type: ignore[override]
        await self._checked(
            "aspirate", lambda: super(CheckedOT2Backend, self).aspirate(ops, use_channels)
        )

    async def dispense(self, ops: list[Any], use_channels: list[int], **kw: Any) -> None:  # type: ignore[override]
        await self._checked(
            "dispense", lambda: super(CheckedOT2Backend, self).dispense(ops, use_channels)
        )

    async def request_tip_presence(self) -> list[bool | None]:
        """Which channels hold a tip, as the back end tracks it (asked after a failed pick-up)."""
        out: list[bool | None] = []
        if self.left_pipette is not None:
            out.append(self.left_pipette_has_tip)
        if self.right_pipette is not None:
            out.append(self.right_pipette_has_tip)
        return out
