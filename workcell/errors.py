"""Exceptions a lab user sees: each says what is wrong and where, before anything moves."""

from __future__ import annotations


class WorkcellError(Exception):
    """Base class for errors the CLI reports as a clear message and a non-zero exit."""


class ConfigError(WorkcellError):
    """The workcell config is invalid; the message names the offending field."""


class ProtocolRefused(WorkcellError):
    """A protocol was refused during planning, before any device moved.

    ``problems`` holds one line per problem so a user can fix them all at once.
    """

    def __init__(self, protocol: str, problems: list[str]) -> None:
        self.protocol = protocol
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{protocol} refused before any device moved:\n{lines}")


class DeviceError(WorkcellError):
    """A device failed a command after the driver's bounded retries.

    Names the device and the command, so the batch record and the operator know
    exactly what was attempted.
    """

    def __init__(self, device: str, command: str, reason: str) -> None:
        self.device = device
        self.command = command
        self.reason = reason
        super().__init__(f"{device}: command {command!r} failed: {reason}")


class DeviceRefused(DeviceError):
    """The device refused the command and did nothing: the outcome is known.

    Every other ``DeviceError`` (no reply, a broken line, the lab gone) leaves the
    outcome unknown until the device is asked (``workcell/assembly/reconcile.py``).
    """


class TipPickupError(DeviceRefused):
    """A channel came up without a tip (on a STAR, a 'no tip' error)."""


class HeldForOperator(WorkcellError):
    """Work stopped at a hold point: an operator must decide before the step goes on.

    The step stays interrupted (it is finished, with the operator's decision, when
    the run is resumed); the message says what to check and which vessels.
    """
