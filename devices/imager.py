"""Confluence imager: PyLabRobot's ``Imager`` front end plus our confluence estimator.

PyLabRobot's ``Imager`` takes the pictures (brightfield, one field per capture)
through an exchangeable back end: the simulator here, an Agilent/BioTek Cytation
on hardware. ``ConfluenceImager`` images several fields of every well, measures
each with :func:`devices.confluence.estimate_confluence` and reports the mean, the
way imager software reports well confluence.
"""

from __future__ import annotations

from pylabrobot.plate_reading import Imager
from pylabrobot.plate_reading.standard import ImagingMode, Objective
from pylabrobot.resources import Coordinate, Plate, ResourceHolder

from devices.confluence import EstimatorParams, estimate_confluence


class ConfluenceImager:
    """The imager a protocol talks to: confluence per well of a plate."""

    def __init__(
        self,
        imager: Imager,
        fields_per_well: int = 4,
        estimator: EstimatorParams | None = None,
        objective: Objective = Objective.O_10X_PL_FL,
    ) -> None:
        if fields_per_well < 1:
            raise ValueError("an imager needs at least one field per well")
        self.imager = imager
        self.name = imager.name
        self.fields_per_well = fields_per_well
        self.estimator = estimator or EstimatorParams()
        self.objective = objective

    async def setup(self) -> None:
        await self.imager.setup()

    async def stop(self) -> None:
        await self.imager.stop()

    async def confluence(self, plate: Plate) -> dict[str, float]:
        """Mean estimated confluence (0..1) per well, by PyLabRobot well name."""
        home = plate.parent
        plate.unassign()
        self.imager.assign_child_resource(plate, location=Coordinate.zero())
        try:
            out: dict[str, float] = {}
            for well in plate.get_all_items():
                values: list[float] = []
                for _ in range(self.fields_per_well):
                    shot = await self.imager.capture(
                        well, mode=ImagingMode.BRIGHTFIELD, objective=self.objective
                    )
                    values.extend(estimate_confluence(im, self.estimator) for im in shot.images)
                out[well.name] = sum(values) / len(values)
            return out
        finally:
            plate.unassign()
            if isinstance(home, ResourceHolder):
                home.assign_child_resource(plate)
            elif home is not None:
                home.assign_child_resource(plate, location=Coordinate.zero())
