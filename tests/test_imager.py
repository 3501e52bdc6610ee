"""The confluence imager: rendered brightfield fields, and the estimator's 5-point bound."""

from __future__ import annotations

import numpy as np
import pytest

from devices.confluence import cell_mask, estimate_confluence
from protocols import seeding
from simulators.brightfield import FieldOptics, place_cells, render_field
from simulators.culture import CultureParameters
from tests.conftest import run
from workcell.assembly.workcell import Workcell

CELLS = CultureParameters()  # the reference donor's cells, from spindles to senescent


@pytest.mark.parametrize("pd", [0.0, 10.0, 25.0, 40.0, CELLS.pd_max])
def test_estimator_within_5_points_from_0_to_100_percent(pd: float) -> None:
    rng = np.random.default_rng(int(pd) + 100)  # other fields than the calibration's
    errors = []
    for truth in np.linspace(0.0, 1.0, 21):
        image, covered = render_field(truth, CELLS.cell_shape_um(pd), rng)
        assert covered == pytest.approx(truth, abs=0.01)  # drawn at the true confluence
        errors.append(estimate_confluence(image) - truth)
    assert max(abs(e) for e in errors) < 0.05, [round(100 * e, 1) for e in errors]


def test_empty_and_full_fields() -> None:
    rng = np.random.default_rng(7)
    empty, _ = render_field(0.0, CELLS.cell_shape_um(0), rng)
    full, _ = render_field(1.0, CELLS.cell_shape_um(0), rng)
    assert estimate_confluence(empty) < 0.01
    assert estimate_confluence(full) > 0.97
    assert not cell_mask(empty).any()


def test_cells_are_spindles_early_and_flattened_late() -> None:
    early_len, early_width = CELLS.cell_shape_um(0)
    late_len, late_width = CELLS.cell_shape_um(CELLS.pd_max)
    assert early_len / early_width > 5
    assert late_len / late_width < 2
    assert late_len * late_width > 4 * early_len * early_width
    rng = np.random.default_rng(3)
    spindles, _ = render_field(0.2, (early_len, early_width), rng, FieldOptics(noise_sd=0.0))
    flat, _ = render_field(0.2, (late_len, late_width), rng, FieldOptics(noise_sd=0.0))
    # fewer, larger objects when cells are flattened
    from scipy import ndimage

    assert ndimage.label(cell_mask(spindles))[1] > ndimage.label(cell_mask(flat))[1]


def test_the_imager_draws_as_many_cells_as_the_model_has() -> None:
    """Sparse fields (5 %): the cells the imager draws centred in the field against the
    model's cells per cm2 there, young and near senescence. The model's confluent density
    and the imager's cell size are one description of the cells."""
    optics = FieldOptics(size_px=512)
    field_cm2 = (optics.size_px * optics.um_per_px) ** 2 / 1e8
    n = optics.size_px
    ratios = {}
    for pd in (2.0, 50.0):
        rng = np.random.default_rng(11)
        drawn = 0
        for _ in range(8):
            _, centres = place_cells(0.05, CELLS.cell_shape_um(pd), rng, optics)
            drawn += int(((centres >= 0) & (centres < n)).all(axis=1).sum())
        expected = 8 * 0.05 * CELLS.confluent_density_at(pd) * field_cm2
        ratios[pd] = drawn / expected
        assert 0.85 < ratios[pd] < 1.15, (pd, drawn, expected)
    assert CELLS.confluent_density_at(2.0) > 3 * CELLS.confluent_density_at(50.0)


def test_estimator_refuses_colour_images() -> None:
    with pytest.raises(ValueError, match="grey-scale"):
        estimate_confluence(np.zeros((8, 8, 3)))


def test_imager_measures_each_well_through_pylabrobot(wc: Workcell) -> None:
    assert wc.lab is not None
    params = seeding.SeedingParams(
        suspension=seeding.Suspension(volume_mL=5, viable_cells_per_mL=5e5),
        plates=["plate_1"],
        density_cells_per_cm2=8000,
    )
    run(seeding.run(wc, params))
    run(wc.store_plate("plate_1"))
    run(wc.clock.sleep(4 * 86400))
    plate = run(wc.fetch_plate("plate_1"))
    home = plate.parent
    measured = run(wc.imager.confluence(plate))
    assert plate.parent is home  # back where it was
    assert set(measured) == {w.name for w in plate.get_all_items()}
    for well, value in measured.items():
        truth = wc.lab.vessel(well).confluence
        assert 0.2 < truth < 0.95
        assert value == pytest.approx(truth, abs=0.05)
    captures = wc.log.of("capture")
    assert len(captures) == 6 * wc.imager.fields_per_well


def test_each_well_is_imaged_where_it_is_and_only_the_wells_asked_for(wc: Workcell) -> None:
    """Wells of different confluence: each value is its own well's (not a neighbour's)."""
    assert wc.lab is not None
    params = seeding.SeedingParams(
        suspension=seeding.Suspension(volume_mL=5, viable_cells_per_mL=5e5),
        plates=["plate_1"],
        wells=["B1", "A3"],  # column-major neighbours of empty wells
        density_cells_per_cm2=8000,
    )
    run(seeding.run(wc, params))
    run(wc.store_plate("plate_1"))
    run(wc.clock.sleep(4 * 86400))
    plate = run(wc.fetch_plate("plate_1"))
    n0 = len(wc.log.of("capture"))
    measured = run(wc.imager.confluence(plate))
    assert measured["plate_1_well_B1"] > 0.2 and measured["plate_1_well_A3"] > 0.2
    for empty in ("A1", "A2", "B2", "B3"):
        assert measured[f"plate_1_well_{empty}"] < 0.01, empty
    some = run(wc.imager.confluence(plate, ["plate_1_well_B1"]))
    assert list(some) == ["plate_1_well_B1"]
    assert len(wc.log.of("capture")) - n0 == 7 * wc.imager.fields_per_well
    captured = [a.detail["well"] for a in wc.log.of("capture")[n0:]]
    assert captured.count("plate_1_well_B1") == 2 * wc.imager.fields_per_well


def test_a_retaken_image_changes_only_its_own_readings() -> None:
    """Each capture's noise is the world's (seed, imager, well, lab time), not the next draw
    of one stream: an image taken again (a controller killed before it recorded the reply)
    leaves every later image as it was, on the rendered and the fast path."""
    from simulators.culture import CultureModel
    from simulators.imager import ImagerSimulator

    def lab(retake: bool) -> tuple[list[np.ndarray], dict[str, list[float]]]:
        t = [0.0]

        def advance(s: float) -> None:
            t[0] += s

        sim = ImagerSimulator(
            "imager", CultureModel(lambda: t[0]), advance, lambda *a, **k: None, 7, lambda: t[0]
        )
        first, _ = sim.capture(["w1", "w2"])
        if retake:
            again, _ = sim.capture(["w1", "w2"])
            assert not np.array_equal(again[0], first[0])  # its own readings differ
        t[0] = 3600.0  # the next image at the time the schedule says
        later, _ = sim.capture(["w1", "w2"])
        t[0] = 7200.0
        return later, sim.measure(["w1", "w2"], fields=3)

    (plain, fast), (resumed, fast_resumed) = lab(False), lab(True)
    assert all(np.array_equal(a, b) for a, b in zip(plain, resumed, strict=True))
    assert fast == fast_resumed
