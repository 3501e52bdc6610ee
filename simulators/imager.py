"""The simulated imager, in the simulated lab: brightfield fields rendered from the culture model.

The controller's PyLabRobot ``Imager`` reaches it through ``devices.lab_imager``;
each field asked for is rendered (``simulators/brightfield.py``) at the well's true
confluence, with the cells the culture model says are there (their size changes
with passage), and takes time on the lab's clock; the images go back over the lab
link as raw 12-bit pixels. The confluence estimator then
measures these pictures in the controller, as it would a Cytation's.

The fast path (``measure``, the controller's imager set to ``fidelity: fast``) draws
no pixels: like an imager whose own software reports confluence, the lab answers
with the true confluence plus the estimator's error as measured on rendered fields
(``simulators/confluence_error.py``), in the same time on the lab's clock.

Each field's noise (the cells' placement, the camera's noise, the fast path's
error) comes from a generator seeded by the lab's seed, the imager, the well and
the lab time of the capture (``simulators/noise.py``), not from one stream in
call order: an image taken again after the controller was killed before it
recorded the reply changes only that image's readings, not every later one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from simulators.brightfield import FieldOptics, capture_field
from simulators.confluence_error import EstimatorError, sample
from simulators.culture import CultureModel
from simulators.noise import world_rng
from workcell.compute import map_cpu

CAPTURE_S = 2.0
FIXED_EXPOSURE_MS = 5.0
FIXED_FOCUS_MM = 1.0
# Starting the image workers costs a couple of seconds; a lab that images a plate or two
# (a test, a dry-run of one protocol) renders inline, one that images all campaign long
# hands the fields to its workers once it has rendered this many.
POOL_AFTER_FIELDS = 200


class ImagerSimulator:
    def __init__(
        self,
        name: str,
        culture: CultureModel,
        advance: Callable[[float], None],
        log: Callable[..., None],
        seed: int,
        now_s: Callable[[], float],
        optics: FieldOptics | None = None,
        error: EstimatorError | None = None,
    ) -> None:
        self.name = name
        self.error = error
        self.culture = culture
        self.advance = advance
        self.log = log
        self.seed = seed
        self.now_s = now_s
        self.optics = optics or FieldOptics()
        self.rendered = 0

    def capture(self, wells: list[str]) -> tuple[list[np.ndarray], list[float]]:
        """One field per entry of ``wells`` (a well named twice gives two fields)."""
        calls: list[tuple[Any, ...]] = []
        for well in wells:
            confluence, _, cell_um = self._truth(well)
            seed = int(self._rng(well).integers(2**63))  # the field's, from the world
            self.log(self.name, "capture", well=well)
            self.advance(CAPTURE_S)
            calls.append((confluence, cell_um, seed, self.optics))
        if self.rendered >= POOL_AFTER_FIELDS:
            shots = map_cpu(capture_field, calls)
        else:
            shots = [capture_field(*c) for c in calls]
        self.rendered += len(calls)
        return [image for image, _ in shots], [covered for _, covered in shots]

    def _truth(self, well: str) -> tuple[float, float, tuple[float, float]]:
        """True confluence, population doublings and cell size (um) of a well's culture."""
        if well not in self.culture.vessels:
            return 0.0, 0.0, self.culture.params.cell_shape_um(0.0)
        state = self.culture.state(well)
        cell_um = (state.cell_length_um, state.cell_width_um)
        return state.confluence, state.population_doublings, cell_um

    def measure(self, wells: list[str], fields: int) -> dict[str, list[float]]:
        """The fast path: each field's estimate per well, drawn from the estimator's error."""
        error = self.error
        if error is None:
            from simulators.estimator_error_data import MEASURED

            error = self.error = EstimatorError.model_validate(MEASURED)
        out: dict[str, list[float]] = {}
        for well in wells:
            confluence, pd, _ = self._truth(well)
            self.log(self.name, "capture", well=well, fields=fields, fast=True)
            rng = self._rng(well)  # at the capture's start: its fields' errors
            self.advance(CAPTURE_S * fields)
            out[well] = sample(error, confluence, pd, rng, fields)
        return out

    def _rng(self, well: str) -> np.random.Generator:
        """The noise of a capture of ``well`` now: fixed by the world, not by call order."""
        return world_rng(self.seed, self.name, well, float(self.now_s()))

    def to_state(self) -> dict[str, Any]:
        return {}  # no random stream to keep: each capture's noise is the world's

    def load_state(self, st: dict[str, Any]) -> None:
        """Nothing to restore (a state saved before the noise was the world's had a stream)."""
