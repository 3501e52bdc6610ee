"""Fidelity of the culture model: the standard experiments against published figures.

    .venv/bin/python benchmarks/fidelity.py              # every experiment, a table
    .venv/bin/python benchmarks/fidelity.py --plot docs/serial-passaging.png

Each experiment runs the culture model (``simulators/culture.py``) on a bench of
its own, the way a lab runs it, and measures what a lab measures (counts, times,
shares); nothing is read from the model's parameters. The experiments:

* **growth curve**: the log-phase doubling time of sparse early cells, the time a
  P3 culture seeded at 3,500 cells/cm2 takes to reach 80 % confluence, the
  density at confluence, and the lag by seeding density and passage;
* **serial passaging to senescence**: reseeded at a fixed density every 13 days
  (Bonab 2006: 118 days for about 9 passages), counted at every passage; the
  doublings per passage, and the doublings a lab counts by the time the culture
  stops expanding. The same with the campaign's protocol (3,000 cells/cm2,
  passaged at 80 % confluence);
* **feeding intervals**: a confluent well fed every 2-7 days at 0.1 mL/cm2, and
  one left unfed;
* **enzyme time**: the share of cells lifted after 2, 3 and 5 minutes with the
  workcell's detachment volumes, and the enzyme left after neutralising with 1-3
  volumes of medium;
* **donors**: the spread of doubling time and lifespan over many drawn donors, and
  two named donors side by side.

Each figure is printed beside its published range and source (keys of
``simulators.culture.REFERENCES``); ``derived`` ranges follow from other published
figures, as the note says. ``tests/test_fidelity.py`` holds the figures inside
their ranges.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.culture import (  # noqa: E402
    REFERENCES,
    CultureModel,
    CultureParameters,
    Liquid,
)

DAY = 86400.0
AREA = 9.5  # cm2, a 6-well plate's well
RESIDUAL = 10.0  # uL/cm2 left by an aspiration (DetachParams.residual_uL_per_cm2)
ENZYME = 50.0  # uL/cm2 (DetachParams.enzyme_mL_per_cm2)
PBS = 100.0  # uL/cm2 (DetachParams.wash_pbs_mL_per_cm2)
BONAB_DAYS_PER_PASSAGE = 13.0  # 118 days / about 9 passages (Bonab 2006)
BONAB_SEEDING = 100.0  # cells/cm2: our choice, the abstract does not give one
P3_PD = 8.0  # divisions of P3 cells passaged at 3,000-5,000 cells/cm2


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its published range."""

    experiment: str
    name: str
    value: float
    unit: str
    low: float
    high: float
    source: str
    note: str = ""

    @property
    def inside(self) -> bool:
        return self.low <= self.value <= self.high


class Bench:
    """A culture model on a hand-driven clock, with the bench's hands: seed, feed, detach."""

    def __init__(self, params: CultureParameters | None = None, seed: int = 42) -> None:
        self.t = 0.0
        self.model = CultureModel(lambda: self.t, params or CultureParameters(), seed=seed)
        self._n = 0

    def at(self, days: float) -> None:
        self.t = max(self.t, days * DAY)

    def wait(self, days: float) -> None:
        self.t += days * DAY

    def seed(
        self,
        density: float,
        pd: float = 0.0,
        ml_per_cm2: float = 0.2,
        donor: str | None = None,
        area: float = AREA,
    ) -> str:
        """Seed a new vessel at ``density`` viable cells/cm2; returns its name."""
        self._n += 1
        name = f"v{self._n}"
        self.model.register_vessel(name, area)
        cells = Liquid(ml_per_cm2 * area * 1000, density * area, 0.0, 1.0, pd, serum=1.0)
        cells.donor = donor
        self.model.deliver(name, cells)
        return name

    def feed(self, name: str, ml_per_cm2: float | None = None) -> None:
        """Aspirate the medium to a residual and add fresh medium (back to the volume)."""
        v = self.model.vessels[name]
        volume = v.medium.volume_uL if ml_per_cm2 is None else ml_per_cm2 * v.area_cm2 * 1000
        self.model.withdraw(name, max(0.0, v.medium.volume_uL - RESIDUAL * v.area_cm2))
        fresh = volume - self.model.vessels[name].medium.volume_uL
        self.model.deliver(name, Liquid(fresh, nutrient=1.0, serum=1.0))

    def detach(self, name: str, minutes: float = 5.0, neutralise: float = 2.0) -> Liquid:
        """Wash, enzyme at 37 C for ``minutes``, neutralise, pool: what a passage recovers."""
        a = self.model.vessels[name].area_cm2
        self.model.withdraw(name, self.model.vessels[name].medium.volume_uL - RESIDUAL * a)
        self.model.deliver(name, Liquid(PBS * a))
        self.model.withdraw(name, PBS * a)
        self.model.deliver(name, Liquid(ENZYME * a, enzyme=1.0))
        self.t += minutes * 60
        self.model.deliver(name, Liquid(neutralise * ENZYME * a, nutrient=1.0, serum=1.0))
        return self.model.withdraw(name, self.model.vessels[name].medium.volume_uL)

    def viable(self, name: str) -> float:
        return self.model.state(name).viable


# --- growth curve ----------------------------------------------------------------------------


def _grow_fed(b: Bench, name: str, until_days: float, every: float = 3.0) -> None:
    day = b.t / DAY
    while day + every <= until_days:
        day += every
        b.at(day)
        b.feed(name)
    b.at(until_days)


def days_to_confluence(
    density: float, pd: float, threshold: float = 0.8, p: CultureParameters | None = None
) -> float:
    """Days from seeding until the culture's confluence reaches ``threshold`` (fed every 3 d)."""
    b = Bench((p or CultureParameters()).model_copy(update={"vessel_variation_cv": 0.0}))
    name = b.seed(density, pd)
    step = 0.05
    day = 0.0
    while b.model.state(name).confluence < threshold:
        day += step
        if day > 60:
            return math.inf
        if day % 3.0 < step:
            b.feed(name)
        b.at(day)
    return day


def log_phase_doubling_h(pd: float, p: CultureParameters | None = None) -> float:
    """Doubling time of sparse cells (1,000 cells/cm2) at ``pd``, days 3-5: past the lag,
    far from confluence."""
    b = Bench((p or CultureParameters()).model_copy(update={"vessel_variation_cv": 0.0}))
    w = b.seed(1000, pd)
    b.at(3)
    b.feed(w)
    n3 = b.model.state(w).attached_viable
    b.at(5)
    return 48 * math.log(2) / math.log(b.model.state(w).attached_viable / n3)


def lag_days(density: float, pd: float, p: CultureParameters | None = None) -> float:
    """The lag as a lab reads it off a growth curve: the tangent at the fastest growth,
    back to the plated cells (Zwietering's definition)."""
    b = Bench((p or CultureParameters()).model_copy(update={"vessel_variation_cv": 0.0}))
    w = b.seed(density, pd, ml_per_cm2=0.3)
    b.at(0.5)
    n0 = b.model.state(w).attached_viable  # plated cells, once attached
    k = b.model.state(w).confluent_density_per_cm2 * AREA
    points = [(0.5, math.log(n0))]
    day = 0.5
    while math.exp(points[-1][1]) < 0.5 * k and day < 40:
        day += 0.25
        if day % 3 == 0:
            b.feed(w)
        b.at(day)
        points.append((day, math.log(b.model.state(w).attached_viable)))
    rates = [(b2 - b1) / (a2 - a1) for (a1, b1), (a2, b2) in zip(points, points[1:], strict=False)]
    i = max(range(len(rates)), key=rates.__getitem__)
    t, ln_n = (points[i][0] + points[i + 1][0]) / 2, (points[i][1] + points[i + 1][1]) / 2
    return t - (ln_n - math.log(n0)) / rates[i]


def growth_curve() -> list[Figure]:
    e = "growth curve"
    p = CultureParameters(vessel_variation_cv=0.0)
    td = log_phase_doubling_h(2.0, p)
    b = Bench(p)
    w = b.seed(3000)
    _grow_fed(b, w, 21)
    s = b.model.state(w)
    return [
        Figure(
            e,
            "log-phase doubling time, P1 (1,000 cells/cm2, days 3-5)",
            td,
            "h",
            30,
            48,
            "Bruder 1997; Banfi 2000; Wagner 2008",
        ),
        Figure(
            e,
            "days to 80 % confluence, P3, 3,500 cells/cm2",
            days_to_confluence(3500, P3_PD),
            "d",
            4,
            8,
            "derived",
            "2.2-3.5 doublings (K 2-5e4/cm2) at Td 30-48 h, plus about a day's lag",
        ),
        Figure(
            e,
            "density at confluence, early passage (21 d, fed)",
            s.attached_viable / AREA,
            "cells/cm2",
            2e4,
            5e4,
            "Colter 2000; Sotiropoulou 2006",
        ),
        Figure(
            e,
            "viability, fed every 3 d (21 d)",
            100 * s.viability,
            "%",
            90,
            100,
            "derived",
            "background death about 2 %/day, dead cells removed at every feed",
        ),
        Figure(e, "lag at 2 cells/cm2", lag_days(2, 2), "d", 4, 6, "Colter 2000"),
        Figure(
            e,
            "lag at 1e4 vs 1e3 cells/cm2",
            lag_days(1e4, 2) / lag_days(1e3, 2),
            "x",
            0.1,
            0.9,
            "Yazdizade",
            "denser plating, shorter lag",
        ),
        Figure(
            e,
            "lag at P8 vs P1 (3,500 cells/cm2)",
            lag_days(3500, 24) / lag_days(3500, 2),
            "x",
            1.1,
            5,
            "Bruder 1997",
            "later passages grow slower from the start",
        ),
    ]


# --- serial passaging -----------------------------------------------------------------------


@dataclass
class Passage:
    number: int
    day: float
    seeded: float
    recovered: float
    confluence: float

    @property
    def doublings(self) -> float:
        return math.log2(self.recovered / self.seeded) if self.recovered > 0 else -math.inf


@dataclass
class SerialRun:
    protocol: str
    donor: str | None
    passages: list[Passage] = field(default_factory=list)
    curve: list[tuple[float, float]] = field(default_factory=list)  # (day, cumulative PD)

    @property
    def counted_pd(self) -> float:
        """Cumulative doublings a lab counts until the culture stops expanding."""
        return sum(max(0.0, x.doublings) for x in self.passages)


def serial_passage(
    protocol: str = "bonab",
    donor: str | None = None,
    max_passages: int = 30,
    p: CultureParameters | None = None,
) -> SerialRun:
    """Passage one culture until it no longer expands.

    ``bonab``: reseeded at 100 cells/cm2, passaged every 13 days or at 90 %
    confluence if sooner. ``campaign``: reseeded at 3,000 cells/cm2, passaged at 80 %
    confluence (or after 28 days, as a lab gives up). Fed every 3 days; a passage's
    doublings are log2(viable recovered / viable seeded); the culture has stopped
    when a passage recovers no more cells than were seeded.
    """
    density, every, threshold = (
        (BONAB_SEEDING, BONAB_DAYS_PER_PASSAGE, 0.9) if protocol == "bonab" else (3000.0, 28.0, 0.8)
    )
    b = Bench((p or CultureParameters()).model_copy(update={"vessel_variation_cv": 0.0}))
    run = SerialRun(protocol, donor)
    pd_cells, cum, day = 0.0, 0.0, 0.0
    run.curve.append((0.0, 0.0))
    for number in range(1, max_passages + 1):
        seeded = density * AREA
        name = b.seed(density, pd_cells, donor=donor)
        start = day
        while True:
            day = round(day + 0.25, 6)
            if (day - start) % 3 == 0:
                b.feed(name)
            b.at(day)
            s = b.model.state(name)
            if s.confluence >= threshold or day - start >= every:
                break
        pool = b.detach(name)
        x = Passage(number, day, seeded, pool.viable, s.confluence)
        run.passages.append(x)
        if x.doublings <= 0:
            break
        cum += x.doublings
        run.curve.append((day, cum))
        pd_cells = pool.pd
    return run


def serial_passaging() -> tuple[list[Figure], SerialRun, SerialRun]:
    e = "serial passaging"
    bonab = serial_passage("bonab")
    camp = serial_passage("campaign")
    pd = [x.doublings for x in bonab.passages]
    tenth = bonab.passages[9] if len(bonab.passages) >= 10 else None
    figures = [
        Figure(
            e,
            "doublings in passage 1 (100 cells/cm2, 13 d)",
            pd[0],
            "PD",
            6.5,
            9.0,
            "Bonab 2006",
            "7.7 at P1; the abstract gives no spread: +/- 1.2 taken",
        ),
        Figure(
            e,
            "doublings in passage 10",
            pd[9] if tenth else -1,
            "PD",
            0.5,
            2.0,
            "Bonab 2006",
            "1.2 at P10",
        ),
        Figure(
            e,
            "counted PD at senescence (Bonab protocol)",
            bonab.counted_pd,
            "PD",
            34,
            42,
            "Bruder 1997",
            "38 +/- 4",
        ),
        Figure(
            e,
            "counted PD at senescence (campaign protocol)",
            camp.counted_pd,
            "PD",
            34,
            42,
            "Bruder 1997",
            "38 +/- 4",
        ),
        Figure(
            e,
            "doublings per passage, campaign protocol, P1",
            camp.passages[0].doublings,
            "PD",
            2.5,
            3.8,
            "derived",
            "log2(0.8 K / 3,000) less plating losses, K 4-5e4",
        ),
    ]
    return figures, bonab, camp


# --- feeding -------------------------------------------------------------------------------


def feeding_loss(
    every_days: float, cycles: int = 4, ml_per_cm2: float = 0.1
) -> tuple[float, float]:
    """A confluent well fed every ``every_days``: mean share of cells lost per cycle, and
    the viability at the end."""
    b = Bench(CultureParameters(vessel_variation_cv=0.0))
    w = b.seed(3000)
    _grow_fed(b, w, 18)  # confluent, at the normal 0.2 mL/cm2
    b.feed(w, ml_per_cm2)
    n0 = b.model.state(w).attached_viable
    for _ in range(cycles):
        b.wait(every_days)
        b.feed(w, ml_per_cm2)
    s = b.model.state(w)
    lost = 1.0 - (s.attached_viable / n0) ** (1.0 / cycles)
    return lost, s.viability


def unfed_viability(days: float, ml_per_cm2: float = 0.1) -> float:
    """A dense culture in 0.1 mL/cm2 left unfed: viability after ``days``."""
    b = Bench(CultureParameters(vessel_variation_cv=0.0))
    w = b.seed(20000, ml_per_cm2=ml_per_cm2)
    b.at(days)
    return b.model.state(w).viability


def feeding() -> list[Figure]:
    e = "feeding intervals"
    loss3, viab3 = feeding_loss(3.0)
    return [
        Figure(
            e,
            "confluent well, 0.1 mL/cm2 every 3 d: cells lost per cycle",
            100 * loss3,
            "%",
            0,
            5,
            "Nuschke 2016",
            "twice-weekly feeding is normal practice",
        ),
        Figure(
            e,
            "confluent well, 0.1 mL/cm2 every 3 d: viability",
            100 * viab3,
            "%",
            90,
            100,
            "Nuschke 2016",
        ),
        Figure(
            e,
            "unfed dense well (0.1 mL/cm2), viability at day 6",
            100 * unfed_viability(6),
            "%",
            70,
            100,
            "Nuschke 2016",
            "no response to deprivation for about 96 h",
        ),
        Figure(
            e,
            "unfed dense well (0.1 mL/cm2), viability at day 12",
            100 * unfed_viability(12),
            "%",
            0,
            70,
            "Nuschke 2016",
            "starvation does kill, after the quiescent days",
        ),
    ]


def feeding_table() -> list[tuple[float, float, float]]:
    """(interval d, % lost per cycle, viability %) for 2-7 day intervals at 0.1 mL/cm2."""
    rows = []
    for every in (2.0, 3.0, 4.0, 5.0, 7.0):
        lost, viab = feeding_loss(every)
        rows.append((every, 100 * lost, 100 * viab))
    return rows


# --- enzyme --------------------------------------------------------------------------------


def detached_share(minutes: float) -> float:
    """Share of a confluent well's cells lifted after ``minutes`` of enzyme at 37 C."""
    b = Bench(CultureParameters(vessel_variation_cv=0.0, enzyme_damage_per_min=0.0))
    w = b.seed(3000)
    _grow_fed(b, w, 8)
    before = b.model.state(w).attached_viable
    pool = b.detach(w, minutes=minutes)
    return pool.viable / before


def enzyme_after_neutralising(volumes: float) -> float:
    """Free enzyme (share of working strength) after ``volumes`` of medium per enzyme volume,
    on a well washed with PBS (its residual)."""
    from simulators.culture import enzyme_activity

    b = Bench()
    w = b.seed(3000)
    _grow_fed(b, w, 6)
    a = AREA
    b.model.withdraw(w, b.model.vessels[w].medium.volume_uL - RESIDUAL * a)
    b.model.deliver(w, Liquid(PBS * a))
    b.model.withdraw(w, PBS * a)
    b.model.deliver(w, Liquid(ENZYME * a, enzyme=1.0))
    b.model.deliver(w, Liquid(volumes * ENZYME * a, nutrient=1.0, serum=1.0))
    m = b.model.vessels[w].medium
    return enzyme_activity(m.enzyme, m.serum, b.model.params.serum_inhibition)


def enzyme() -> list[Figure]:
    e = "enzyme time"
    return [
        Figure(
            e,
            "lifted after 3 min at 37 C",
            100 * detached_share(3),
            "%",
            90,
            100,
            "Sekiya 2002",
            "most cells within 3-5 min",
        ),
        Figure(
            e,
            "lifted after 5 min at 37 C",
            100 * detached_share(5),
            "%",
            90,
            100,
            "Sekiya 2002",
            "0.25 % trypsin, 5 min at 37 C harvests the culture",
        ),
        Figure(
            e,
            "lifted after 2 min at 37 C",
            100 * detached_share(2),
            "%",
            40,
            90,
            "derived",
            "cells round up before they lift: not all gone at 2 min",
        ),
        Figure(
            e,
            "enzyme left after 2 volumes of medium",
            100 * enzyme_after_neutralising(2),
            "%",
            0,
            1,
            "Sekiya 2002",
            "protocols stop the enzyme with 2-3 volumes",
        ),
        Figure(
            e,
            "enzyme left after 3 volumes of medium",
            100 * enzyme_after_neutralising(3),
            "%",
            0,
            1,
            "Sekiya 2002",
        ),
    ]


# --- donors --------------------------------------------------------------------------------


def donors(n: int = 200, lifespans: int = 40) -> list[Figure]:
    """Doubling times of ``n`` drawn donors, lifespans of ``lifespans`` of them."""
    e = "donors"
    base = CultureParameters()
    drawn = [base.for_donor(f"donor-{i:04d}") for i in range(n)]
    td = sorted(log_phase_doubling_h(2.0, d) for d in drawn)
    lifespan = [serial_passage("bonab", f"donor-{i:04d}").counted_pd for i in range(lifespans)]
    a, b = serial_passage("bonab", "BM-A"), serial_passage("bonab", "BM-B")
    return [
        Figure(
            e,
            f"log-phase Td at P1, median of {n} donors",
            td[n // 2],
            "h",
            30,
            48,
            "Bruder 1997; Banfi 2000; Wagner 2008",
            "early doubling times 30-48 h",
        ),
        Figure(
            e,
            f"log-phase Td at P1 of {n} donors, 97.5th / 2.5th percentile",
            td[int(0.975 * n)] / td[int(0.025 * n)],
            "x",
            1.4,
            1.9,
            "derived",
            "the published 30-48 h span a factor of 1.6",
        ),
        Figure(
            e,
            f"counted PD at senescence, mean of {lifespans} donors",
            statistics.mean(lifespan),
            "PD",
            34,
            42,
            "Bruder 1997",
            "38 +/- 4",
        ),
        Figure(
            e,
            f"counted PD at senescence, SD between {lifespans} donors",
            statistics.stdev(lifespan),
            "PD",
            2.5,
            5.5,
            "Bruder 1997",
            "38 +/- 4",
        ),
        Figure(
            e,
            "counted PD at senescence, donor BM-A vs BM-B",
            abs(a.counted_pd - b.counted_pd),
            "PD",
            0.5,
            12,
            "Bruder 1997; DiGirolamo 1999",
            f"BM-A {a.counted_pd:.1f}, BM-B {b.counted_pd:.1f}: donors differ",
        ),
    ]


# --- printing and the figure -----------------------------------------------------------------


def all_figures(lifespans: int = 40) -> tuple[list[Figure], SerialRun, SerialRun]:
    serial, bonab, camp = serial_passaging()
    figures = growth_curve() + serial + feeding() + enzyme() + donors(lifespans=lifespans)
    return figures, bonab, camp


def print_table(figures: list[Figure]) -> None:
    experiment = None
    width = max(len(f.name) for f in figures)
    for f in figures:
        if f.experiment != experiment:
            experiment = f.experiment
            print(f"\n{experiment}")
        verdict = "inside " if f.inside else "OUTSIDE"
        print(
            f"  {f.name:<{width}}  {_fmt(f.value):>9} {f.unit:<9} "
            f"published {_fmt(f.low)}-{_fmt(f.high)}  {verdict}  {f.source}"
            + (f" ({f.note})" if f.note else "")
        )
    inside = sum(f.inside for f in figures)
    print(f"\n{inside} of {len(figures)} figures inside their published ranges")
    print("\nsources:")
    keys = sorted({k.strip() for f in figures for k in f.source.split(";")} - {"derived"})
    for k in keys:
        print(f"  {k}: {REFERENCES[k]}")


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf"
    if abs(x) >= 1000:
        return f"{x:.3g}"
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def plot(path: Path, bonab: SerialRun, camp: SerialRun) -> None:
    """Serial passaging: cumulative counted PD over days, and PD per passage, with the
    published figures drawn in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    donor_runs = [serial_passage("bonab", d) for d in ("BM-A", "BM-B", "BM-C")]
    colours = ["tab:green", "tab:purple", "tab:brown"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110)
    ax1.axhspan(34, 42, color="tab:orange", alpha=0.18, lw=0)
    ax1.text(3, 42.6, "Bruder 1997: 38 ± 4 PD at senescence", color="tab:orange", fontsize=9)
    days, pd = zip(*bonab.curve, strict=True)
    ax1.plot(days, pd, "-o", ms=3, lw=2, color="black", label="reference donor")
    for r, c in zip(donor_runs, colours, strict=True):
        days, pd = zip(*r.curve, strict=True)
        ax1.plot(days, pd, "--", lw=1.2, color=c, label=f"donor {r.donor}")
    days, pd = zip(*camp.curve, strict=True)
    ax1.plot(
        days,
        pd,
        ":",
        color="tab:gray",
        lw=1.8,
        label="reference donor, campaign protocol\n(3,000 cells/cm², passaged at 80 %)",
    )
    ax1.set_xlabel("days in culture")
    ax1.set_ylabel("cumulative population doublings, counted")
    ax1.set_title("Serial passaging to senescence (100 cells/cm², every 13 d)", fontsize=10)
    ax1.set_ylim(0, 48)
    ax1.legend(fontsize=8, loc="lower right")
    xs = [x.number for x in bonab.passages if x.doublings > 0]
    ys = [x.doublings for x in bonab.passages if x.doublings > 0]
    ax2.plot(xs, ys, "-o", ms=3, lw=2, color="black", label="reference donor")
    for r, c in zip(donor_runs, colours, strict=True):
        xs = [x.number for x in r.passages if x.doublings > 0]
        ys = [x.doublings for x in r.passages if x.doublings > 0]
        ax2.plot(xs, ys, "--", lw=1.2, color=c, label=f"donor {r.donor}")
    ax2.errorbar(
        [1, 10],
        [7.7, 1.2],
        yerr=[[1.2, 0.7], [1.3, 0.8]],
        fmt="s",
        ms=7,
        color="tab:orange",
        capsize=4,
        label="Bonab 2006: 7.7 at P1, 1.2 at P10\n(bars: the ranges tested)",
    )
    ax2.set_xlabel("passage")
    ax2.set_ylabel("population doublings in the passage, counted")
    ax2.set_title("Doublings per passage", fontsize=10)
    ax2.set_xticks(range(1, 21, 2))
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--plot", type=Path, help="save the serial-passaging figure (PNG) here")
    args = ap.parse_args()
    figures, bonab, camp = all_figures()
    print("culture model fidelity: each figure measured on the model, beside its published range")
    print_table(figures)
    print("\nserial passaging, reference donor (Bonab protocol): passage, day, doublings")
    for x in bonab.passages:
        print(f"  P{x.number:<2} day {x.day:6.1f}  {x.doublings:5.2f}")
    print("feeding a confluent well at 0.1 mL/cm2: interval, % lost per cycle, viability %")
    for every, lost, viab in feeding_table():
        print(f"  every {every:g} d: {lost:5.1f} % lost, {viab:5.1f} % viable")
    if args.plot:
        plot(args.plot, bonab, camp)
        print(f"figure: {args.plot}")
    sys.exit(0 if all(f.inside for f in figures) else 1)


if __name__ == "__main__":
    main()
