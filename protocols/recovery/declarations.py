"""What each unit operation does when it is resumed after an interruption, step by step.

Every stage of every unit operation declares how it is recovered when the
controller stopped in it (a crash, a power cut, a device fault):

* ``REPEAT``: safe to do again from the start (an image, a count, a wait);
* ``SKIP``: done is done, never again (a decision already recorded);
* ``COMPENSATE``: finish what is missing, never more (fresh medium half added gets
  the other half; a vessel that got its enzyme gets no enzyme again);
* ``HOLD``: stop for the operator (what no device can settle, or a time window
  that closed).

and the time windows the biology imposes. The enzyme's and the incubator's are the
campaign's own (``protocols/campaign/windows.py``, which the scheduler plans with
and the audit checks): the enzyme is neutralised no later than its set time
(``enzyme_time_min``) plus ``enzyme_over_min`` after the last vessel of its plate
got it (each plate is an enzyme batch of its own, its journal keys the plate's), and a
plate stays out of the incubator at most ``max_out_of_incubator_min``. Declared
here: the longest a culture may sit under its wet residual without medium, and the
time within which a closed window is acted on once the controller is back. The
execution code
(``protocols/seeding.py``, ``media_exchange.py``, ``detachment.py``, ``passaging.py``,
``harvest.py``) marks each stage's units of work with these names, and
``docs/crash-recovery.md`` lists the table.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Policy(StrEnum):
    REPEAT = "repeat"
    SKIP = "skip"
    COMPENSATE = "compensate"
    HOLD = "hold"


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    policy: Policy
    adds: str | None = Field(default=None, description="the reagent this stage adds, once")
    recovery: str = Field(description="what is done on resume, and why")


class Windows(BaseModel):
    """Time limits of recovery that the campaign's windows do not already set, in minutes."""

    model_config = ConfigDict(extra="forbid")

    without_medium_max_min: float = Field(
        default=20.0,
        description="longest a monolayer may sit under its wet residual (medium or PBS "
        "drawn off) before fresh liquid must go on",
    )
    recovery_max_min: float = Field(
        default=5.0,
        description="stated recovery time: once the controller is back, a closed window is "
        "acted on (enzyme neutralised, plate returned) within this",
    )


class Declaration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: str
    stages: list[Stage]
    windows: Windows = Field(default_factory=Windows)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


WINDOWS = Windows()

_PLATES_BACK = Stage(
    name="return",
    policy=Policy.COMPENSATE,
    recovery="a culture plate found on the deck or on a transfer station is put back in "
    "the incubator; past the out-of-incubator window (windows.py), a deviation names its "
    "vessels",
)

SEEDING = Declaration(
    operation="seeding",
    stages=[
        Stage(
            name="load",
            policy=Policy.SKIP,
            recovery="the suspension loaded by the operator is not loaded again",
        ),
        Stage(
            name="medium",
            policy=Policy.COMPENSATE,
            adds="medium",
            recovery="each vessel gets the rest of its planned medium: what the journal and "
            "the liquid level say it has is not added again",
        ),
        Stage(
            name="cells",
            policy=Policy.COMPENSATE,
            adds="cell suspension",
            recovery="each vessel gets the rest of its planned suspension (a tip still "
            "holding it dispenses it first; a mixing stroke in the tip is the same "
            "suspension and counts toward it); a vessel that has its cells gets none again, "
            "and is recorded once. Mixing the tube before an aspirate is safe to repeat",
        ),
        _PLATES_BACK,
    ],
)

MEDIA_EXCHANGE = Declaration(
    operation="media_exchange",
    stages=[
        Stage(
            name="remove",
            policy=Policy.COMPENSATE,
            recovery="spent medium is drawn off down to the wet residual, from what the "
            "liquid level is now (never below it), with a tip of the well's own",
        ),
        Stage(
            name="add",
            policy=Policy.COMPENSATE,
            adds="medium",
            recovery="a vessel whose medium was drawn off gets its fresh medium at once "
            "(the rest of it, if part went in); past the without-medium window, a "
            "deviation names it",
        ),
        _PLATES_BACK,
    ],
)

DETACHMENT = Declaration(
    operation="detachment",
    stages=[
        Stage(
            name="drain",
            policy=Policy.COMPENSATE,
            recovery="medium drawn off down to the residual, from the liquid level now",
        ),
        Stage(
            name="pbs",
            policy=Policy.COMPENSATE,
            adds="pbs",
            recovery="the wash goes in once: the rest of it, never a second wash",
        ),
        Stage(
            name="wash_out",
            policy=Policy.COMPENSATE,
            recovery="the wash drawn off down to the residual, from the liquid level now",
        ),
        Stage(
            name="enzyme",
            policy=Policy.COMPENSATE,
            adds="enzyme",
            recovery="each plate is an enzyme batch of its own (drain, wash, enzyme, "
            "incubate, neutralise; then the next plate), its keys scoped by the plate "
            "(enzyme_first:<plate>, incubate:<plate>, enzyme_until:<plate>, "
            "enzyme_window:<plate>): plates neutralised before the interruption are not "
            "touched, plates not begun go on as usual. Enzyme is never added again to a "
            "vessel that had it (or may have had it: the liquid level decides). "
            "Interrupted with some vessels of a plate in enzyme and others without, the "
            "first are finished as a batch of their own before the rest get theirs: window "
            "open, the rest of their enzyme's time then neutralise; window closed, "
            "neutralise at once, quarantine, record the over-exposure naming them and hold "
            "for the operator before pooling. The rest then go on as usual",
        ),
        Stage(
            name="incubate",
            policy=Policy.COMPENSATE,
            recovery="a plate's enzyme acts for its time counted from the plate's last "
            "addition (the plate in the incubator): window open, the rest of the time (or "
            "none) then neutralise; window closed (past its time plus the overrun "
            "windows.py allows), neutralise at once, quarantine the plate's vessels, record "
            "the over-exposure naming them, and hold for the operator before pooling. The "
            "end time is kept once per plate (enzyme_until:<plate>). A resumed plate whose "
            "neutralisation, by the journal, started past its window (it closed in the "
            "seconds between the check and the neutralisation) is recorded the same way",
        ),
        Stage(
            name="neutralise",
            policy=Policy.COMPENSATE,
            adds="medium",
            recovery="each vessel gets the rest of its neutralising medium, once",
        ),
        Stage(
            name="pool",
            policy=Policy.COMPENSATE,
            recovery="what is left in each vessel goes to the pool (a tip holding some "
            "delivers it first); nothing is pooled twice. The first aspirate from a vessel "
            "resuspends its cells in the same command (an aspiration mix, whole or not at "
            "all), resumed too: cells settled meanwhile",
        ),
        Stage(
            name="count",
            policy=Policy.REPEAT,
            recovery="a count whose result was lost is taken again from the pool",
        ),
    ],
)

PASSAGING = Declaration(
    operation="passaging",
    stages=[
        Stage(
            name="image",
            policy=Policy.REPEAT,
            recovery="imaged again if the decision to passage was not recorded; a recorded "
            "decision is kept (SKIP)",
        ),
        *DETACHMENT.stages,
        Stage(
            name="dilute",
            policy=Policy.COMPENSATE,
            adds="medium",
            recovery="the dilution the count asked for (decided once, kept) goes into the "
            "pool once: the rest of it; the pool is mixed again (safe to repeat). A pool "
            "that cannot be seeded stays in its tube with one deviation",
        ),
        Stage(
            name="children",
            policy=Policy.COMPENSATE,
            recovery="the children planned from the count are kept; seeding them resumes "
            "as a seeding does",
        ),
        _PLATES_BACK,
    ],
)

HARVEST = Declaration(operation="harvest", stages=[*DETACHMENT.stages])

IMAGING = Declaration(
    operation="image",
    stages=[
        Stage(
            name="image",
            policy=Policy.REPEAT,
            recovery="a plate whose confluence was not recorded is imaged again",
        ),
        _PLATES_BACK,
    ],
)

HOUSEKEEPING = Declaration(
    operation="housekeeping",
    stages=[
        Stage(
            name="chores",
            policy=Policy.COMPENSATE,
            recovery="what is still due (from the model after the journal) is done; what was "
            "done is not done again",
        )
    ],
)

DECLARATIONS = {
    d.operation: d for d in (SEEDING, MEDIA_EXCHANGE, PASSAGING, HARVEST, IMAGING, HOUSEKEEPING)
}
