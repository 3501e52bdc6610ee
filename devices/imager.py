"""Confluence imager: PyLabRobot's ``Imager`` front end plus our confluence estimator.

PyLabRobot's ``Imager`` takes the pictures (brightfield, one field per capture)
through an exchangeable back end: the simulator here, an Agilent/BioTek Cytation
on hardware. ``ConfluenceImager`` images several fields of every well, measures
each with :func:`devices.confluence.estimate_confluence` and reports the mean, the
way imager software reports well confluence.

A back end may instead report confluence itself, as an imager's own analysis
software does (``reports_confluence`` true, ``measure_confluence`` per field): the
simulator's fast path, which draws each field's estimate from this estimator's
measured error rather than rendering pixels.
"""

from __future__ import annotations

import asyncio

from pylabrobot.plate_reading import Imager
from pylabrobot.plate_reading.standard import ImagingMode, ImagingResult, Objective
from pylabrobot.resources import Coordinate, Plate, ResourceHolder, Well

from devices.confluence import EstimatorParams, estimate_confluence
from workcell.compute import run_cpu


def well_position(plate: Plate, well: Well) -> tuple[int, int]:
    """(row, column) of a well, for ``Imager.capture``.

    PyLabRobot's ``Imager.capture(well)`` decodes a Well's index as row-major while
    plates order their wells column-major, so on a 6-well plate it images A2 when
    asked for B1 (fixed upstream in PyLabRobot PR #1226, after the release we pin).
    Passing the position explicitly is right on either version.
    """
    idx = plate.index_of_item(well)
    if idx is None:
        raise ValueError(f"well {well.name} is not in plate {plate.name}")
    column, row = divmod(idx, plate.num_items_y)
    return row, column


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

    async def _measure_all(self, plate: Plate, fields: list[Well]) -> list[list[float]]:
        """Capture each field and measure it as soon as it arrives.

        A back end that reads a whole plate map at once (``capture_wells``: the
        simulated lab's imager) gets one request; one that captures concurrently
        gets them at once; else one by one as a real imager takes them, with
        measuring on the worker processes while the next fields are taken.
        """

        async def measure(shot: ImagingResult) -> list[float]:
            return [await run_cpu(estimate_confluence, im, self.estimator) for im in shot.images]

        batch = getattr(self.imager.backend, "capture_wells", None)
        if batch is not None:  # the whole plate map in one read (the simulated lab's imager)
            shots = await batch(plate, fields)
            return list(await asyncio.gather(*(measure(s) for s in shots)))

        async def one(well: Well) -> list[float]:
            shot = await self.imager.capture(
                well_position(plate, well), mode=ImagingMode.BRIGHTFIELD, objective=self.objective
            )
            return await measure(shot)

        if getattr(self.imager.backend, "concurrent_captures", False):
            return list(await asyncio.gather(*(one(w) for w in fields)))
        pending: list[asyncio.Task[list[float]]] = []
        for w in fields:  # one capture at a time; measuring overlaps the next capture
            shot = await self.imager.capture(
                well_position(plate, w), mode=ImagingMode.BRIGHTFIELD, objective=self.objective
            )
            pending.append(asyncio.ensure_future(measure(shot)))
        return [await t for t in pending]

    async def confluence(self, plate: Plate, wells: list[str] | None = None) -> dict[str, float]:
        """Mean estimated confluence (0..1) per well, by PyLabRobot well name.

        ``wells`` limits the imaging to those wells (by name), as an imager's plate
        map does: a plate with a few cultures is not imaged well by empty well.
        """
        chosen = None if wells is None else set(wells)
        home = plate.parent
        plate.unassign()
        self.imager.assign_child_resource(plate, location=Coordinate.zero())
        try:
            targets = [w for w in plate.get_all_items() if chosen is None or w.name in chosen]
            backend = self.imager.backend
            if getattr(backend, "reports_confluence", False):
                reported = await backend.measure_confluence(  # type: ignore[attr-defined]
                    plate, targets, self.fields_per_well
                )
                return {name: sum(v) / len(v) for name, v in reported.items()}
            fields = [w for w in targets for _ in range(self.fields_per_well)]
            measured = await self._measure_all(plate, fields)
            per_well: dict[str, list[float]] = {}
            for well, values in zip(fields, measured, strict=True):
                per_well.setdefault(well.name, []).extend(values)
            return {name: sum(v) / len(v) for name, v in per_well.items()}
        finally:
            plate.unassign()
            if isinstance(home, ResourceHolder):
                home.assign_child_resource(plate)
            elif home is not None:
                home.assign_child_resource(plate, location=Coordinate.zero())
