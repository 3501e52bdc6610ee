"""Incubator drivers and monitoring on top of PyLabRobot's ``Incubator``.

``CheckedCytomatBackend`` is PyLabRobot's ``CytomatBackend`` with what a
production line needs around it: a bad line (no answer, a garbled reply, a
dropped connection) is retried a bounded number of times, and a plate move whose
reply was lost is *checked* before it is repeated (the transfer station's sensor
tells whether the plate already moved), so a move is never done twice. Refusals
from the device itself (slot empty, station occupied) are not retried. A reply
is parsed inside the retried call: a garbled register value or temperature is a
bad line like any other, read again, never a bare ``ValueError`` (PyLabRobot
parses outside its send, and once a move had happened). An error the Cytomat
reports in its error register after an action (a plate it could not unload)
ends the action. Every failure ends as a ``DeviceError`` naming the device and
the telegram.

``IncubatorMonitor`` polls any incubator back end that speaks the Cytomat query
API (temperature, CO2, overview register) and records alarms in the store: a
temperature or CO2 excursion, and a device door left open too long.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import serial
from pydantic import BaseModel, ConfigDict, Field
from pylabrobot.storage.cytomat import CytomatBackend
from pylabrobot.storage.cytomat.constants import (
    ActionRegister,
    ActionType,
    CytomatIncupationResponse,
    ErrorRegister,
    LoadStatusAtProcessor,
    LoadStatusFrontOfGate,
    SensorRegister,
    SwapStationPosition,
    WarningRegister,
)
from pylabrobot.storage.cytomat.errors import error_map
from pylabrobot.storage.cytomat.schemas import (
    ActionRegisterState,
    OverviewRegisterState,
    SensorStates,
    SwapStationState,
)
from pylabrobot.storage.cytomat.utils import hex_to_base_twelve, hex_to_binary

from workcell.errors import DeviceError

_DEVICE_REFUSALS = tuple(type(e) for code, e in error_map.items() if code not in (0x1, 0x2, 0x3))
T = TypeVar("T")
_PARSE_ERRORS = (ValueError, KeyError, IndexError, AssertionError, StopIteration)


def _register(value: str, enum: type[ErrorRegister] | type[WarningRegister]) -> Any:
    return next(m for m in enum if m.value == value.strip().upper())


def _action_register(value: str) -> ActionRegisterState:
    bits = hex_to_binary(value)
    if len(bits) != 8:
        raise ValueError(f"action register {value!r} is not one byte")
    target = next(m for m in ActionType if int(m.value, 16) == int(bits[:3], 2))
    action = next(m for m in ActionRegister if int(m.value, 16) == int(bits[3:], 2))
    return ActionRegisterState(target=target, action=action)


def _overview(value: str) -> OverviewRegisterState:
    if len(value.strip()) != 2:
        raise ValueError(f"overview register {value!r} is not one byte")
    return OverviewRegisterState.from_resp(value)


def _sensors(value: str) -> SensorStates:
    bits = hex_to_base_twelve(value)
    if len(bits) != 15:
        raise ValueError(f"sensor register {value!r} is not 15 bits")
    return SensorStates(**{m.name: bool(int(bits[m.value])) for m in SensorRegister})


def _swap(value: str) -> SwapStationState:
    if len(value) != 3:
        raise ValueError(f"swap register {value!r} is not three digits")
    return SwapStationState(
        position=SwapStationPosition(int(value[0])),
        load_status_front_of_gate=LoadStatusFrontOfGate(int(value[1])),
        load_status_at_processor=LoadStatusAtProcessor(int(value[2])),
    )


def _incubation(value: str) -> CytomatIncupationResponse:
    nominal, actual = value.split()
    return CytomatIncupationResponse(
        nominal_value=float(nominal.lstrip("+")), actual_value=float(actual.lstrip("+"))
    )


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

    async def _query(self, command: str, parse: Callable[[str], T]) -> T:
        """A ``ch`` query whose reply is parsed inside the retry: a garbled value is re-read."""
        last: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt:
                self.retries += 1
            value = await self.send_command("ch", command, "")
            try:
                return parse(value)
            except _PARSE_ERRORS as err:
                last = err
        raise DeviceError(
            self.device,
            f"ch:{command}",
            f"unreadable reply after {self.attempts} attempts ({last})",
        ) from last

    async def get_overview_register(self) -> OverviewRegisterState:
        return await self._query("bs", _overview)

    async def get_error_register(self) -> ErrorRegister:
        return await self._query("be", lambda v: _register(v, ErrorRegister))  # type: ignore[no-any-return]

    async def get_warning_register(self) -> WarningRegister:
        return await self._query("bw", lambda v: _register(v, WarningRegister))  # type: ignore[no-any-return]

    async def get_action_register(self) -> ActionRegisterState:
        return await self._query("ba", _action_register)

    async def get_swap_register(self) -> SwapStationState:
        return await self._query("sw", _swap)

    async def get_sensor_register(self) -> SensorStates:
        return await self._query("ts", _sensors)

    async def get_incubation_query(self, query: Any) -> CytomatIncupationResponse:
        return await self._query(query, _incubation)

    async def send_action(
        self, command_type: str, command: str, params: str, timeout: int | None = 60
    ) -> OverviewRegisterState:
        """The action, then its completion; an error register set by it ends as a DeviceError."""
        telegram = f"{command_type}:{command} {params}".strip()
        await self.send_command(command_type, command, params)
        if timeout is None:
            return await self.get_overview_register()
        try:
            return await self.wait_for_task_completion(timeout=timeout)
        except DeviceError:
            raise
        except Exception as err:  # the error register after the action, or a time-out
            raise DeviceError(
                self.device, telegram, f"the Cytomat reported after the action: {err}"
            ) from err

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
