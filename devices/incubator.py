"""Incubator drivers and monitoring on top of PyLabRobot's ``Incubator``.

``CheckedCytomatBackend`` is PyLabRobot's ``CytomatBackend`` with what a
production line needs around it: a bad line (no answer, a garbled reply, a
dropped connection) is retried a bounded number of times, and a plate move whose
reply was lost is *checked* before it is repeated (the transfer station's sensor
tells whether the plate already moved), so a move is never done twice. Refusals
from the device itself (slot empty, station occupied) are not retried. Every
failure ends as a ``DeviceError`` naming the device and the telegram.

``IncubatorMonitor`` polls any incubator back end that speaks the Cytomat query
API (temperature, CO2, overview register) and records alarms in the store: a
temperature or CO2 excursion, and a device door left open too long.
"""

from __future__ import annotations

import contextlib
from typing import Any

import serial
from pydantic import BaseModel, ConfigDict, Field
from pylabrobot.storage.cytomat import CytomatBackend
from pylabrobot.storage.cytomat.errors import error_map
from pylabrobot.storage.cytomat.schemas import OverviewRegisterState

from workcell.errors import DeviceError

_DEVICE_REFUSALS = tuple(type(e) for code, e in error_map.items() if code not in (0x1, 0x2, 0x3))


class CheckedCytomatBackend(CytomatBackend):
    """PyLabRobot's Cytomat back end with bounded retries and no repeated moves."""

    def __init__(self, model: str, port: str, device: str, attempts: int = 3) -> None:
        super().__init__(model=model, port=port)
        self.device = device
        self.attempts = attempts
        self.retries = 0
        self.moves_confirmed_by_state = 0
        self._inner = False

    async def send_command(self, command_type: str, command: str, params: str) -> str:
        if self._inner:  # PyLabRobot's own error handling calls back in: no nesting
            return await super().send_command(command_type, command, params)
        telegram = f"{command_type}:{command} {params}".strip()
        last: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt:
                self.retries += 1
                if command_type == "mv" and await self._move_happened(command):
                    self.moves_confirmed_by_state += 1
                    return ""
            try:
                self._inner = True
                return await super().send_command(command_type, command, params)
            except _DEVICE_REFUSALS as err:
                raise DeviceError(self.device, telegram, f"refused by the Cytomat: {err}") from err
            except Exception as err:  # PyLabRobot raises bare Exception for unknown replies
                last = err
                if isinstance(err, serial.SerialException | OSError):
                    await self._reopen()
            finally:
                self._inner = False
        raise DeviceError(
            self.device, telegram, f"no valid reply after {self.attempts} attempts ({last})"
        ) from last

    async def _reopen(self) -> None:
        # the line is already broken; a failure here shows in the caller's final error
        with contextlib.suppress(Exception):
            await self.io.stop()
        with contextlib.suppress(Exception):
            await self.io.setup()

    async def _move_happened(self, command: str) -> bool:
        """Whether a move whose reply was lost did take place, from the transfer station."""
        try:
            self._inner = True
            state = OverviewRegisterState.from_resp(await super().send_command("ch", "bs", ""))
        except Exception:  # noqa: BLE001 - unknown: the caller repeats the move
            return False
        finally:
            self._inner = False
        if command == "ts":  # transfer station -> storage: the station is empty afterwards
            return not state.transfer_station_occupied
        if command == "st":  # storage -> transfer station: the station holds the plate
            return state.transfer_station_occupied
        return False


class AlarmLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature_tolerance_C: float = Field(default=0.5, gt=0, le=5)
    co2_tolerance_percent: float = Field(default=0.5, gt=0, le=5)
    door_open_limit_s: float = Field(default=60.0, gt=0, le=3600)


class Alarm(BaseModel):
    incubator: str
    kind: str
    message: str
    value: float


class IncubatorMonitor:
    """Reads an incubator's climate and door through its driver and raises alarms."""

    def __init__(
        self,
        name: str,
        backend: Any,
        setpoint_C: float,
        co2_setpoint_percent: float,
        limits: AlarmLimits | None = None,
    ) -> None:
        self.name = name
        self.backend = backend
        self.setpoint_C = setpoint_C
        self.co2_setpoint = co2_setpoint_percent
        self.limits = limits or AlarmLimits()
        self.door_open_since: float | None = None
        self._door_alarmed = False

    async def check(self, now_s: float) -> list[Alarm]:
        alarms: list[Alarm] = []
        t = await self.backend.get_temperature()
        if abs(t - self.setpoint_C) > self.limits.temperature_tolerance_C:
            alarms.append(
                Alarm(
                    incubator=self.name,
                    kind="temperature_excursion",
                    value=t,
                    message=f"{self.name}: temperature {t:.1f} C outside "
                    f"{self.setpoint_C:.1f} +/- {self.limits.temperature_tolerance_C} C",
                )
            )
        co2 = (await self.backend.get_co2()).actual_value
        if abs(co2 - self.co2_setpoint) > self.limits.co2_tolerance_percent:
            alarms.append(
                Alarm(
                    incubator=self.name,
                    kind="co2_excursion",
                    value=co2,
                    message=f"{self.name}: CO2 {co2:.1f} % outside "
                    f"{self.co2_setpoint:.1f} +/- {self.limits.co2_tolerance_percent} %",
                )
            )
        overview = await self.backend.get_overview_register()
        if overview.device_door_open:
            if self.door_open_since is None:
                self.door_open_since = now_s
            open_s = now_s - self.door_open_since
            if open_s > self.limits.door_open_limit_s and not self._door_alarmed:
                self._door_alarmed = True
                alarms.append(
                    Alarm(
                        incubator=self.name,
                        kind="door_open_too_long",
                        value=open_s,
                        message=f"{self.name}: device door open for {open_s:.0f} s "
                        f"(limit {self.limits.door_open_limit_s:.0f} s)",
                    )
                )
        else:
            self.door_open_since = None
            self._door_alarmed = False
        return alarms
