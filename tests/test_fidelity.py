"""The culture model's figures stay inside their published ranges (benchmarks/fidelity.py).

Each experiment runs as a lab runs it on the model (counts, times, shares), so a change
to the biology that moves a figure out of its published range fails here, naming the
figure, its value, the range and the source.
"""

from __future__ import annotations

from benchmarks import fidelity
from benchmarks.fidelity import Figure
from protocols import seeding
from simulators.culture import REFERENCES, CultureParameters
from tests.conftest import run
from workcell.assembly.workcell import Workcell


def _outside(figures: list[Figure]) -> list[str]:
    return [
        f"{f.name}: {f.value:.3g} {f.unit}, published {f.low:g}-{f.high:g} ({f.source})"
        for f in figures
        if not f.inside
    ]


def test_growth_curve() -> None:
    assert not _outside(fidelity.growth_curve())


def test_serial_passaging_to_senescence() -> None:
    figures, bonab, campaign = fidelity.serial_passaging()
    assert not _outside(figures)
    per_passage = [x.doublings for x in bonab.passages]
    # doublings per passage fall steadily (Bonab 2006), they do not stay flat
    assert all(b < a for a, b in zip(per_passage[:10], per_passage[1:10], strict=False))
    # the culture stops: the last passage recovers no more cells than were seeded
    assert bonab.passages[-1].doublings <= 0 and campaign.passages[-1].doublings <= 0


def test_feeding_intervals() -> None:
    assert not _outside(fidelity.feeding())


def test_enzyme_time_and_neutralisation() -> None:
    assert not _outside(fidelity.enzyme())
    assert fidelity.enzyme_after_neutralising(1) > 0.1  # one volume does not stop it


def test_donors_are_drawn_from_published_spreads() -> None:
    assert not _outside(fidelity.donors(n=200, lifespans=10))


def test_every_figure_names_a_known_source() -> None:
    figures, _, _ = fidelity.all_figures(lifespans=2)
    for f in figures:
        for key in f.source.split(";"):
            assert key.strip() == "derived" or key.strip() in REFERENCES, f.source
    for name, info in CultureParameters.model_fields.items():
        assert info.description, f"{name} does not say where its value comes from"


def test_a_donor_is_reproducible_and_two_donors_differ() -> None:
    base = CultureParameters()
    assert base.for_donor(None) == base
    assert base.for_donor("BM-017") == CultureParameters().for_donor("BM-017")
    a, b = base.for_donor("BM-017"), base.for_donor("BM-018")
    assert (a.doubling_time_h, a.pd_max) != (b.doubling_time_h, b.pd_max)


def test_two_donors_on_one_workcell_grow_as_their_own_cells(wc: Workcell) -> None:
    """Two vials of two donors seeded in one run: each plate grows as its donor does."""
    assert wc.lab is not None
    names = [f"BM-{i:03d}" for i in range(20)]
    td = {d: CultureParameters().for_donor(d).doubling_time_h for d in names}
    faster, slower = min(names, key=td.__getitem__), max(names, key=td.__getitem__)
    for plate, donor in (("plate_1", faster), ("plate_2", slower)):
        vial = seeding.Suspension(volume_mL=5, viable_cells_per_mL=5e5, donor=donor)
        run(seeding.run(wc, seeding.SeedingParams(suspension=vial, plates=[plate])))
        run(wc.store_plate(plate))
    run(wc.clock.sleep(5 * 86400))
    growth = {}
    for plate, donor in (("plate_1", faster), ("plate_2", slower)):
        states = [wc.lab.vessel(v) for v in wc.lab.vessels() if v.startswith(plate)]
        assert {s.donor for s in states} == {donor}
        growth[donor] = sum(s.population_doublings for s in states) / len(states)
    assert growth[faster] > growth[slower] + 0.5
