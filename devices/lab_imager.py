"""The imager back end for the simulated lab: PyLabRobot's ``ImagerBackend`` over the lab link.

Each field is rendered in the lab and comes back as raw 12-bit pixels. A plate's
fields can be asked for in one request (``capture_wells``), as an imager's plate
read takes every field of a plate map in one run; ``ConfluenceImager`` uses that
when the back end offers it, and measures the images here, as it measures a
Cytation's.

With ``fidelity="fast"`` (the config's ``fidelity.mode``) no pixels cross the link:
like an imager whose own software reports confluence, the lab answers
``measure_confluence`` with each field's estimate drawn from the estimator's error
measured on rendered fields (``simulators/confluence_error.py``), in the same time
on the lab's clock.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pylabrobot.plate_reading.backend import ImagerBackend
from pylabrobot.plate_reading.standard import ImagingMode, ImagingResult, Objective
from pylabrobot.resources import Plate, Well

from devices.lab import LabLink


class LabImagerBackend(ImagerBackend):
    def __init__(
        self, device: str, link: LabLink, fidelity: Literal["rendered", "fast"] = "rendered"
    ) -> None:
        super().__init__()
        self.device = device
        self.link = link
        self.fidelity = fidelity

    @property
    def reports_confluence(self) -> bool:
        """True on the fast path: ``ConfluenceImager`` asks ``measure_confluence``."""
        return self.fidelity == "fast"

    async def measure_confluence(
        self, plate: Plate, wells: list[Well], fields: int
    ) -> dict[str, list[float]]:
        """The fast path: each field's confluence estimate per well, from the lab."""
        result = self.link.call(
            self.device,
            "imager.measure",
            device=self.device,
            wells=[w.name for w in wells],
            fields=fields,
        )
        return {str(k): [float(x) for x in v] for k, v in result.items()}

    async def setup(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def _shots(self, wells: list[str]) -> list[ImagingResult]:
        result, blobs = self.link.request(
            self.device, "imager.capture", device=self.device, wells=wells
        )
        out = []
        for shape, blob in zip(result["shapes"], blobs, strict=True):
            image = np.frombuffer(blob, dtype=np.dtype(result["dtype"])).reshape(shape)
            out.append(
                ImagingResult(
                    images=[image],
                    exposure_time=result["exposure_ms"],
                    focal_height=result["focal_height_mm"],
                )
            )
        return out

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
        if mode != ImagingMode.BRIGHTFIELD:
            raise NotImplementedError(f"{self.device}: only brightfield is simulated, not {mode}")
        return self._shots([plate.get_well((row, column)).name])[0]

    async def capture_wells(self, plate: Plate, fields: list[Well]) -> list[ImagingResult]:
        """One brightfield field per entry (a well named twice: two fields), in one read."""
        return self._shots([w.name for w in fields])
