"""The expansion campaign: what to do next, decided from the store and the clock alone.

Bluesky-style, what the campaign *says* is separate from what *runs* it: ``decide``
is a pure function of the store, the time and the parameters that returns the
actions due now (seed, image, feed, passage, harvest, stop) or when to look again;
``CampaignEngine`` carries them out, each as one checkpointed step, through a
``StepRunner`` that the Prefect flow replaces with Prefect tasks. Because nothing
else is remembered, a killed campaign restarted on the same run folder takes up
exactly where its last finished step left it.

Rules, in order, at each decision time:

1. nothing seeded yet: seed the initial plates from the thawed vial;
2. the last count's viability is below the floor: stop with a deviation;
3. imaging is due for a plate (``image_every_days``): image it, with every plate due
   within a quarter of the interval (one round, ``GROUP_SHARE``);
4. the estimated total (confluence x cells per cm2 at confluence x area) reaches
   the target: harvest everything (the operator approves first). Cells per cm2 at
   confluence come from the culture model (``cells_per_cm2_at_confluence``): MSC
   flatten and grow larger with population doublings, so a confluent late-passage
   plate holds fewer cells than an early one;
5. a plate's mean confluence reaches the threshold: passage it into free plates,
   unless the passage limit or the deck's free plates say stop, which harvests
   with a deviation;
6. feeding is due for a plate (``feed_every_days``): feed it, with every plate due
   within a quarter of a day (one round);
7. the campaign reached ``max_days``: harvest with a deviation.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocols import harvest, media_exchange, passaging, seeding
from protocols.campaign import housekeeping, logistics
from protocols.campaign.plan import CapacityPlan
from protocols.checks import MAX_NAME, DeckName, DeckNames, WellNames
from protocols.detachment import DetachParams, once_event
from protocols.imaging import image_plates
from protocols.recovery.finish import return_plates
from protocols.recovery.resumable import unit
from simulators.culture import CultureParameters
from workcell.assembly.choices import EMPTY_IS_NONE, Choice, choice, optional_int
from workcell.assembly.session import Session
from workcell.assembly.workcell import Workcell
from workcell.batch import lineage
from workcell.errors import ProtocolRefused
from workcell.journal import StepInfo
from workcell.operator import AbortedByOperator, Answer, Hold
from workcell.ot_labware import same_product
from workcell.store import Event, Store

DAY_S = 86400.0
# Times in the store have microsecond resolution: a wait that ends "at" a due time
# may land a microsecond short of it. Anything due within this many seconds is due.
DUE_SLACK_S = 1.0
# Imaging and feeding go in rounds, as on a line: a plate due within this share of a day
# (imaging: of its interval) joins the round of one that is due now, rather than making
# a trip of its own minutes later (a passage's children are made minutes apart).
GROUP_SHARE = 0.25


class CampaignParams(BaseModel):
    """An MSC expansion from a thawed vial to a dose."""

    model_config = ConfigDict(extra="forbid", title="Expansion campaign")

    suspension: seeding.Suspension = Field(
        default_factory=lambda: seeding.Suspension(
            volume_mL=5.0,
            viable_cells_per_mL=5.0e5,
            viability_percent=92,
            passage=1,
            population_doublings=4.0,
            lot="BM-MSC-DEMO-01",
        ),
        title="Thawed vial",
        description="the thawed vial, counted: seeded onto the initial plates",
    )
    initial_plates: DeckNames = Field(
        default_factory=lambda: ["plate_1"],
        min_length=1,
        title="Initial plates",
        description="empty plates the vial is seeded onto",
        json_schema_extra=choice(Choice.PLATE),
    )
    initial_wells: WellNames = Field(
        default_factory=list,
        title="Initial wells",
        description="wells seeded on each initial plate; empty: all",
        json_schema_extra=choice(Choice.WELL),
    )
    vessel_labware: str = Field(
        max_length=200,
        default="cor_cos_6_wellplate_16800uL_Fb",
        title="Culture plate type",
        description="the deck plates of this type are the ones the campaign passages into",
        json_schema_extra=choice(Choice.PLATE_LABWARE),
    )
    max_vessels: Annotated[int | None, optional_int(1, 1000)] = Field(
        default=None,
        ge=1,
        le=1000,
        title="Most vessels in culture",
        description="cap on vessels in culture at once; empty: no cap",
        json_schema_extra=EMPTY_IS_NONE,
    )
    density_cells_per_cm2: float = Field(
        default=3000,
        ge=100,
        le=10000,
        title="Density (cells/cm²)",
        description="viable cells seeded per cm², at thaw and at each passage",
    )
    medium_mL_per_cm2: float = Field(
        default=0.2,
        ge=0.05,
        le=1.0,
        title="Medium (mL/cm²)",
        description="medium per cm² of growth area",
    )
    feed_every_days: float = Field(
        default=3.0, ge=0.5, le=7, title="Feed every (days)", description="media exchange interval"
    )
    image_every_days: float = Field(
        default=1.0,
        ge=0.25,
        le=7,
        title="Image every (days)",
        description="confluence imaging interval; decisions follow the images",
    )
    confluence_threshold_percent: float = Field(
        default=80,
        ge=10,
        le=100,
        title="Passage at confluence (%)",
        description="a plate whose mean confluence reaches this is passaged",
    )
    passage_limit: int = Field(
        default=5,
        ge=1,
        le=20,
        title="Passage limit",
        description="a plate confluent at this passage holds for harvest (a deviation)",
    )
    viability_floor_percent: float = Field(
        default=70,
        ge=0,
        le=100,
        title="Viability floor (%)",
        description="a count below this holds the campaign for the operator (a deviation)",
    )
    patient_weight_kg: float = Field(
        default=3.0, ge=1, le=250, title="Patient weight (kg)", description="for the dose"
    )
    target_dose_cells_per_kg: float = Field(
        default=2.0e6,
        ge=1e4,
        le=1e8,
        title="Target dose (cells/kg)",
        description="viable cells per kg of body weight; target = dose × weight",
    )
    max_days: float = Field(
        default=28,
        ge=1,
        le=120,
        title="Longest campaign (days)",
        description="reaching it holds for harvest (a deviation)",
    )
    detach: DetachParams = Field(
        default_factory=DetachParams,
        title="Detachment",
        description="wash, enzyme, neutralisation and pooling, at passage and harvest",
    )
    harvest_margin: float = Field(
        default=1.3,
        ge=1.0,
        le=3.0,
        title="Harvest margin (× target)",
        description="harvest once the image estimate exceeds the target by this factor "
        "(detachment yield and pooling losses)",
    )
    monitor_every_min: float = Field(
        default=60,
        ge=1,
        le=1440,
        title="Incubator check every (min)",
        description="incubator climate checks while waiting",
    )
    harvest_pool: DeckName = Field(
        default="harvest_pool",
        title="Harvest pool",
        description="where the whole batch is pooled at harvest",
        json_schema_extra=choice(Choice.POOL),
    )
    expected_recovery: float = Field(
        default=0.8,
        gt=0.1,
        le=1.0,
        title="Expected recovery (planning)",
        description="planning: share of a passage's counted cells that reach the next vessels",
    )
    plan_safety: float = Field(
        default=1.25,
        ge=1.0,
        le=3.0,
        title="Plan safety factor",
        description="planning: surface to spare in earlier phases",
    )
    start_short: bool = Field(
        default=False,
        title="Start short",
        description="start even when the capacity plan says the dose does not fit "
        "(recorded as a deviation saying how far it will get)",
    )

    @property
    def target_cells(self) -> float:
        return self.patient_weight_kg * self.target_dose_cells_per_kg


class Kind(StrEnum):
    SEED = "seed"
    IMAGE = "image"
    FEED = "feed"
    PASSAGE = "passage"
    HARVEST = "harvest"
    STOP = "stop"
    REPLENISH = "replenish"
    RECOVER = "recover"  # a hold point met while finishing or doing a step


class Action(BaseModel):
    kind: Kind
    plates: list[str] = Field(default_factory=list)
    destinations: list[str] = Field(default_factory=list)
    reason: str = ""
    deviation: bool = False
    needs_operator: bool = False
    max_children: int | None = None
    hold_key: str = Field(
        default="", description="names an operator hold; the same hold keeps its key on resume"
    )

    @property
    def label(self) -> str:
        where = ",".join(self.plates)
        return f"{self.kind.value} {where}".strip()


class Decision(BaseModel):
    actions: list[Action]
    wake_at_s: float | None = None  # when nothing is due: campaign seconds to look again
    finished: bool = False


class PlateState(BaseModel):
    plate: str
    vessels: list[str]
    area_cm2: float
    passage: int
    last_fed_s: float
    last_imaged_s: float
    confluence: float | None
    population_doublings: float = Field(
        default=0.0, description="cumulative PD of its cells now: counted, plus growth imaged"
    )


REFERENCE_CELLS = CultureParameters()


def cells_per_cm2_at_confluence(population_doublings: float) -> float:
    """The confluence estimate's calibration: viable MSC per cm2 of a confluent monolayer
    after ``population_doublings``, from the culture model's reference donor (one cell per
    cell footprint; footprints grow with PD, ``simulators/culture.py``)."""
    return REFERENCE_CELLS.confluent_density_at(population_doublings)


def imaged_cells(
    confluence: float, area_cm2: float, pd_at_seeding: float, seeded_cells: float
) -> tuple[float, float]:
    """Cells a vessel (or plate) holds by its image, and the PD they have reached.

    The PD since seeding is estimated from the image itself (log2 of cells now over cells
    seeded), so the calibration follows the cells as they age within a passage.
    """
    cells = confluence * cells_per_cm2_at_confluence(pd_at_seeding) * area_cm2
    pd = pd_at_seeding
    if seeded_cells > 0 and cells > seeded_cells:
        pd += math.log2(cells / seeded_cells)
        cells = confluence * cells_per_cm2_at_confluence(pd) * area_cm2
    return cells, pd


class CampaignView(BaseModel):
    """What the store says about the campaign now; all decisions start from this."""

    started_at: datetime | None
    now_s: float
    plates: list[PlateState]
    finished: bool
    last_viability: float | None
    used_plates: set[str]
    made: dict[int, int] = Field(default_factory=dict, description="vessels seeded per passage")


def _s(t: datetime, t0: datetime) -> float:
    return (t - t0).total_seconds()


def now_s(store: Store, now: datetime) -> float:
    """Campaign seconds at ``now`` (0 before the campaign starts): the view's ``now_s``,
    without building the view."""
    started = store.first_event_time("campaign_started")
    return _s(now, started) if started is not None else 0.0


# What a campaign's view is made from: while these rows are the same (they are only ever
# added, so their counts say so), the view is the same but for the time.
VIEW_ROWS: dict[str, tuple[str, ...]] = {
    "tables": ("vessels", "vessel_changes", "lineage"),
    "events": ("campaign_started", "campaign_finished", "fed", "seeded", "pooled", "counted"),
    "measurements": ("confluence", "seeded_cells", "pool_viability", "pool_volume"),
}


def view(store: Store, now: datetime) -> CampaignView:
    """The campaign's view at ``now``: kept between decisions while its rows are the same
    (a wait or a step that changed none of them), the time moved on."""
    t0 = store.first_event_time("campaign_started")
    if t0 is None:
        return _view(store, now, None)
    kept: CampaignView = store.memo(
        "campaign_view", store.version(**VIEW_ROWS), lambda: _view(store, t0, t0)
    )
    return kept.model_copy(update={"now_s": _s(now, t0)}, deep=True)


def _view(store: Store, now: datetime, started: datetime | None) -> CampaignView:
    """The view at ``now`` of a campaign that started at ``started`` (None: not yet)."""
    t0 = started or now
    places = store.plates_and_passages()  # every vessel's plate and passage, without records
    active = store.vessels(state="active")
    ids = [v.id for v in active]
    fed = {vessel: _s(t, t0) for vessel, t in store.last_event_times("fed", ids).items()}
    conf = {
        vessel: (_s(t, t0), value)
        for vessel, (t, value) in store.last_values("confluence", ids).items()
    }
    seeded = store.values_by_vessel("seeded_cells")
    pd = lineage.population_doublings(store) if active else {}
    plates: dict[str, list] = {}
    for v in active:
        plates.setdefault(v.plate, []).append(v)
    states = []
    for name, vs in plates.items():
        created = max(_s(v.created_at, t0) for v in vs)
        imaged = [conf[v.id] for v in vs if v.id in conf and conf[v.id][0] >= created]
        area = sum(v.area_cm2 for v in vs)
        confluence = sum(c for _, c in imaged) / len(imaged) if len(imaged) == len(vs) else None
        pd_now = sum(pd[v.id].at_seeding for v in vs if v.id in pd) / len(vs)
        if confluence is not None:
            _, pd_now = imaged_cells(
                confluence, area, pd_now, sum(seeded.get(v.id, 0.0) for v in vs)
            )
        states.append(
            PlateState(
                plate=name,
                vessels=[v.id for v in vs],
                area_cm2=area,
                passage=max(v.passage for v in vs),
                last_fed_s=max([created, *(fed.get(v.id, created) for v in vs)]),
                last_imaged_s=max([t for t, _ in imaged], default=created),
                confluence=confluence,
                population_doublings=pd_now,
            )
        )
    return CampaignView(
        started_at=started,
        now_s=_s(now, t0),
        plates=sorted(states, key=lambda p: p.plate),
        finished=bool(store.events("campaign_finished")),
        last_viability=store.last_value("pool_viability"),
        used_plates={plate for plate, _ in places},
        made={n: len({plate for plate, m in places if m == n}) for n in {m for _, m in places}},
    )


def _hold(kind: Kind, plates: list[str], reason: str, deviation: bool = True) -> Decision:
    """A decision that waits for the operator: harvest or stop, usually on a deviation."""
    return Decision(
        actions=[
            Action(
                kind=kind, plates=plates, reason=reason, deviation=deviation, needs_operator=True
            )
        ]
    )


def _n(cells: float) -> str:
    """A cell number for a person: 13,000 or 1.68e5."""
    return f"{cells:,.0f}" if cells < 1e5 else f"{cells:.3g}".replace("e+0", "e").replace("e+", "e")


def decide(
    v: CampaignView,
    p: CampaignParams,
    deck_plates: dict[str, int],
    plan: CapacityPlan | None = None,
) -> Decision:
    """The actions due now, from the campaign's view of the store (see module docstring).

    With a capacity ``plan`` (vessels from a hotel), vessels come from the hotel
    rather than from free deck plates, each phase's children are capped at the
    plan's count for the next phase (shared among that phase's vessels), and the
    plan's last phase is never passaged: it grows to the harvest.
    """
    if v.finished:
        return Decision(actions=[], finished=True)
    if v.started_at is None or (not v.plates and not v.used_plates):
        first = [] if plan is not None else p.initial_plates  # planned: drawn from the hotel
        return Decision(actions=[Action(kind=Kind.SEED, plates=first)])
    if not v.plates:
        return _hold(Kind.STOP, [], "no vessel is left in culture")
    if v.last_viability is not None and v.last_viability < p.viability_floor_percent:
        return _hold(
            Kind.STOP,
            [x.plate for x in v.plates],
            f"viability {v.last_viability:.0f} % is below the floor "
            f"{p.viability_floor_percent:.0f} %",
        )
    all_plates = [x.plate for x in v.plates]
    if v.now_s >= p.max_days * DAY_S - DUE_SLACK_S:
        return _hold(
            Kind.HARVEST,
            all_plates,
            f"the campaign reached its {p.max_days:g} days before the target",
        )
    image_due = [
        x for x in v.plates if v.now_s - x.last_imaged_s >= p.image_every_days * DAY_S - DUE_SLACK_S
    ]
    if image_due:  # a line images in rounds: those due within hours too
        early = GROUP_SHARE * p.image_every_days * DAY_S
        image_due = [
            x for x in v.plates if v.now_s - x.last_imaged_s >= p.image_every_days * DAY_S - early
        ]
    if image_due:
        return Decision(actions=[Action(kind=Kind.IMAGE, plates=[x.plate for x in image_due])])

    estimate = estimated_cells(v, p)
    if estimate >= p.target_cells * p.harvest_margin:
        return _hold(
            Kind.HARVEST,
            all_plates,
            f"the images estimate {_n(estimate)} cells, at least the target "
            f"{_n(p.target_cells)} × margin {p.harvest_margin:g}",
            deviation=False,
        )
    confluent = [
        x
        for x in v.plates
        if x.confluence is not None and 100 * x.confluence >= p.confluence_threshold_percent
    ]
    actions: list[Action] = []
    if plan is not None:
        return _decide_planned(v, p, plan, confluent)
    free = [d for d in deck_plates if d not in v.used_plates]
    budget = None
    if p.max_vessels is not None and confluent:
        staying = sum(len(x.vessels) for x in v.plates if x not in confluent)
        budget = max(0, p.max_vessels - staying) // len(confluent)
    taken = 0
    for i, x in enumerate(confluent):
        if x.passage + 1 > p.passage_limit:
            return _hold(
                Kind.HARVEST,
                all_plates,
                f"{x.plate} is confluent at passage {x.passage}; the passage limit "
                f"is {p.passage_limit}",
            )
        if budget is None:
            share = free[i * len(free) // len(confluent) : (i + 1) * len(free) // len(confluent)]
        else:  # just the plates the capped number of children needs
            share, wells = [], 0
            for d in free[taken:]:
                if wells >= budget:
                    break
                share.append(d)
                wells += deck_plates[d]
            taken += len(share)
        if not share or budget == 0:
            return _hold(
                Kind.HARVEST,
                all_plates,
                f"{x.plate} is confluent and no free plate is left on the deck",
            )
        actions.append(
            Action(
                kind=Kind.PASSAGE,
                plates=[x.plate],
                destinations=share,
                max_children=budget,
                reason=f"confluence {100 * x.confluence:.0f} % >= "  # type: ignore[operator]
                f"{p.confluence_threshold_percent:.0f} %",
            )
        )
    return _act_or_wait(_with_feed_round(actions, v, p), v, p)


def _with_feed_round(actions: list[Action], v: CampaignView, p: CampaignParams) -> list[Action]:
    """``actions`` and, if a plate not being passaged is due for feeding, a feed of it and
    of every such plate due within ``GROUP_SHARE`` of a day (a line feeds in rounds)."""
    passaged = {a.plates[0] for a in actions}
    interval = p.feed_every_days * DAY_S
    if not any(
        x.plate not in passaged and v.now_s - x.last_fed_s >= interval - DUE_SLACK_S
        for x in v.plates
    ):
        return actions
    early = interval - GROUP_SHARE * DAY_S
    due = [x.plate for x in v.plates if x.plate not in passaged and v.now_s - x.last_fed_s >= early]
    return [*actions, Action(kind=Kind.FEED, plates=due)]


def _act_or_wait(actions: list[Action], v: CampaignView, p: CampaignParams) -> Decision:
    """The actions due now, or, when none is, a wait until the next image or feed falls due."""
    if actions:
        return Decision(actions=actions)
    wake = min(
        [x.last_imaged_s + p.image_every_days * DAY_S for x in v.plates]
        + [x.last_fed_s + p.feed_every_days * DAY_S for x in v.plates]
        + [p.max_days * DAY_S]
    )
    return Decision(actions=[], wake_at_s=wake)


def _decide_planned(
    v: CampaignView, p: CampaignParams, plan: CapacityPlan, confluent: list[PlateState]
) -> Decision:
    """Passage and feed with vessels from the hotel, as the capacity plan says."""
    actions: list[Action] = []
    final = plan.final_passage()
    for x in confluent:
        if x.passage >= final:
            continue  # the last phase grows on to the harvest
        if x.passage + 1 > p.passage_limit:
            return _hold(
                Kind.HARVEST,
                [y.plate for y in v.plates],
                f"{x.plate} is confluent at passage {x.passage}; the passage limit "
                f"is {p.passage_limit}",
            )
        planned = plan.vessels_at(x.passage + 1) or 1
        made = v.made.get(x.passage + 1, 0)
        sources = sum(1 for y in v.plates if y.passage == x.passage)
        share = max(1, math.ceil((planned - made) / max(1, sources)))
        actions.append(
            Action(
                kind=Kind.PASSAGE,
                plates=[x.plate],
                max_children=share,
                reason=f"confluence {100 * (x.confluence or 0):.0f} % >= "
                f"{p.confluence_threshold_percent:.0f} %; plan: {planned} vessels at "
                f"P{x.passage + 1}, {made} made",
            )
        )
        break  # one passage per decision: the next sees its children
    return _act_or_wait(_with_feed_round(actions, v, p), v, p)


StepRunner = Callable[[str, Callable[[], Awaitable[object]]], Awaitable[object]]


class OperatorDecision(BaseModel):
    """An operator's answer at a hold point (before harvest, on a deviation)."""

    operator: str = Field(min_length=1, max_length=MAX_NAME, description="who decides")
    decision: Literal["approve", "abort"] = "approve"
    comment: str = Field(default="", max_length=2000)


Ask = Callable[[Action], Awaitable[OperatorDecision]]
# Whether to end this process at a wait and let a new one continue from the store:
# called with the campaign seconds this process has covered and the wait ahead.
HandOver = Callable[[float, float], bool]
Progress = Callable[[float, str], Awaitable[None] | None]


class CampaignSummary(BaseModel):
    days: float = Field(description="simulated (or real) days from start to the last record")
    outcome: str
    passages: int
    population_doublings: float | None = Field(
        description="mean cumulative PD of the harvested vessels, from counts"
    )
    viable_cells: float | None
    viability_percent: float | None
    dose_cells_per_kg: float | None
    target_cells: float
    vessels: int
    steps: int


def summary_rows(s: CampaignSummary) -> list[tuple[str, str]]:
    """The batch summary as (label, value) rows: one wording for the CLI, the UI and the report."""

    def num(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    return [
        ("outcome", s.outcome),
        ("viable cells", f"{num(s.viable_cells, '.3g')} (target {s.target_cells:.3g})"),
        ("viability", f"{num(s.viability_percent, '.1f')} %"),
        ("dose", f"{num(s.dose_cells_per_kg, '.3g')} cells/kg"),
        ("passages", str(s.passages)),
        ("population doublings", num(s.population_doublings, ".2f")),
        ("days", f"{s.days:.1f}"),
        ("vessels", str(s.vessels)),
        ("steps", str(s.steps)),
    ]


async def direct(name: str, work: Callable[[], Awaitable[object]]) -> object:
    """A step run as it is (no orchestrator around it)."""
    return await work()


class CampaignEngine:
    """Runs the campaign's decisions as checkpointed steps until it finishes."""

    def __init__(
        self,
        session: Session,
        params: CampaignParams,
        ask: Ask,
        run_step: StepRunner = direct,
        progress: Progress | None = None,
        run_wait: StepRunner | None = None,
    ) -> None:
        self.session = session
        self.params = params
        self.ask = ask
        self.run_step = run_step
        # how a wait step runs (default: as any step); the Prefect flow runs a simulated
        # wait, which takes no wall time, without a task of its own
        self.run_wait = run_step if run_wait is None else run_wait
        self.progress = progress
        self.handed_over_at_s: float | None = None  # set when run() hands over at a wait
        self.deck_plates = {
            s.name: session.wc.plate(s.name).num_items
            for s in session.config.deck.sites()
            if same_product(s.labware, params.vessel_labware)
        }
        self.plan: CapacityPlan | None = None

    @property
    def wc(self) -> Workcell:
        return self.session.wc  # rebuilt when another run moved the workcell on

    def _view(self) -> CampaignView:
        return view(self.wc.store, self.wc.clock.now())

    def _now_s(self) -> float:
        return now_s(self.wc.store, self.wc.clock.now())

    def _start(self) -> None:
        """Plan first (vessels from a hotel): refuse a dose that cannot fit, before any motion."""
        wc = self.wc
        planned = wc.store.events("campaign_planned")
        if planned:
            self.plan = CapacityPlan.model_validate(planned[0].data["plan"])
            return
        if wc.store.events("campaign_started"):
            return  # a campaign without a plan (deck plates), resumed
        if wc.inventory is not None:
            self.plan = plan_for(wc, self.params)
            if not self.plan.fits and not self.params.start_short:
                raise ProtocolRefused(
                    "campaign",
                    [s.message for s in self.plan.shortfalls]
                    + [
                        f"the plan reaches ~{self.plan.reachable_cells:.3g} of "
                        f"{self.plan.target_cells:.3g} cells; start_short starts anyway, "
                        "recorded as a deviation"
                    ],
                )
        wc.event("campaign_started", "campaign", params=self.params.model_dump(mode="json"))
        if self.plan is not None:
            wc.event("campaign_planned", "campaign", plan=self.plan.model_dump(mode="json"))
            if not self.plan.fits:
                wc.event(
                    "deviation",
                    "campaign",
                    message="started although the plan does not fit: "
                    + "; ".join(s.message for s in self.plan.shortfalls)
                    + f"; it expects to reach ~{self.plan.reachable_cells:.3g} cells",
                )

    def prepare(self) -> CapacityPlan | None:
        """Plan (or load the plan of a resumed campaign); refuses a dose that cannot fit."""
        self._start()
        return self.plan

    async def run(self, hand_over: HandOver | None = None) -> CampaignSummary:
        """Until the campaign finishes, or until ``hand_over`` says to stop at a wait.

        An interrupted step is finished first; then each decision is taken under the
        device locks, from the state they protect. A hand-over records
        ``campaign_handed_over`` and returns the summary so far (outcome
        "unfinished"); ``handed_over_at_s`` says when the campaign wakes.
        """
        async with self.session.locked():
            self._start()  # the plan (kept, or made and checked) before any step is re-entered
        await self.finish_interrupted()
        began_s: float | None = None
        while True:
            async with self.session.locked():  # decided from the state the locks protect
                v = self._view()
                began_s = v.now_s if began_s is None else began_s
                d = decide(v, self.params, self.deck_plates, self.plan)
                if d.finished:
                    break
                await self._report(v)
                if not d.actions:
                    assert d.wake_at_s is not None
                    if hand_over is not None and hand_over(
                        v.now_s - began_s, d.wake_at_s - v.now_s
                    ):
                        self.handed_over_at_s = d.wake_at_s
                        self.wc.event(
                            "campaign_handed_over",
                            "campaign",
                            from_day=round(began_s / DAY_S, 3),
                            at_day=round(v.now_s / DAY_S, 3),
                            wakes_at_day=round(d.wake_at_s / DAY_S, 3),
                        )
                        break
                    await self._wait(d.wake_at_s)
                    continue
                for action in d.actions:
                    await self._do(action)
        return summarize(self.wc.store, self.params)

    async def finish_interrupted(self) -> None:
        """Steps the session found interrupted: the campaign's own are re-entered and
        finished by the same code; any other by its protocol's recovery."""
        from protocols.recovery.finish import finish_interrupted

        async def campaign_step(step: StepInfo) -> None:
            data = step.data
            if "action" in data:
                await self._do(Action.model_validate(data["action"]), resume=step)
            else:
                await self._wait(float(data.get("until_s", 0.0)), resume=step)

        await finish_interrupted(self.session, self._hold_answer, {"campaign": campaign_step})

    async def _hold_answer(self, hold: Hold) -> Answer:
        """A protocol's hold point, put to the campaign's operator."""
        answer = await self._ask(
            Action(kind=Kind.RECOVER, reason=hold.reason, deviation=True, needs_operator=True)
        )
        return Answer(operator=answer.operator, decision=answer.decision, comment=answer.comment)

    async def _wait(self, until_s: float, resume: StepInfo | None = None) -> None:
        label = resume.label if resume else f"wait until day {until_s / DAY_S:.2f}"

        async def work() -> None:
            async with self.session.step(
                label, owner="campaign", data={"until_s": until_s}, resume=resume
            ) as wc:
                # watch the incubators while waiting: a fault between images is seen
                every = self.params.monitor_every_min * 60
                end = wc.clock.elapsed() + until_s - now_s(wc.store, wc.clock.now())
                while (left := end - wc.clock.elapsed()) > 0:
                    await wc.clock.sleep(min(every, left))
                    await wc.check_incubators()

        await self.run_wait(label, work)

    async def do(self, a: Action) -> object:
        """Carry out one decided action as a step (what a scheduler calls, one at a time).

        An interrupted step of this campaign is finished instead: it was decided first.
        """
        if self.session.interrupted:
            await self.finish_interrupted()
            return None
        return await self._do(a)

    async def _do(self, a: Action, resume: StepInfo | None = None) -> object:
        label = resume.label if resume else f"day {self._now_s() / DAY_S:.2f} {a.label}"
        # The operator is asked here, under the locks but outside the step's task (a
        # Prefect run pauses or suspends only at the flow's level); the answer is recorded
        # inside the step, once, with the step's other records. A step re-entered after
        # an interruption uses the answer it recorded and never asks again.
        given: dict[str, object] | None = None
        if a.needs_operator and not (resume is not None and _answered(self.wc, resume)):
            given = await self._ask_json(a)

        async def asked() -> dict[str, object]:
            return given if given is not None else await self._ask_json(a)

        async def work() -> object:
            async with self.session.step(
                label, owner="campaign", data={"action": a.model_dump(mode="json")}, resume=resume
            ) as wc:
                wc.operator = self._hold_answer
                if a.needs_operator:  # the hold point is part of its step: asked once
                    answer = OperatorDecision.model_validate(
                        await _once_async(wc, "operator_decision", asked)
                    )
                    once_event(
                        wc,
                        "operator_decision_recorded",
                        "operator_decision",
                        answer.operator,
                        action=a.kind.value,
                        reason=a.reason,
                        decision=answer.decision,
                        comment=answer.comment,
                    )
                    if answer.decision == "abort" or a.kind is Kind.STOP:
                        once_event(
                            wc,
                            "campaign_finished",
                            "campaign_finished",
                            "campaign",
                            outcome=f"stopped: {a.reason}",
                        )
                        return None
                await self._housekeeping(wc)
                once_event(
                    wc,
                    "decision",
                    "decision",
                    "campaign",
                    action=a.kind.value,
                    plates=a.plates,
                    reason=a.reason,
                )
                try:
                    result = await self._act(wc, a)
                    if wc.journal.resumed:  # a culture plate the interruption left out goes back
                        await return_plates(wc)
                    return result
                except AbortedByOperator as err:
                    once_event(
                        wc,
                        "campaign_finished",
                        "campaign_finished",
                        "campaign",
                        outcome=f"stopped: {err}",
                    )
                    return None

        return await self.run_step(label, work)

    async def _ask_json(self, a: Action) -> dict[str, object]:
        return (await self._ask(a)).model_dump(mode="json")

    async def _ask(self, a: Action) -> OperatorDecision:
        """Hold for the operator. The hold (and its deviation) is recorded once, under a
        key that stays the same when a suspended run starts again from the top and
        reaches this hold a second time (the answer given meanwhile is then returned)."""
        key = f"hold-{len(self.wc.store.events('operator_decision')) + 1}"
        a = a.model_copy(update={"hold_key": key})
        if not any(e.data.get("key") == key for e in self.wc.store.events("hold")):
            if a.deviation:
                self.wc.event("deviation", "campaign", message=a.reason, action=a.kind.value)
            self.wc.event("hold", "campaign", key=key, action=a.kind.value, reason=a.reason)
        return await self.ask(a)

    async def _do_planned(self, wc: Workcell, a: Action) -> object:
        """An action with vessels from the hotel, in batches that fit the deck."""
        p, plan = self.params, self.plan
        assert plan is not None
        if a.kind is Kind.SEED:
            return await logistics.seed_from_vial(wc, p, plan, self._housekeeping)
        if a.kind is Kind.IMAGE:
            return await image_plates(wc, a.plates)
        if a.kind is Kind.FEED:
            return await logistics.feed(wc, a.plates, p, self._housekeeping)
        if a.kind is Kind.PASSAGE:
            return await logistics.passage(wc, a.plates[0], p, a.max_children or 1)
        result = await logistics.harvest_all(wc, a.plates, p, self._housekeeping)
        self._finish_harvest(wc, a, result)
        return result

    def _finish_harvest(self, wc: Workcell, a: Action, result: harvest.HarvestResult) -> None:
        deviation = a.deviation
        if not result.dose_reached:
            deviation = True
            once_event(
                wc,
                "low_dose",
                "deviation",
                "campaign",
                message=f"dose {result.dose_cells_per_kg:.3g} cells/kg is below the "
                f"target {result.target_dose_cells_per_kg:.3g}",
            )
        outcome = f"harvested: {a.reason}" + (" (deviation)" if deviation else "")
        once_event(wc, "campaign_finished", "campaign_finished", "campaign", outcome=outcome)

    async def _act(self, wc: Workcell, a: Action) -> object:
        p = self.params
        if self.plan is not None and wc.inventory is not None:
            return await self._do_planned(wc, a)
        if a.kind is Kind.SEED:
            seeded = await seeding.run(
                wc,
                seeding.SeedingParams(
                    suspension=p.suspension,
                    plates=a.plates,
                    wells=p.initial_wells,
                    density_cells_per_cm2=p.density_cells_per_cm2,
                    medium_mL_per_cm2=p.medium_mL_per_cm2,
                ),
                actor="campaign",
            )
            for plate in a.plates:
                if not wc.in_slot(plate):
                    await wc.store_plate(plate)
            return seeded
        if a.kind is Kind.IMAGE:
            return await image_plates(wc, a.plates)
        if a.kind is Kind.FEED:
            return await media_exchange.run(
                wc,
                media_exchange.MediaExchangeParams(
                    plates=a.plates, medium_mL_per_cm2=p.medium_mL_per_cm2
                ),
                actor="campaign",
            )
        if a.kind is Kind.PASSAGE:
            return await passaging.run(
                wc,
                passaging.PassagingParams(
                    plate=a.plates[0],
                    destination_plates=a.destinations,
                    confluence_threshold_percent=p.confluence_threshold_percent,
                    density_cells_per_cm2=p.density_cells_per_cm2,
                    medium_mL_per_cm2=p.medium_mL_per_cm2,
                    detach=p.detach,
                    max_child_vessels=a.max_children,
                ),
                actor="campaign",
            )
        result = await harvest.run(
            wc,
            harvest.HarvestParams(
                plates=a.plates,
                patient_weight_kg=p.patient_weight_kg,
                target_dose_cells_per_kg=p.target_dose_cells_per_kg,
                detach=p.detach.model_copy(update={"pool_tube": p.harvest_pool}),
            ),
            actor="campaign",
        )
        self._finish_harvest(wc, a, result)
        return result

    async def _housekeeping(self, wc: Workcell) -> None:
        """Top up reagents, empty waste and tubes, replace tips before a step needs them.

        Once per step: a step re-entered after an interruption does not tidy up again
        (its pool tube holds the cells it is working on).
        """
        async with unit(wc, "housekeeping", []) as u:
            if u.done:
                return
            chores = housekeeping.due(wc)
            if not chores:
                return
            actor = housekeeping.SIMULATED_OPERATOR
            if not wc.simulated:  # a person does it on a real workcell
                answer = OperatorDecision.model_validate(
                    await _once_async(
                        wc,
                        "replenish",
                        lambda: self._ask_json(
                            Action(
                                kind=Kind.REPLENISH,
                                needs_operator=True,
                                reason="; ".join(c.text for c in chores),
                            )
                        ),
                    )
                )
                actor = answer.operator
            housekeeping.do(wc, chores, actor)

    async def _report(self, v: CampaignView) -> None:
        if self.progress is None:
            return
        estimate = estimated_cells(v, self.params)
        share = max(estimate / self.params.target_cells, v.now_s / (self.params.max_days * DAY_S))
        text = (
            f"day {v.now_s / DAY_S:.1f}: {len(v.plates)} plates, "
            f"~{estimate:.3g} of {self.params.target_cells:.3g} cells"
        )
        if self.plan is not None:  # progress against the plan
            made = sum(v.made.values())
            text = (
                f"day {v.now_s / DAY_S:.1f} of ~{self.plan.days:.0f} planned: "
                f"{made} of {self.plan.vessels} planned vessels, {len(v.plates)} in culture, "
                f"~{estimate:.3g} of {self.params.target_cells:.3g} cells"
            )
        maybe = self.progress(min(99.0, 100.0 * share), text)
        if maybe is not None:
            await maybe


def plan_for(wc: Workcell, p: CampaignParams) -> CapacityPlan:
    """The capacity plan of campaign ``p`` on workcell ``wc`` (vessels from its hotel)."""
    from protocols.campaign.plan import make_plan
    from simulators.culture import CultureParameters
    from workcell import labware
    from workcell.labware import growth_area_cm2

    probe = labware.make("labware", p.vessel_labware, "probe")
    area = sum(growth_area_cm2(w) for w in probe.get_all_items())  # type: ignore[arg-type]
    culture = CultureParameters(**wc.config.culture.overrides)  # the lab's model, by config
    s = p.suspension
    from protocols.pipetting import TipSupply, dead_volume_uL, tips_per_transfer

    tube = wc.container(s.tube)  # what the tube's dead volume keeps cannot be seeded
    usable_mL = max(0.0, s.volume_mL - dead_volume_uL(tube) / 1000)
    return make_plan(
        culture=culture,
        vial_cells=usable_mL * s.viable_cells_per_mL,
        vial_passage=s.passage,
        vial_pd=s.population_doublings,
        target_cells=p.target_cells,
        harvest_margin=p.harvest_margin,
        calibration=cells_per_cm2_at_confluence,
        density_cells_per_cm2=p.density_cells_per_cm2,
        medium_mL_per_cm2=p.medium_mL_per_cm2,
        feed_every_days=p.feed_every_days,
        threshold=p.confluence_threshold_percent / 100,
        passage_limit=p.passage_limit,
        max_days=p.max_days,
        expected_recovery=p.expected_recovery,
        plan_safety=p.plan_safety,
        vessel_labware=p.vessel_labware,
        vessel_area_cm2=area,
        wells_per_vessel=probe.num_items,  # type: ignore[attr-defined]
        hotel_stock=wc.inventory.stock.get(p.vessel_labware, 0) if wc.inventory else 0,
        incubator_slots=wc.incubator_slots(),
        wash_pbs_mL_per_cm2=p.detach.wash_pbs_mL_per_cm2,
        enzyme_mL_per_cm2=p.detach.enzyme_mL_per_cm2,
        neutralise_ratio=p.detach.neutralise_ratio,
        supplies=wc.inventory.config.supplies.model_dump() if wc.inventory else None,
        tips_for=tips_per_transfer(TipSupply.of(wc)),
    )


def estimated_cells(v: CampaignView, p: CampaignParams) -> float:
    """Cells in culture as the last images say: confluence x cells per cm2 at confluence
    (at the plate's PD) x area."""
    return sum(
        (x.confluence or 0) * cells_per_cm2_at_confluence(x.population_doublings) * x.area_cm2
        for x in v.plates
    )


def _answered(wc: Workcell, step: StepInfo) -> bool:
    """Whether an interrupted step recorded its operator's answer before it stopped."""
    return any(
        r["key"] == "operator_decision" for r in wc.store.journal(step_id=step.id, kinds=("memo",))
    )


async def _once_async(wc: Workcell, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
    """``journal.once`` for an answer that must be awaited (an operator's)."""
    found, value = wc.journal.remembered(key)
    if found:
        return value
    return wc.journal.remember(key, await compute())


def _cancelled(e: Event) -> str:
    """A cancelled campaign's outcome: who stopped it, why, and where the request came from
    (the "by" is as typed: not authenticated)."""
    via = e.data.get("via")
    return f"cancelled by {e.actor} ({e.data.get('reason', '-')})" + (f"; via {via}" if via else "")


def summarize(store: Store, params: CampaignParams) -> CampaignSummary:
    """The batch summary, from the store alone (what a report or the UI shows)."""
    started = store.events("campaign_started")
    finished = store.events("campaign_finished")
    cancelled = store.events("campaign_cancelled")  # stopped on a floor, between steps
    harvested = store.events("harvested")
    vessels = store.vessels()
    last = store.latest_event_time()
    days = (last - started[0].time).total_seconds() / DAY_S if started and last else 0.0
    pd = lineage.population_doublings(store)
    h = harvested[-1].data if harvested else None
    harvested_pd = [pd[v].at_end for v in (h or {}).get("vessels", []) if v in pd]
    return CampaignSummary(
        days=days,
        outcome=(
            finished[-1].data["outcome"]
            if finished
            else _cancelled(cancelled[-1])
            if cancelled
            else "unfinished"
        ),
        passages=max((v.passage for v in vessels), default=0)
        - min((v.passage for v in vessels), default=0),
        population_doublings=(
            sum(x for x in harvested_pd if x is not None) / len(harvested_pd)
            if harvested_pd and all(x is not None for x in harvested_pd)
            else None
        ),
        viable_cells=h["viable_cells"] if h else None,
        viability_percent=h["viability_percent"] if h else None,
        dose_cells_per_kg=h["dose_cells_per_kg"] if h else None,
        target_cells=params.target_cells,
        vessels=len(vessels),
        steps=store.count_events("step_finished"),
    )


def auto_approve(operator: str = "auto-approve (dry-run)") -> Ask:
    """The answer of a dry-run started with --auto-approve: approve, and say so."""

    async def ask(action: Action) -> OperatorDecision:
        return OperatorDecision(
            operator=operator,
            decision="approve",
            comment=f"dry-run auto-approval of {action.label}",
        )

    return ask
