"""Brightfield-like images of an MSC monolayer, drawn from the culture model.

Each field is what a 10x brightfield objective sees of one part of a well: smooth,
slightly vignetted plastic with camera noise, and cells as textured, slightly
darker shapes with bright borders. The cells' size and shape come from the
culture model (``CultureParameters.cell_shape_um``): early-passage MSC are slender
spindles (about 125 x 22 um) and near senescence they are broad, flattened cells
(about 150 x 90 um), so a field at a given confluence holds as many cells as the
model has per cm2 there. Cells are placed at random until they cover the true
confluence of the well; near confluence they spread into the remaining gaps, as a
monolayer does. The drawn coverage is returned with the image, so estimators can
be checked against the truth.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# scipy and scikit-image are imported where a field is drawn, not here: the lab process
# imports this module for its optics model, and on the fast imaging path never draws.

RANDOM_PLACEMENT_LIMIT = 0.85
TEXTURE = 0.07


class FieldOptics(BaseModel):
    """Camera and optics of the simulated imager."""

    model_config = ConfigDict(extra="forbid")

    size_px: int = Field(default=256, ge=64, le=2048)
    um_per_px: float = Field(default=2.0, gt=0.2, le=20)
    background: float = Field(default=0.6, gt=0.1, lt=0.9)
    noise_sd: float = Field(default=0.01, ge=0, le=0.1)
    vignetting: float = Field(default=0.15, ge=0, le=0.5)


CellShape = tuple[float, float]
"""A cell's length and width in um."""


STAMP_STEP_PX = 0.5  # semi-axes quantised to half a pixel
STAMP_ANGLES = 90  # orientations quantised to 2 degrees


Stamp = tuple[np.ndarray, np.ndarray, int, int, int, int]
"""A cell's pixel offsets (rows, columns) and their extent: row min/max, column min/max."""


@lru_cache(maxsize=8192)
def _stamp_cached(a2: int, b2: int, k: int) -> Stamp:
    """Pixel offsets of a filled ellipse around the origin (semi-axes a2/2, b2/2 px)."""
    from skimage import draw

    a, b = a2 * STAMP_STEP_PX, b2 * STAMP_STEP_PX
    theta = k * math.pi / STAMP_ANGLES
    rr, cc = draw.ellipse(0.0, 0.0, a, b, rotation=theta)
    rr, cc = rr.astype(np.intp), cc.astype(np.intp)
    return rr, cc, int(rr.min()), int(rr.max()), int(cc.min()), int(cc.max())


def _stamp(a: float, b: float, theta: float) -> Stamp:
    """A cell's shape, from a cache: drawing each ellipse afresh was half a field's time."""
    return _stamp_cached(
        max(1, round(a / STAMP_STEP_PX)),
        max(1, round(b / STAMP_STEP_PX)),
        round(theta / math.pi * STAMP_ANGLES) % STAMP_ANGLES,
    )


DRAWS_PER_BATCH = 256


def place_cells(
    confluence: float,
    cell_um: CellShape,
    rng: np.random.Generator,
    optics: FieldOptics | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cells of ``cell_um`` (length, width) size covering ``confluence`` of a field.

    Returns the label image (0 background, one label per cell) and the cells'
    centres (row, column in pixels). Centres fall in and around the field, as in a
    crop of a larger monolayer: cells cut by the field's edge come from both sides,
    so the cells centred in the field are the culture's cells per area.
    """
    from scipy import ndimage

    o = optics or FieldOptics()
    n = o.size_px
    target = min(1.0, max(0.0, confluence))
    labels = np.zeros((n, n), dtype=np.int32)
    flat = labels.reshape(-1)  # a view: cells are written through flat pixel indices
    length, width = (d / o.um_per_px for d in cell_um)
    margin = 0.6 * length  # the longest stamp's half-length
    goal_px = int(round(min(target, RANDOM_PLACEMENT_LIMIT) * n * n))
    covered_px = 0
    label = 0
    centres: list[tuple[float, float]] = []
    draws = np.empty((0, 5))
    i = 0
    span = n + 2 * margin
    while covered_px < goal_px:
        if i == len(draws):  # random numbers in batches: one call per cell was slow
            draws, i = rng.random((DRAWS_PER_BATCH, 5)), 0
        u = draws[i]
        i += 1
        r0, c0 = u[0] * span - margin, u[1] * span - margin
        dr, dc, rmin, rmax, cmin, cmax = _stamp(
            length / 2 * (0.8 + 0.4 * u[2]), width / 2 * (0.8 + 0.4 * u[3]), u[4] * math.pi
        )
        r, c = math.floor(r0), math.floor(c0)
        if r + rmax < 0 or r + rmin >= n or c + cmax < 0 or c + cmin >= n:
            continue  # centred in the margin, and not reaching into the field
        if r + rmin < 0 or r + rmax >= n or c + cmin < 0 or c + cmax >= n:
            rr, cc = dr + r, dc + c  # cut by the field's edge
            inside = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n)
            idx = rr[inside] * n + cc[inside]
        else:
            idx = dr * n + dc + (r * n + c)
        idx = idx[flat[idx] == 0]
        if idx.size == 0:
            continue
        room = goal_px - covered_px
        if idx.size > room:  # the last cell is smaller: its part nearest its centre
            keep = np.argsort((idx // n - r0) ** 2 + (idx % n - c0) ** 2)[:room]
            idx = idx[keep]
        label += 1
        flat[idx] = label
        centres.append((r0, c0))
        covered_px += idx.size
    covered = covered_px / (n * n)
    while covered < target - 0.5 / n**2:  # a monolayer spreads into its gaps
        grown = ndimage.grey_dilation(labels, size=3)
        fresh = np.flatnonzero((labels == 0) & (grown > 0))
        if fresh.size == 0:
            break
        need = int(round((target - covered) * n * n))
        if fresh.size > need:  # spread only as far as the true coverage
            fresh = rng.choice(fresh, size=need, replace=False)
        labels.flat[fresh] = grown.flat[fresh]
        covered = float((labels > 0).mean())
    return labels, np.array(centres, dtype=float).reshape(-1, 2)


def render_field(
    confluence: float,
    cell_um: CellShape,
    rng: np.random.Generator,
    optics: FieldOptics | None = None,
) -> tuple[np.ndarray, float]:
    """One field: the image (float, 0-1) and the share of it covered by cells of
    ``cell_um`` (length, width) size."""
    o = optics or FieldOptics()
    labels, _ = place_cells(confluence, cell_um, rng, o)
    return _paint(labels, o, rng), float((labels > 0).mean())


@lru_cache(maxsize=16)
def _illumination(n: int, vignetting: float) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] / (n - 1) - 0.5
    return (1.0 - vignetting * 2 * (xx**2 + yy**2)).astype(np.float32)


def cell_borders(labels: np.ndarray) -> np.ndarray:
    """Pixels of a cell with a 4-neighbour outside it: ``find_boundaries(mode="inner")``,
    by array shifts (the image edge is not a border), at a tenth of its cost."""
    differs = np.zeros(labels.shape, dtype=bool)
    down = labels[1:, :] != labels[:-1, :]
    right = labels[:, 1:] != labels[:, :-1]
    differs[1:, :] |= down
    differs[:-1, :] |= down
    differs[:, 1:] |= right
    differs[:, :-1] |= right
    return differs & (labels > 0)


@lru_cache(maxsize=4)
def _texture(n: int) -> np.ndarray:
    """Cytoplasm texture (smoothed noise, unit SD) twice a field's size: each field takes a
    random crop of it, which spares a noise image and a filter per field."""
    from scipy import ndimage

    rng = np.random.default_rng(0x7E57)
    texture = ndimage.gaussian_filter(rng.standard_normal((2 * n, 2 * n), dtype=np.float32), 1.2)
    return texture / (texture.std() or 1.0)


def _paint(labels: np.ndarray, o: FieldOptics, rng: np.random.Generator) -> np.ndarray:
    n = labels.shape[0]
    cells = labels > 0
    r, c = rng.integers(0, n, size=2)
    texture = _texture(n)[r : r + n, c : c + n]
    image = np.full((n, n), o.background, dtype=np.float32)
    image[cells] += -0.05 + TEXTURE * texture[cells]
    image[cell_borders(labels)] += 0.08
    image *= _illumination(n, o.vignetting)
    image += o.noise_sd * rng.standard_normal((n, n), dtype=np.float32)
    return np.clip(image, 0.0, 1.0)


CAMERA_LEVELS = 4095  # a 12-bit camera


def capture_field(
    confluence: float, cell_um: CellShape, seed: int, optics: FieldOptics | None = None
) -> tuple[np.ndarray, float]:
    """One field as a camera delivers it (12-bit integers), rendered from ``seed``.

    Seeded rather than handed a generator, so fields can be rendered on worker
    processes in any order and still come out the same.
    """
    image, covered = render_field(confluence, cell_um, np.random.default_rng(seed), optics)
    return np.round(image * CAMERA_LEVELS).astype(np.uint16), covered
