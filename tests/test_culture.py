"""The culture model against the published ranges its docstring names."""

from __future__ import annotations

import math

import pytest

from simulators import culture
from simulators.culture import CultureModel, CultureParameters, Liquid

DAY = 86400.0
AREA = 9.5  # cm2, a 6-well


class Bench:
    """A culture model on a hand-driven clock, with a feed helper."""

    def __init__(self, seed: int = 42, **overrides: float) -> None:
        self.t = 0.0
        self.model = CultureModel(lambda: self.t, CultureParameters(**overrides), seed=seed)

    def seed(self, name: str, density: float, pd: float = 0.0, ml_per_cm2: float = 0.2) -> None:
        self.model.register_vessel(name, AREA)
        cells = density * AREA
        self.model.deliver(name, Liquid(ml_per_cm2 * AREA * 1000, cells, 0.0, 1.0, pd))

    def feed(self, name: str) -> None:
        v = self.model.vessels[name]
        spent = v.medium.volume_uL
        self.model.withdraw(name, spent * 0.9)
        self.model.deliver(name, Liquid(spent * 0.9, 0, 0, 1.0))

    def days(self, n: float) -> None:
        self.t += n * DAY


def _doubling_time_h(b: Bench, name: str, t0_days: float, t1_days: float) -> float:
    b.t = t0_days * DAY
    n0 = b.model.state(name).attached_viable
    b.t = t1_days * DAY
    n1 = b.model.state(name).attached_viable
    return (t1_days - t0_days) * 24 * math.log(2) / math.log(n1 / n0)


def test_early_passage_doubling_time_is_30_to_48_h() -> None:
    b = Bench(vessel_variation_cv=0.0)
    b.seed("w", 1000)  # sparse: exponential phase for days
    td = _doubling_time_h(b, "w", 2, 4)
    assert 30 <= td <= 48


def test_doubling_time_lengthens_with_population_doublings() -> None:
    b = Bench(vessel_variation_cv=0.0)
    b.seed("young", 1000, pd=2)
    b.seed("old", 1000, pd=28)
    b.t = 2 * DAY
    y0, o0 = (b.model.state(n).attached_viable for n in ("young", "old"))
    b.t = 4 * DAY
    y1, o1 = (b.model.state(n).attached_viable for n in ("young", "old"))
    young = 48 * math.log(2) / math.log(y1 / y0)
    old = 48 * math.log(2) / math.log(o1 / o0)
    assert old > 1.5 * young
    assert old > 48


def test_senescent_cells_stop_growing() -> None:
    b = Bench(vessel_variation_cv=0.0)
    b.seed("w", 2000, pd=CultureParameters().pd_max)  # divisions, not the PD a lab counts
    seeded = b.model.state("w")
    b.days(6)
    b.feed("w")
    b.days(4)
    assert b.model.state("w").attached_viable <= seeded.viable


def test_density_at_confluence_is_2_to_5e4_per_cm2() -> None:
    b = Bench()
    b.seed("w", 3000)
    for _ in range(7):
        b.days(3)
        b.feed("w")
    state = b.model.state("w")
    assert state.confluence > 0.97
    assert 2e4 <= state.attached_viable / AREA <= 5e4


def test_lag_after_seeding() -> None:
    b = Bench(vessel_variation_cv=0.0)
    b.seed("w", 2000)
    b.days(0.5)
    first = b.model.state("w").attached_viable
    b.days(0.5)
    second = b.model.state("w").attached_viable
    b.days(1)
    b.t = 3 * DAY
    third = b.model.state("w").attached_viable
    b.t = 3.5 * DAY
    fourth = b.model.state("w").attached_viable
    assert second / first < fourth / third  # slower growth in the first day than later


def test_plating_efficiency_sets_attached_fraction() -> None:
    b = Bench(vessel_variation_cv=0.0, lag_tau_h=200.0)
    b.seed("w", 3000)
    b.t = 0.5 * DAY
    attached = b.model.state("w").attached_viable
    assert attached == pytest.approx(0.85 * 3000 * AREA, rel=0.03)


def test_exhausted_medium_lowers_viability_and_a_feed_stops_it() -> None:
    starved, fed = Bench(), Bench()
    for b in (starved, fed):
        b.seed("w", 20000, ml_per_cm2=0.1)
    for _ in range(4):
        for b in (starved, fed):
            b.days(2)
        fed.feed("w")
    s, f = starved.model.state("w"), fed.model.state("w")
    assert s.nutrient < 0.05
    assert s.viability < 0.7
    assert f.viability > 0.85
    assert f.attached_viable > 2 * s.attached_viable


def test_deterministic_for_a_seed_and_varied_between_seeds() -> None:
    def grow(seed: int) -> list[float]:
        b = Bench(seed=seed)
        for n in ("a", "b", "c"):
            b.seed(n, 3000)
        b.days(5)
        return [b.model.state(n).attached_viable for n in ("a", "b", "c")]

    assert grow(7) == grow(7)
    assert grow(7) != grow(8)


def test_liquid_moves_cells_in_proportion() -> None:
    b = Bench()
    b.model.load("tube", Liquid(1000, 1e6, 1e5, 1.0, 3.0))
    part = b.model.withdraw("tube", 250)
    assert part.viable == pytest.approx(2.5e5)
    assert part.dead == pytest.approx(2.5e4)
    assert b.model.liquid("tube").viable == pytest.approx(7.5e5)
    assert b.model.liquid("tube").volume_uL == pytest.approx(750)


def test_parameters_have_ranges() -> None:
    with pytest.raises(ValueError):
        CultureParameters(doubling_time_h=-3)


def _dried_and_sparse(hours: float) -> Bench:
    b = Bench()
    b.seed("dried", 5000)
    b.seed("sparse", 5000)
    b.days(2)
    b.model.withdraw("dried", b.model.vessels["dried"].medium.volume_uL)  # harvested dry
    b.model.withdraw("sparse", b.model.vessels["sparse"].medium.volume_uL * 0.5)
    b.t += hours * 3600
    b.model.sync()
    return b


def test_a_dried_vessel_dies_out_and_is_no_longer_stepped(monkeypatch: pytest.MonkeyPatch) -> None:
    b = _dried_and_sparse(12)  # a dry monolayer dies within the hour: 12 h leave < 1e-6 cells
    with monkeypatch.context() as m:
        m.setattr(culture, "NO_CELLS", 0.0)  # the model as it was: stepped toward zero forever
        endless = _dried_and_sparse(12)
    dried, kept = b.model.vessels["dried"], endless.model.vessels["dried"]
    assert dried.attached == 0.0 and dried.medium.viable == 0.0
    assert 0 < kept.attached < culture.NO_CELLS
    assert dried.medium.dead == pytest.approx(kept.medium.dead + kept.attached, rel=1e-12)
    assert b.model.vessels["sparse"] == endless.model.vessels["sparse"]  # wet: as before
    stepped: list[str] = []
    step = CultureModel._step

    def counting(self: CultureModel, v: object, *args: object) -> None:
        stepped.append(v.name)  # type: ignore[attr-defined]
        step(self, v, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(CultureModel, "_step", counting)
    b.days(1)
    b.model.sync()
    assert stepped and set(stepped) == {"sparse"}
