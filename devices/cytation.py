"""The hardware imager: an Agilent BioTek Cytation through PyLabRobot's ``CytationBackend``.

PyLabRobot drives the reader over USB (FTDI, ``pylibftdi``) and its camera with
FLIR's Spinnaker SDK (``PySpin``); neither is needed for a dry-run, so the driver
is only made when the workcell connects (``setup``), and a missing library or
instrument is a ``DeviceError`` naming the imager, not an import error at start.
Captures are brightfield fields, measured by the same confluence estimator as the
simulated imager's.
"""

from __future__ import annotations

from typing import Any

from pylabrobot.plate_reading.backend import ImagerBackend
from pylabrobot.plate_reading.standard import ImagingMode, ImagingResult, Objective
from pylabrobot.resources import Plate

from workcell.errors import DeviceError


class CheckedCytationBackend(ImagerBackend):
    def __init__(
        self, device: str, device_id: str | None = None, camera_serial_number: str | None = None
    ) -> None:
        super().__init__()
        self.device = device
        self.device_id = device_id
        self.camera_serial_number = camera_serial_number
        self.inner: Any = None

    async def setup(self) -> None:
        try:
            from pylabrobot.plate_reading.agilent.biotek_cytation_backend import (
                CytationBackend,
                CytationImagingConfig,
            )

            self.inner = CytationBackend(
                device_id=self.device_id,
                imaging_config=CytationImagingConfig(
                    camera_serial_number=self.camera_serial_number
                ),
            )
            await self.inner.setup(use_cam=True)
        except Exception as err:  # noqa: BLE001 - no library, no USB device, no camera
            self.inner = None
            raise DeviceError(
                self.device,
                "setup",
                f"cannot connect to the Cytation ({type(err).__name__}: {err}); it needs the "
                "instrument on USB, pylibftdi (pip install 'pylabrobot[ftdi]') and FLIR's "
                "Spinnaker SDK (PySpin) for its camera",
            ) from err

    async def stop(self) -> None:
        if self.inner is not None:
            await self.inner.stop()
            self.inner = None

    async def capture(
        self,
        row: int,
        column: int,
        mode: ImagingMode,
        objective: Objective,
        exposure_time: Any,
        focal_height: Any,
        gain: Any,
        plate: Plate,
        **backend_kwargs: Any,
    ) -> ImagingResult:
        if self.inner is None:
            raise DeviceError(self.device, "capture", "the Cytation is not connected")
        try:
            return await self.inner.capture(  # type: ignore[no-any-return]
                row=row,
                column=column,
                mode=mode,
                objective=objective,
                exposure_time=exposure_time,
                focal_height=focal_height,
                gain=gain,
                plate=plate,
                **backend_kwargs,
            )
        except Exception as err:  # noqa: BLE001 - any driver fault, named
            raise DeviceError(self.device, f"capture {row},{column}", str(err)) from err
