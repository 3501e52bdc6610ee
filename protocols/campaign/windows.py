"""Time windows of a campaign's work: declared once, read by the scheduler and the audit.

A campaign rule says when work is *due* (a feed ``feed_every_days`` after the last,
an image daily, a passage when an image shows the threshold reached). A window adds
how late it may start: it opens at the due time (the rules never act early), lateness
is counted from there (the soft part), and a *hard* window closes some hours later.
Inside one operation a window sits between two of its segments: the detachment
enzyme must be neutralised no sooner than its set time and no later than its
maximum; and a plate may be out of the incubator only so long.

These are the windows the scheduler (``protocols/campaign/scheduler.py``) plans
with and the audit (``protocols/campaign/audit.py``) checks against the batch
record. Other work that needs them (recovery of an interrupted step, say) should
read them from here rather than declare a second set.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from protocols.campaign.engine import DAY_S, Action, CampaignParams, CampaignView, Kind

HOUR_S = 3600.0
HARD_BY_DEFAULT = ["feed", "passage", "enzyme", "out_of_incubator"]


class WindowParams(BaseModel):
    """How late each kind of work may be, and which windows are hard."""

    model_config = ConfigDict(extra="forbid", title="Time windows")

    feed_late_h: float = Field(
        title="Feed late at most (h)",
        default=12,
        ge=0.5,
        le=72,
        description="a feed starts at most this long after it is due",
    )
    image_late_h: float = Field(
        title="Image late at most (h)",
        default=6,
        ge=0.25,
        le=24,
        description="an image is taken at most this late",
    )
    passage_within_h: float = Field(
        title="Passage within (h)",
        default=24,
        ge=1,
        le=96,
        description="a passage starts within this long of the image that showed the threshold",
    )
    enzyme_over_min: float = Field(
        title="Enzyme overrun at most (min)",
        default=3,
        ge=0.5,
        le=30,
        description="the enzyme is neutralised at most this long after its set time",
    )
    max_out_of_incubator_min: float = Field(
        title="Out of the incubator at most (min)",
        default=90,
        ge=5,
        le=600,
        description="longest a plate may stay out of the incubator",
    )
    hard: list[str] = Field(
        title="Hard windows",
        default_factory=lambda: list(HARD_BY_DEFAULT),
        description="which windows are hard (feed, image, passage, enzyme, out_of_incubator); "
        "the others only count lateness",
    )


class Window(BaseModel):
    """When one piece of work may start: due (lateness counts from here) to closes."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    label: str
    due_s: float
    closes_s: float | None = None
    hard: bool = False

    def lateness_s(self, start_s: float) -> float:
        return max(0.0, start_s - self.due_s)

    def violated_by(self, start_s: float, slack_s: float = 1.0) -> bool:
        """Whether starting at ``start_s`` breaks a hard window."""
        return self.hard and self.closes_s is not None and start_s > self.closes_s + slack_s


def _late_s(kind: Kind, w: WindowParams) -> float | None:
    return {
        Kind.FEED: w.feed_late_h * HOUR_S,
        Kind.IMAGE: w.image_late_h * HOUR_S,
        Kind.PASSAGE: w.passage_within_h * HOUR_S,
    }.get(kind)


def action_window(a: Action, v: CampaignView, p: CampaignParams, w: WindowParams) -> Window:
    """The window of an action the rules decided (campaign seconds, as in the view)."""
    plates = [x for x in v.plates if x.plate in a.plates]
    due = v.now_s
    if a.kind is Kind.IMAGE and plates:
        due = min(x.last_imaged_s for x in plates) + p.image_every_days * DAY_S
    elif a.kind is Kind.FEED and plates:
        due = min(x.last_fed_s for x in plates) + p.feed_every_days * DAY_S
    elif a.kind is Kind.PASSAGE and plates:
        due = min(x.last_imaged_s for x in plates)  # the image that showed the threshold
    due = min(due, v.now_s)
    late = _late_s(a.kind, w)
    return Window(
        kind=a.kind.value,
        label=a.label,
        due_s=due,
        closes_s=None if late is None else due + late,
        hard=a.kind.value in w.hard,
    )


def enzyme_window(added_s: float, enzyme_time_min: float, w: WindowParams) -> Window:
    """Neutralise no sooner than the enzyme time, and no later than its maximum."""
    due = added_s + enzyme_time_min * 60
    return Window(
        kind="enzyme",
        label="neutralise the enzyme",
        due_s=due,
        closes_s=due + w.enzyme_over_min * 60,
        hard="enzyme" in w.hard,
    )


def upcoming(v: CampaignView, p: CampaignParams, w: WindowParams) -> list[tuple[Action, Window]]:
    """What the rules will ask for next if nothing else happens: the next image and feed.

    The scheduler plans these ahead (they are known days in advance); a passage or a
    harvest appears only when an image shows it, and is planned from then on.
    """
    out: list[tuple[Action, Window]] = []
    for kind, every, last in (
        (Kind.IMAGE, p.image_every_days, "last_imaged_s"),
        (Kind.FEED, p.feed_every_days, "last_fed_s"),
    ):
        dues = {x.plate: getattr(x, last) + every * DAY_S for x in v.plates}
        if not dues:
            continue
        first = min(dues.values())
        plates = sorted(x for x, t in dues.items() if t <= first + 1.0)
        late = _late_s(kind, w)
        out.append(
            (
                Action(kind=kind, plates=plates),
                Window(
                    kind=kind.value,
                    label=f"{kind.value} {','.join(plates)}",
                    due_s=first,
                    closes_s=None if late is None else first + late,
                    hard=kind.value in w.hard,
                ),
            )
        )
    return out
