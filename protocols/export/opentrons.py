"""Export a unit operation as an Opentrons protocol file (OT-2, Python API 2.20).

The protocol is first dry-run on the simulated workcell; its liquid-handling trace
(every tip, aspirate and dispense, with volumes, flow rates, heights and offsets,
and the waits) is then written out as a plain Opentrons ``run(protocol)`` function
with Opentrons' own labware definitions, which ``opentrons_simulate`` accepts and a
lab uploads with the Opentrons App. So the OT-2 moves exactly the volumes the
dry-run checked, the way the dry-run moved them:

* each tip's work goes to the pipette whose volume range covers every volume that
  tip moves, chosen from the OT-2's pipettes the config names (``opentrons:``;
  by default a P300 and a P1000 GEN2); a volume no configured pipette covers is
  refused, never sent through a pipette below its minimum;
* spent medium is taken near the well wall, low and slowly; waste is discarded
  from the top of the waste reservoir with a blow-out, and the tip is dropped
  before it could touch another culture;
* a suspension is mixed before each aspirate (``mix``; the dry-run's aspiration mix);
* every tip's work is introduced by a ``protocol.comment``; the reservoirs, tubes
  and cultures are declared as liquids (``define_liquid``/``load_liquid``) so the
  App shows what to load where; pauses name the deck slot.

Steps the OT-2 cannot do itself become operator pauses: moving a plate into or
out of the incubator, and counting a sample on the cell counter. A passage is
exported up to the count of the pool: how many vessels to seed depends on that
count, so the second half is a seeding export made from the counted pool.

The ``opentrons`` package cannot share this environment with Prefect (see
docs/architecture.md, "Dependencies"): the exporter only needs Opentrons' labware
definitions, from ``opentrons-shared-data``; the file is simulated in a separate
environment. The file written is checked to parse as Python before it is returned.
"""

from __future__ import annotations

import ast
import keyword
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from opentrons_shared_data.labware import load_definition
from pydantic import BaseModel
from pylabrobot.resources import Plate, Resource, Trough, Tube
from pylabrobot.resources.well import Well

from protocols.dry_run import prepare_cultures
from protocols.registry import PROTOCOLS
from workcell import ot_labware
from workcell.actions import Action
from workcell.assembly.config import OT2Base, WorkcellConfig
from workcell.assembly.workcell import Workcell
from workcell.errors import WorkcellError

API_LEVEL = "2.20"
OT2_SLOTS = 11
TUBE_RACK = "opentrons_6_tuberack_falcon_50ml_conical"
# PyLabRobot model -> Opentrons load name of the same kind of labware
OT_LABWARE = {
    "cor_cos_6_wellplate_16800uL_Fb": "corning_6_wellplate_16.8ml_flat",
    "cor_cos_24_wellplate_3470uL_Fb": "corning_24_wellplate_3.4ml_flat",
    "hamilton_1_trough_200mL_Vb": "nest_1_reservoir_195ml",
    "hamilton_1_trough_60mL_Vb": "nest_1_reservoir_195ml",
    "cor_falcon_tube_50mL_Vb": TUBE_RACK,
}
# each pipette's Opentrons tip rack (ot_labware.TIP_VOLUMES says which tips it takes)
TIP_RACKS = {
    "p20_single_gen2": "opentrons_96_tiprack_20ul",
    "p300_single_gen2": "opentrons_96_tiprack_300ul",
    "p1000_single_gen2": "opentrons_96_tiprack_1000ul",
}
WAIT_AS_DELAY_S = 60.0
TUBE_POSITIONS = ["A1", "A2", "A3", "B1", "B2", "B3"]
SLOT_MARK = "<<slot>>"  # deck labels are plain words: this never occurs in one
WASTE_TOP_MM = -5.0  # discard this far below the waste reservoir's rim, then blow out
COLOURS = {
    "medium": "#E8B33C",
    "pbs": "#5DA9E9",
    "enzyme": "#9B5DE5",
    "suspension": "#F15BB5",
    "culture": "#00BB77",
    "pool": "#FF7F11",
}


@dataclass
class Layout:
    """Where each PyLabRobot container lives on the OT-2 deck."""

    slots: dict[str, tuple[int, str]] = field(default_factory=dict)  # label -> slot, load name
    tubes: dict[str, str] = field(default_factory=dict)  # tube name -> rack position
    racks: int = 0  # tip racks take the first slots

    def place(self, label: str, load_name: str) -> None:
        if label not in self.slots:
            self.slots[label] = (len(self.slots) + 1, load_name)

    def slot(self, label: str) -> int:
        return self.slots[label][0] + self.racks


class ExportResult(BaseModel):
    protocol: str
    text: str
    volumes_uL: dict[str, float]  # "aspirate A1 of plate_1" -> total uL, as the OT run logs it
    tips: int
    pipettes: dict[str, str]  # mount -> pipette used


@dataclass
class Segment:
    """The work of one tip: from picking it up to dropping it."""

    actions: list[Action]

    def volumes(self) -> list[float]:
        return [
            float(a.detail["volume_uL"])
            for a in self.actions
            if a.action in ("aspirate", "dispense")
        ]


def _variable(label: str, taken: set[str]) -> str:
    """A Python name for a deck label (labels may hold '-', start with a digit, ...)."""
    name = re.sub(r"\W", "_", label)
    if not name or name[0].isdigit() or keyword.iskeyword(name) or name in ("protocol", "types"):
        name = f"lw_{name}"
    base, i = name, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _location(wc: Workcell, name: str, layout: Layout) -> tuple[str, str]:
    """(labware label, well) on the OT-2 for a PyLabRobot container name."""
    res: Resource = wc.resource(name)
    if isinstance(res, Well):
        plate = res.parent
        assert isinstance(plate, Plate)
        _check_known(plate.model or "", plate.name)
        layout.place(plate.name, _load_name(plate.model or ""))
        return plate.name, res.get_identifier()
    if isinstance(res, Tube):
        if res.name not in layout.tubes:
            if len(layout.tubes) == len(TUBE_POSITIONS):
                raise WorkcellError("more tubes than the OT-2 tube rack holds")
            layout.tubes[res.name] = TUBE_POSITIONS[len(layout.tubes)]
        layout.place("tubes", TUBE_RACK)
        return "tubes", layout.tubes[res.name]
    if isinstance(res, Trough):
        _check_known(res.model or "", res.name)
        layout.place(res.name, _load_name(res.model or ""))
        return res.name, "A1"
    raise WorkcellError(f"{name!r} ({type(res).__name__}) has no Opentrons counterpart")


def _load_name(model: str) -> str:
    """The Opentrons load name: mapped from PyLabRobot's, or already one (an OT-2 config)."""
    return OT_LABWARE.get(model, model)


def _check_known(model: str, name: str) -> None:
    if model not in OT_LABWARE and ot_labware.kind(model) is None:
        raise WorkcellError(f"{name!r} is {model or 'unknown labware'}: no Opentrons equivalent")


def _segments(trace: list[Action]) -> list[Segment | Action]:
    """The trace as tip segments, with the actions between them (moves, counts) kept."""
    out: list[Segment | Action] = []
    current: Segment | None = None
    for a in trace:
        if a.action == "pick_up_tip":
            current = Segment([a])
            out.append(current)
        elif current is not None:
            current.actions.append(a)
            if a.action == "drop_tip":
                current = None
        else:
            out.append(a)
    return out


def choose_pipette(volumes: list[float], pipettes: dict[str, str]) -> str | None:
    """The mount whose pipette covers every volume, the smallest such (most accurate)."""
    ranges = {mount: ot_labware.pipette_range_uL(name) for mount, name in pipettes.items()}
    fits = [
        (high, mount)
        for mount, (low, high) in ranges.items()
        if all(low - 1e-6 <= v <= high + 1e-6 for v in volumes)
    ]
    return min(fits)[1] if fits else None


def _role_of(wc: Workcell, name: str) -> str:
    reagent = wc.reagents.get(name)
    if reagent is not None:
        return reagent.value
    res = wc.resource(name)
    if isinstance(res, Well):
        return "culture"
    if isinstance(res, Tube):
        return "pool" if "pool" in name else "suspension"
    return "waste"


def _describe(wc: Workcell, seg: Segment, name_of: Callable[[str], str]) -> str:
    """A comment for one tip's work: what it takes from where to where."""
    sources = list(dict.fromkeys(a.detail["source"] for a in seg.actions if a.action == "aspirate"))
    targets = list(dict.fromkeys(a.detail["target"] for a in seg.actions if a.action == "dispense"))
    mixed = [s for s in sources if s in targets]
    sources = [s for s in sources if s not in mixed] or mixed
    targets = [t for t in targets if t not in mixed] or mixed
    roles = {_role_of(wc, s) for s in sources}
    to_wall = any(
        a.action == "dispense" and any(a.detail.get("offset_mm", [0, 0, 0])) for a in seg.actions
    )
    if "waste" in {_role_of(wc, t) for t in targets}:
        what = "spent liquid off near the wall, slowly; discarded from the top of the waste"
    elif roles & {"medium", "pbs", "enzyme"}:
        what = "/".join(sorted(roles)) + (" down the well wall" if to_wall else "")
    elif roles <= {"suspension", "pool"} and mixed:
        what = "cell suspension, mixed before each aspirate"
    elif roles == {"culture"}:
        what = "resuspend the detached cells and pool them"
    else:
        what = "transfer"
    src, dst = _names([name_of(n) for n in sources]), _names([name_of(n) for n in targets])
    return f"{what}: {src} -> {dst}"


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:6])
    return shown + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def _quote(text: str) -> str:
    return repr(text)


class _Writer:
    """Turns the trace into the body of ``run(protocol)``."""

    def __init__(self, wc: Workcell, layout: Layout, pipettes: dict[str, str]) -> None:
        self.wc = wc
        self.layout = layout
        self.pipettes = pipettes
        self.vars: dict[str, str] = {}
        self.lines: list[str] = []
        self.volumes: dict[str, float] = defaultdict(float)
        self.used_mounts: set[str] = set()
        self.tips: dict[str, int] = defaultdict(int)

    def loc(self, name: str) -> tuple[str, str, str]:
        label, well = _location(self.wc, name, self.layout)
        return label, well, f"{self.vars[label]}[{well!r}]"

    def ot_name(self, name: str) -> str:
        """How the OT-2 deck names a container: 'plate_1 A1', 'medium', 'tubes A1 (pool_tube)'."""
        label, well = _location(self.wc, name, self.layout)
        if label == "tubes":
            return f"tube {well} ({name})"
        res = self.wc.resource(name)
        return f"{label} {well}" if isinstance(res, Well) else label

    def place_all(self, trace: list[Action]) -> None:
        """First pass: every container the trace touches gets its deck slot."""
        for a in trace:
            if a.action in ("aspirate", "dispense"):
                _location(
                    self.wc, a.detail["source" if a.action == "aspirate" else "target"], self.layout
                )
            elif a.action in ("take_in_plate", "fetch_plate") and a.detail.get("plate"):
                plate = self.wc.plate(a.detail["plate"])
                _check_known(plate.model or "", plate.name)
                self.layout.place(plate.name, _load_name(plate.model or ""))
        taken: set[str] = {"protocol", "types", "tips", *(f"p{m}" for m in ("left", "right"))}
        for label in self.layout.slots:
            self.vars[label] = _variable(label, taken)

    def slot_text(self, plate: str) -> str:
        """A placeholder for the plate's slot, filled in once the tip racks are counted."""
        return f"slot {SLOT_MARK}{plate}{SLOT_MARK}" if plate in self.layout.slots else "its slot"

    def fill_slots(self, lines: list[str]) -> list[str]:
        def slot(m: re.Match[str]) -> str:
            return str(self.layout.slot(m.group(1)))

        pattern = re.compile(f"{SLOT_MARK}(.*?){SLOT_MARK}")
        return [pattern.sub(slot, line) for line in lines]

    def write(self, parts: list[Segment | Action]) -> None:
        previous = None
        for part in parts:
            first = part.actions[0] if isinstance(part, Segment) else part
            if previous is not None:
                idle = (first.time - previous).total_seconds()
                if idle >= WAIT_AS_DELAY_S:
                    self.lines.append(
                        f"protocol.comment('wait {idle / 60:.0f} min (as the dry-run did)')"
                    )
                    self.lines.append(f"protocol.delay(seconds={idle:.0f})")
            if isinstance(part, Segment):
                self.segment(part)
                previous = part.actions[-1].time
            else:
                self.other(part)
                previous = part.time

    def other(self, a: Action) -> None:
        d = a.detail
        if a.action == "take_in_plate":
            plate = d.get("plate", "the plate")
            text = f"Take {plate} from {self.slot_text(plate)} into the incubator (37 C)."
            self.lines.append(f"protocol.pause({_quote(text)})")
        elif a.action == "fetch_plate":
            plate = d.get("plate", "the plate")
            text = f"Bring {plate} from the incubator to {self.slot_text(plate)}."
            self.lines.append(f"protocol.pause({_quote(text)})")
        elif a.action == "count":
            pos = self.layout.tubes.get(d["sample"])
            where = f" (tube rack {pos})" if pos else ""
            text = f"Count a sample of {d['sample']}{where} on the cell counter."
            self.lines.append(f"protocol.pause({_quote(text)})")

    def segment(self, seg: Segment) -> None:
        mount = choose_pipette(seg.volumes(), self.pipettes)
        if mount is None:
            vols = sorted(seg.volumes())
            have = ", ".join(
                "{} ({:g}-{:g} uL)".format(n, *ot_labware.pipette_range_uL(n))
                for n in self.pipettes.values()
            )
            raise WorkcellError(
                f"no OT-2 pipette of this config covers {vols[0]:g}-{vols[-1]:g} uL with one tip "
                f"({_describe(self.wc, seg, self.ot_name)}); configured: {have}. Name a pipette "
                "that covers "
                "it under opentrons.pipettes in the config"
            )
        p = f"p{mount}"
        self.used_mounts.add(mount)
        self.tips[mount] += 1
        self.lines.append(f"protocol.comment({_quote(_describe(self.wc, seg, self.ot_name))})")
        acts = [
            a
            for a in seg.actions
            if a.action in ("pick_up_tip", "drop_tip", "aspirate", "dispense")
        ]
        i = 0
        while i < len(acts):
            a = acts[i]
            if a.action == "pick_up_tip":
                self.lines.append(f"{p}.pick_up_tip()")
            elif a.action == "drop_tip":
                self.lines.append(f"{p}.drop_tip()")
            elif a.action == "aspirate":
                n = self._mix_cycles(acts, i)
                if n:
                    self.mix(p, acts[i], n)
                    i += 2 * n
                    continue
                self.aspirate(p, a)
            else:
                self.dispense(p, a)
            i += 1

    @staticmethod
    def _mix_cycles(acts: list[Action], i: int) -> int:
        """How many aspirate/dispense pairs in one container, of one volume, start at ``i``."""
        n = 0
        first = acts[i].detail
        while i + 1 < len(acts):
            a, b = acts[i], acts[i + 1]
            if not (
                a.action == "aspirate"
                and b.action == "dispense"
                and a.detail["source"] == b.detail["target"] == first["source"]
                and a.detail["volume_uL"] == b.detail["volume_uL"] == first["volume_uL"]
                and not any(a.detail.get("offset_mm", [0, 0, 0]))
            ):
                break
            n += 1
            i += 2
        return n

    def mix(self, p: str, a: Action, cycles: int, volume_uL: float | None = None) -> None:
        label, well, loc = self.loc(a.detail["source"])
        vol = round(float(a.detail["volume_uL"] if volume_uL is None else volume_uL), 2)
        for verb in ("aspirate", "dispense"):
            self.volumes[f"{verb} {well} of {label}"] += vol * cycles
        self.lines.append(f"{p}.mix({cycles}, {vol}, {loc})")

    def aspirate(self, p: str, a: Action) -> None:
        mixed = a.detail.get("mix")
        if mixed:  # an aspiration mix: the strokes first, where it then draws from
            self.mix(p, a, int(mixed["cycles"]), float(mixed["volume_uL"]))
        label, well, loc = self.loc(a.detail["source"])
        vol = round(float(a.detail["volume_uL"]), 2)
        self.volumes[f"aspirate {well} of {label}"] += vol
        x, _, z = a.detail.get("offset_mm", [0, 0, 0])
        flow = a.detail.get("flow_uL_per_s")
        if x or z:
            loc = f"{loc}.bottom({z:.1f}).move(types.Point(x={x:.1f}))"
        rate = f", rate={flow:.0f} / {p}.flow_rate.aspirate" if flow else ""
        self.lines.append(f"{p}.aspirate({vol}, {loc}{rate})")

    def dispense(self, p: str, a: Action) -> None:
        label, well, loc = self.loc(a.detail["target"])
        vol = round(float(a.detail["volume_uL"]), 2)
        self.volumes[f"dispense {well} of {label}"] += vol
        x, _, z = a.detail.get("offset_mm", [0, 0, 0])
        flow = a.detail.get("flow_uL_per_s")
        target = self.wc.resource(a.detail["target"])
        if not isinstance(target, Well) and z > 0:  # discard from above the liquid
            self.lines.append(f"{p}.dispense({vol}, {loc}.top({WASTE_TOP_MM:.0f}))")
            self.lines.append(f"{p}.blow_out()")
            return
        if x or z:
            loc = f"{loc}.bottom({z:.1f}).move(types.Point(x={x:.1f}))"
        rate = f", rate={flow:.0f} / {p}.flow_rate.dispense" if flow else ""
        self.lines.append(f"{p}.dispense({vol}, {loc}{rate})")


def _start_volumes(wc: Workcell, trace: list[Action]) -> dict[str, float]:
    """What each container the trace touches held before it: now, less what came in, plus
    what went out."""
    out: dict[str, float] = {}
    for a in trace:
        if a.action in ("aspirate", "dispense"):
            name = a.detail["source" if a.action == "aspirate" else "target"]
            out.setdefault(name, wc.container(name).tracker.get_used_volume())
    for a in trace:
        if a.action == "aspirate":
            out[a.detail["source"]] += float(a.detail["volume_uL"])
        elif a.action == "dispense":
            out[a.detail["target"]] -= float(a.detail["volume_uL"])
    return {n: v for n, v in out.items() if v > 0.5}


def _liquids(w: _Writer, start: dict[str, float]) -> list[str]:
    lines: list[str] = []
    roles: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for name, volume in start.items():
        roles[_role_of(w.wc, name)].append((name, volume))
    texts = {
        "medium": ("Medium", "complete culture medium, pre-warmed"),
        "pbs": ("PBS", "wash buffer, without Ca/Mg"),
        "enzyme": ("Enzyme", "detachment enzyme, pre-warmed"),
        "suspension": ("Cell suspension", "counted MSC suspension"),
        "pool": ("Pooled cells", "pooled, counted MSC suspension"),
        "culture": ("Culture", "MSC monolayer in medium"),
    }
    for role, items in roles.items():
        if role not in texts:
            continue
        title, description = texts[role]
        var = f"liquid_{role}"
        lines.append(
            f"{var} = protocol.define_liquid({_quote(title)}, description={_quote(description)}, "
            f"display_color={COLOURS[role]!r})"
        )
        for name, volume in items:
            _, _, loc = w.loc(name)
            lines.append(f"{loc}.load_liquid(liquid={var}, volume={min(volume, 1e6):.1f})")
    return lines


def _header(protocol: str, params: BaseModel, w: _Writer) -> tuple[list[str], list[str]]:
    layout = w.layout
    mounts = sorted(w.used_mounts)
    racks_per = {m: max(1, math.ceil(w.tips[m] / 96)) for m in mounts}
    layout.racks = sum(racks_per.values())
    used = layout.racks + len(layout.slots)
    if used > OT2_SLOTS:
        raise WorkcellError(
            f"the protocol needs {used} deck slots ({layout.racks} tip racks, "
            f"{', '.join(layout.slots)}), more than the OT-2's {OT2_SLOTS} deck slots; "
            "split it into smaller runs"
        )
    out = [
        f'"""MSC {protocol} for the OT-2, exported by `workcell export-opentrons`."""',
        "",
        "# Parameters of the dry-run this protocol was written from:",
        *(f"#   {line}" for line in params.model_dump_json(indent=2).splitlines()),
        "",
        "from opentrons import types",
        "",
        f'metadata = {{"protocolName": "MSC {protocol}", "source": "msc-workcell"}}',
        f'requirements = {{"robotType": "OT-2", "apiLevel": "{API_LEVEL}"}}',
        "",
        "",
        "def run(protocol):",
    ]
    body: list[str] = []
    slot = 1
    for m in mounts:
        name = w.pipettes[m]
        rack = TIP_RACKS[name]
        slots = list(range(slot, slot + racks_per[m]))
        slot += racks_per[m]
        body.append(f"tips_{m} = [protocol.load_labware({rack!r}, s) for s in {slots}]")
        body.append(f"p{m} = protocol.load_instrument({name!r}, {m!r}, tip_racks=tips_{m})")
    for label, (_, load_name) in layout.slots.items():
        body.append(
            f"{w.vars[label]} = protocol.load_labware({load_name!r}, {layout.slot(label)}, "
            f"label={_quote(label)})"
        )
    for label, position in layout.tubes.items():
        body.append(f"# tube {position} of the rack: {label}")
    return out, body


async def export(
    config: WorkcellConfig, protocol: str, params: BaseModel, culture_days: float = 7.0
) -> ExportResult:
    """Dry-run the protocol and write its trace as an Opentrons protocol."""
    from workcell.assembly.build import build_workcell

    if not config.simulated:
        raise WorkcellError("export-opentrons dry-runs the protocol: use a simulated config")
    entry = PROTOCOLS[protocol]
    pipettes = export_pipettes(config)
    for load_name in {*OT_LABWARE.values(), *(TIP_RACKS[p] for p in pipettes.values())}:
        load_definition(load_name, 1)  # every Opentrons definition we name must exist
    wc = build_workcell(_one_channel(config))
    async with wc:
        if protocol != "seeding":
            await prepare_cultures(wc, entry.plates(params), culture_days)
        n0 = len(wc.log)
        await entry.run(wc, params)
        trace = wc.log.actions[n0:]
        if protocol == "passaging":  # the rest depends on the count: a seeding export
            counts = [i for i, a in enumerate(trace) if a.action == "count"]
            trace = trace[: counts[0] + 1] if counts else trace
        layout = Layout()
        w = _Writer(wc, layout, pipettes)
        w.place_all(trace)
        w.write(_segments(trace))
        start = _start_volumes(wc, trace)
        head, body = _header(protocol, params, w)
        liquids = _liquids(w, start)
    lines = [*body, *liquids, *w.fill_slots(w.lines)] or ["pass"]
    text = "\n".join([*head, *(f"    {line}" for line in lines)]) + "\n"
    check_parses(text)
    return ExportResult(
        protocol=protocol,
        text=text,
        volumes_uL=dict(w.volumes),
        tips=sum(w.tips.values()),
        pipettes={m: pipettes[m] for m in sorted(w.used_mounts)},
    )


def _one_channel(config: WorkcellConfig) -> WorkcellConfig:
    """The config the export dry-runs on: a STAR's group of channels moves each tip's work
    on one channel, as the OT-2's single-channel pipettes will."""
    devices = {
        name: d.model_copy(update={"pipetting_channels": 1})
        if getattr(d, "pipetting_channels", 1) != 1
        else d
        for name, d in config.devices.items()
    }
    return config.model_copy(update={"devices": devices})


def export_pipettes(config: WorkcellConfig) -> dict[str, str]:
    """Mount -> pipette of the OT-2 exported for: an OT-2 workcell's own, or ``opentrons:``."""
    lh = next(d for d in config.devices.values() if d.kind == "liquid_handler")
    mounted = lh.pipettes if isinstance(lh, OT2Base) else config.opentrons.pipettes
    return dict(mounted.mounted())


def check_parses(text: str) -> None:
    """The exported file must be valid Python with a ``run(protocol)``; a fault otherwise."""
    try:
        tree = ast.parse(text)
        compile(tree, "<opentrons export>", "exec")
    except SyntaxError as err:
        raise RuntimeError(
            f"the exported protocol does not parse (line {err.lineno}): {err.msg}"
        ) from None
    if not any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body):
        raise RuntimeError("the exported protocol has no run(protocol) function")


def write(result: ExportResult, path: Path) -> None:
    check_parses(result.text)
    path.write_text(result.text, encoding="utf-8")
