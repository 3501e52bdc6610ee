"""The fast imaging path: estimates that agree in distribution with rendered fields."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from simulators.confluence_error import EstimatorError, rendered_estimates, sample
from simulators.culture import Liquid
from simulators.estimator_error_data import MEASURED
from tests.conftest import run
from workcell.assembly.build import build_workcell
from workcell.assembly.config import WorkcellConfig, parse_config

N = 30


@pytest.mark.parametrize(("confluence", "pd"), [(0.3, 5.0), (0.62, 14.0), (0.85, 22.0)])
def test_fast_estimates_agree_with_rendered_fields_in_distribution(
    confluence: float, pd: float
) -> None:
    # fresh fields, seeds the error table was not measured on
    rendered = np.array(rendered_estimates(confluence, pd, [10_000 + k for k in range(N)]))
    fast = np.array(
        sample(EstimatorError.model_validate(MEASURED), confluence, pd, np.random.default_rng(7), N)
    )
    # The table's bias is itself measured (16 fields a grid point, then interpolated):
    # known to about +-0.002, which is as large as a field's SD. So: the means agree
    # within that, the spreads within a factor 2.5, and the shapes (centred) by KS.
    se = np.sqrt(rendered.var(ddof=1) / N + fast.var(ddof=1) / N)
    assert abs(rendered.mean() - fast.mean()) < max(4 * se, 0.003), (rendered.mean(), fast.mean())
    assert 0.4 < (fast.std(ddof=1) + 1e-4) / (rendered.std(ddof=1) + 1e-4) < 2.5
    centred = stats.ks_2samp(rendered - rendered.mean(), fast - fast.mean())
    assert centred.pvalue > 0.001


def test_the_config_chooses_the_fast_path_per_run(sim_data: dict) -> None:  # type: ignore[type-arg]
    # the controller's imager asks the lab for estimates; the lab draws them, no pixels
    sim_data["devices"]["imager"]["fidelity"] = {"mode": "fast"}
    cfg: WorkcellConfig = parse_config(sim_data)
    wc = build_workcell(cfg)

    async def go() -> tuple[float, dict[str, float], list[dict]]:  # type: ignore[type-arg]
        await wc.setup()
        assert wc.lab is not None
        plate = wc.plate("plate_1")
        well = plate.get_item("A1")
        wc.load(well.name, 2000.0, Liquid(viable=1.5e5, nutrient=1.0, serum=1.0), actor="test")
        await wc.store_plate("plate_1")
        await wc.clock.sleep(2 * 86400)  # the cells attach and grow, at 37 C
        await wc.fetch_plate("plate_1")
        truth = wc.lab.vessel(well.name).confluence
        seen = await wc.imager.confluence(plate, [well.name])
        return truth, seen, wc.lab.log()

    try:
        truth, seen, lab_log = run(go())
    finally:
        run(wc.stop())
    (value,) = seen.values()
    assert 0.05 < truth < 0.95 and abs(value - truth) < 0.03
    captures = [a for a in wc.log.actions if a.action == "capture"]
    assert captures and all(a.detail.get("fast") for a in captures)
    # judged from the lab's own log: the imager took the fields, fast
    taken = [r for r in lab_log if r["device"] == "imager" and r["action"] == "capture"]
    assert taken and all(r["detail"].get("fast") for r in taken)


def test_a_fast_path_with_custom_optics_needs_its_own_error_table(sim_data: dict) -> None:  # type: ignore[type-arg]
    from workcell.errors import ConfigError

    sim_data["devices"]["imager"]["fidelity"] = {"mode": "fast"}
    sim_data["devices"]["imager"]["optics"] = {"noise_sd": 0.05}
    with pytest.raises(ConfigError, match="error table"):
        parse_config(sim_data)
