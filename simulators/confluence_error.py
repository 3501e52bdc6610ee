"""The confluence estimator's error, measured on rendered fields: the fast imaging path.

Rendering brightfield fields and measuring them (``simulators/brightfield.py``,
``devices/confluence.py``) is what checks the estimator, but it costs ~20 ms a
field, and a campaign at clinical scale images hundreds of vessels a day. The
fast path skips the pixels: a field's estimate is the true confluence plus an
error drawn from the distribution the real estimator shows on rendered fields at
that confluence and cell age (population doublings), so campaign decisions see
the same noise and bias they would see from the rendered path.

``measure`` renders and measures fields over a grid of confluence and PD and
records, per grid point, the mean (bias) and standard deviation of
``estimate - truth`` per field; ``sample`` draws from it (bilinear in confluence
and PD, clipped to 0..1). The shipped table (``estimator_error_data.py``) was
measured with the default optics and estimator; regenerate it after changing
either with::

    .venv/bin/python -m simulators.confluence_error > simulators/estimator_error_data.py

``tests/test_imaging_fast.py`` renders fresh fields and checks that the fast
path's estimates agree with them in distribution.
"""

from __future__ import annotations

import bisect
import json
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.confluence import EstimatorParams, estimate_confluence
from simulators.brightfield import FieldOptics, capture_field

CONFLUENCE_GRID = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0]
PD_GRID = [0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 25.0, 30.0, 40.0]


class EstimatorError(BaseModel):
    """Bias and SD of one field's estimate - truth, on a confluence x PD grid."""

    model_config = ConfigDict(extra="forbid")

    confluence: list[float] = Field(min_length=2, description="grid of true confluence, 0..1")
    pd: list[float] = Field(min_length=1, description="grid of population doublings")
    bias: list[list[float]] = Field(description="mean error per field, [confluence][pd]")
    sd: list[list[float]] = Field(description="SD of the error per field, [confluence][pd]")
    fields_per_point: int = Field(ge=1, description="rendered fields measured per grid point")

    @model_validator(mode="after")
    def _shape(self) -> EstimatorError:
        for name, table in (("bias", self.bias), ("sd", self.sd)):
            if len(table) != len(self.confluence) or any(len(r) != len(self.pd) for r in table):
                raise ValueError(f"{name} must be {len(self.confluence)} x {len(self.pd)}")
        if self.confluence != sorted(self.confluence) or self.pd != sorted(self.pd):
            raise ValueError("grids must be ascending")
        return self

    def at(self, confluence: float, pd: float) -> tuple[float, float]:
        """(bias, sd) of one field at a true confluence and PD, bilinearly interpolated."""
        i, fc = _cell(self.confluence, confluence)
        j, fp = _cell(self.pd, pd)

        def lerp(t: list[list[float]]) -> float:
            j2 = min(j + 1, len(self.pd) - 1)
            lo = t[i][j] * (1 - fp) + t[i][j2] * fp
            hi = t[i + 1][j] * (1 - fp) + t[i + 1][j2] * fp
            return lo * (1 - fc) + hi * fc

        return lerp(self.bias), max(0.0, lerp(self.sd))


def _cell(grid: list[float], x: float) -> tuple[int, float]:
    """Index of the grid interval holding ``x`` (clamped) and the share of the way along."""
    if len(grid) == 1 or x <= grid[0]:
        return 0, 0.0
    if x >= grid[-1]:
        return len(grid) - 2, 1.0
    k = bisect.bisect_right(grid, x) - 1
    return k, (x - grid[k]) / (grid[k + 1] - grid[k])


def sample(
    error: EstimatorError, confluence: float, pd: float, rng: np.random.Generator, fields: int
) -> list[float]:
    """Estimates of ``fields`` fields of a well at a true confluence, as the estimator errs."""
    bias, sd = error.at(confluence, pd)
    draws = rng.standard_normal(fields)
    return [min(1.0, max(0.0, confluence + bias + sd * float(z))) for z in draws]


def cell_shape(pd: float) -> tuple[float, float]:
    """Cell length and width (um) at ``pd``, as the culture model's defaults draw them."""
    from simulators.culture import CultureParameters  # the model only when measuring

    return CultureParameters().cell_shape_um(pd)


def field_error(
    confluence: float, pd: float, seed: int, optics: FieldOptics, estimator: EstimatorParams
) -> float:
    """Render one field and measure it: estimate - the culture's true confluence."""
    image, _ = capture_field(confluence, cell_shape(pd), seed, optics)
    return estimate_confluence(image, estimator) - min(1.0, max(0.0, confluence))


def rendered_estimates(
    confluence: float,
    pd: float,
    seeds: list[int],
    optics: FieldOptics | None = None,
    estimator: EstimatorParams | None = None,
) -> list[float]:
    """Estimates of rendered fields (the rendered path), one per seed."""
    o, e = optics or FieldOptics(), estimator or EstimatorParams()
    out = []
    for s in seeds:
        image, _ = capture_field(confluence, cell_shape(pd), s, o)
        out.append(estimate_confluence(image, e))
    return out


def measure(
    fields_per_point: int = 16,
    optics: FieldOptics | None = None,
    estimator: EstimatorParams | None = None,
    seed: int = 2026,
    workers: int = 2,
) -> EstimatorError:
    """Render and measure fields over the grid; the error table of this optics and estimator."""
    o, e = optics or FieldOptics(), estimator or EstimatorParams()
    points = [(c, p) for c in CONFLUENCE_GRID for p in PD_GRID]
    jobs = [
        (c, p, seed * 1_000_003 + k * 7919 + n, o, e)
        for k, (c, p) in enumerate(points)
        for n in range(fields_per_point)
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        errors = list(pool.map(field_error, *zip(*jobs, strict=True), chunksize=16))
    bias = [[0.0] * len(PD_GRID) for _ in CONFLUENCE_GRID]
    sd = [[0.0] * len(PD_GRID) for _ in CONFLUENCE_GRID]
    for k, (c, p) in enumerate(points):
        errs = np.array(errors[k * fields_per_point : (k + 1) * fields_per_point])
        i, j = CONFLUENCE_GRID.index(c), PD_GRID.index(p)
        bias[i][j] = round(float(errs.mean()), 5)
        sd[i][j] = round(float(errs.std(ddof=1)), 5)
    return EstimatorError(
        confluence=CONFLUENCE_GRID,
        pd=PD_GRID,
        bias=bias,
        sd=sd,
        fields_per_point=fields_per_point,
    )


def main() -> None:
    table = measure()
    sys.stdout.write(
        '"""The confluence estimator\'s error on rendered fields, measured by\n'
        "``python -m simulators.confluence_error`` (default optics and estimator).\n"
        '"""\n\n'
        f"MEASURED = {json.dumps(table.model_dump(), indent=1)}\n"
    )


if __name__ == "__main__":
    main()
