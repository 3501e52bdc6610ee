"""How long each campaign operation keeps which device busy, measured from dry-runs.

The scheduler needs each operation's expected device busy time. It is not guessed:
``measure`` runs the campaign engine's own operations on the simulated workcell
(seed, image, feed, passage, harvest, with one and with two plates) and cuts each
into *segments* at the points where the protocol leaves the devices free (the
detachment enzyme incubating, ``Workcell.devices_free_for``). A segment's duration
is the simulated time it took; its devices are the ones that acted in it, as the
simulated lab's action log says. ``fit`` turns the samples into a fixed part plus
a part per plate (per destination plate after a passage's enzyme).

``python -m protocols.campaign.profiles`` measures and writes ``durations.json``
beside this module, which the scheduler reads; ``tests/test_scheduler.py`` measures
again and checks that the stored values still match.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols import seeding
from protocols.campaign.engine import DAY_S, Action, CampaignEngine, CampaignParams, Kind
from workcell.assembly.config import DEFAULT_CONFIG, WorkcellConfig, parse_config
from workcell.assembly.session import open_session

PROFILES_FILE = Path(__file__).with_name("durations.json")


class Segment(BaseModel):
    """One stretch of an operation that holds its devices from start to end.

    ``fixed_s`` may be below zero: a harvest's first segment is one plate's wash and
    enzyme plus, for each further plate, the previous plate's incubation and
    neutralisation and its own wash and enzyme (each plate is an enzyme batch of its
    own), so its line crosses zero above one plate. One plate's time is never below zero.
    """

    model_config = ConfigDict(extra="forbid")

    devices: list[str]
    fixed_s: float
    per_plate_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _one_plate_takes_time(self) -> Segment:
        if self.fixed_s + self.per_plate_s < 0:
            raise ValueError(f"one plate would take {self.fixed_s + self.per_plate_s:g} s")
        return self

    def duration_s(self, plates: int) -> float:
        return self.fixed_s + self.per_plate_s * max(1, plates)


class OperationProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    segments: list[Segment]
    gap: str | None = Field(default=None, description="what happens between the segments")
    scales_with: list[str] = Field(
        default_factory=list, description="per segment: 'plates' or 'destinations'"
    )


class Profiles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: str = Field(description="the workcell the dry-runs ran on")
    operations: dict[str, OperationProfile]

    def durations(self, a: Action) -> list[tuple[list[str], float]]:
        """The segments of an action: devices held and expected seconds."""
        prof = self.operations[a.kind.value]
        out = []
        for seg, scale in zip(prof.segments, prof.scales_with, strict=True):
            n = len(a.destinations) if scale == "destinations" else len(a.plates)
            out.append((seg.devices, seg.duration_s(n)))
        return out


class Sample(BaseModel):
    kind: str
    plates: int
    destinations: int
    segments: list[tuple[list[str], float]]


def floor_config(name: str = "floor-workcell", **clock: Any) -> WorkcellConfig:
    """The embedded simulated workcell with one imaging field per well (the campaign's
    daily images are then quick to dry-run); the one the profiles are measured on."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["name"] = name
    data["devices"]["imager"]["fields_per_well"] = 1
    data["clock"].update(clock)
    return parse_config(data)


# (kind, plates, destinations) in the order the dry-run does them
CASES: list[tuple[Kind, list[str], list[str]]] = [
    (Kind.SEED, ["plate_1"], []),
    (Kind.SEED, ["plate_2", "plate_4"], []),
    (Kind.IMAGE, ["plate_1"], []),
    (Kind.IMAGE, ["plate_2", "plate_4"], []),
    (Kind.FEED, ["plate_1"], []),
    (Kind.FEED, ["plate_2", "plate_4"], []),
    (Kind.PASSAGE, ["plate_1"], ["plate_5"]),
    (Kind.PASSAGE, ["plate_2"], ["plate_6", "plate_7"]),
    (Kind.HARVEST, ["plate_4"], []),
    (Kind.HARVEST, ["plate_5", "plate_6"], []),
]


async def measure(config: WorkcellConfig | None = None, grow_days: float = 7.0) -> list[Sample]:
    """Run each case once on a fresh simulated workcell and cut it into segments."""
    cfg = config or floor_config()
    params = CampaignParams(
        suspension=seeding.Suspension(volume_mL=40.0, viable_cells_per_mL=5.0e5),
        confluence_threshold_percent=10,
    )
    samples: list[Sample] = []
    async with open_session(cfg, None) as session:
        engine = CampaignEngine(session, params, _approve)
        wc = session.wc
        cuts: list[float] = []

        async def gap(seconds: float, why: str) -> None:
            cuts.append(wc.clock.elapsed())
            await wc.clock.sleep(seconds)
            cuts.append(wc.clock.elapsed())

        for kind, plates, dests in CASES:
            if kind is Kind.IMAGE and samples[-1].kind != "image":
                await wc.clock.sleep(grow_days * DAY_S)  # let the seeded plates grow
            if kind is Kind.HARVEST and samples[-1].kind == "passage":
                await wc.clock.sleep(DAY_S)  # let the children attach: fresh ones float
            session.wc.devices_free_hook = gap
            cuts.clear()
            t0, n0 = wc.clock.elapsed(), len(wc.log)
            await engine.do(Action(kind=kind, plates=plates, destinations=dests))
            t1 = wc.clock.elapsed()
            bounds = [t0, *cuts, t1]
            spans = [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2)]
            now = wc.clock.now()
            acts = [((x.time - now).total_seconds() + t1, x.device) for x in wc.log.actions[n0:]]
            segs = []
            for a, b in spans:
                # the instruments (not the operator's hands, nor the arm's); an incubator
                # among them is its plate mover and transfer station (where the imager
                # reads): held by a segment that moves plates, so one plate moves at a time
                used = sorted(
                    {d for t, d in acts if a - 1e-6 <= t <= b + 1e-6 and d in cfg.devices}
                )
                segs.append((used, round(b - a, 1)))
            samples.append(
                Sample(kind=kind.value, plates=len(plates), destinations=len(dests), segments=segs)
            )
    return samples


async def _approve(action: Action) -> Any:
    raise RuntimeError("the measurement needs no operator")


def fit(samples: list[Sample], config: str) -> Profiles:
    """Fixed + per-plate seconds per segment, from the one- and two-plate samples."""
    ops: dict[str, OperationProfile] = {}
    for kind in dict.fromkeys(s.kind for s in samples):
        mine = [s for s in samples if s.kind == kind]
        nseg = len(mine[0].segments)
        scales = ["plates"] * nseg
        if kind == Kind.PASSAGE.value:
            scales = ["plates", "destinations"]
        segs = []
        for i in range(nseg):
            xs = [float(s.destinations if scales[i] == "destinations" else s.plates) for s in mine]
            ys = [s.segments[i][1] for s in mine]
            devices = sorted({d for s in mine for d in s.segments[i][0]})
            if len(set(xs)) < 2:
                per, fixed = ys[0] / xs[0], 0.0
            else:
                per = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
                fixed = ys[0] - per * xs[0]
            segs.append(
                Segment(devices=devices, fixed_s=round(fixed, 1), per_plate_s=round(per, 1))
            )
        ops[kind] = OperationProfile(
            kind=kind,
            segments=segs,
            gap="enzyme" if nseg > 1 else None,
            scales_with=scales,
        )
    return Profiles(config=config, operations=ops)


def load_profiles(path: Path = PROFILES_FILE) -> Profiles:
    return Profiles.model_validate_json(path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=PROFILES_FILE)
    args = ap.parse_args()
    cfg = floor_config()
    samples = asyncio.run(measure(cfg))
    for s in samples:
        print(s.kind, s.plates, s.destinations, s.segments)
    prof = fit(samples, cfg.name)
    args.out.write_text(json.dumps(prof.model_dump(mode="json"), indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
