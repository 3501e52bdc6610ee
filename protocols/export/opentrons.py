"""Export a unit operation as an Opentrons protocol file (OT-2, Python API 2.20).

The protocol is first dry-run on the simulated workcell; its liquid-handling trace
(every tip, aspirate and dispense, with volumes, flow rates and waits) is then
written out as a plain Opentrons ``run(protocol)`` function with Opentrons' own
labware definitions, which ``opentrons_simulate`` accepts and a lab uploads with
the Opentrons App. So the OT-2 moves exactly the volumes the dry-run checked.

Steps the OT-2 cannot do itself become operator pauses: moving a plate into or
out of the incubator, and counting a sample on the cell counter. A passage is
exported up to the count of the pool: how many vessels to seed depends on that
count, so the second half is a seeding export made from the counted pool.

The ``opentrons`` package cannot share this environment with Prefect (see
DEPENDENCIES.md): the exporter only needs Opentrons' labware definitions, from
``opentrons-shared-data``; the file is simulated in a separate environment.
"""

from __future__ import annotations

import math
from collections import defaultdict
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
from workcell.assembly.config import WorkcellConfig
from workcell.assembly.workcell import Workcell
from workcell.errors import WorkcellError

API_LEVEL = "2.20"
PIPETTE = "p1000_single_gen2"
OT2_SLOTS = 11
TUBE_RACK = "opentrons_6_tuberack_falcon_50ml_conical"
TIP_RACK = "opentrons_96_tiprack_1000ul"
# PyLabRobot model -> Opentrons load name of the same kind of labware
OT_LABWARE = {
    "cor_cos_6_wellplate_16800uL_Fb": "corning_6_wellplate_16.8ml_flat",
    "cor_cos_24_wellplate_3470uL_Fb": "corning_24_wellplate_3.4ml_flat",
    "hamilton_1_trough_200mL_Vb": "nest_1_reservoir_195ml",
    "hamilton_1_trough_60mL_Vb": "nest_1_reservoir_195ml",
    "cor_falcon_tube_50mL_Vb": TUBE_RACK,
}
WAIT_AS_DELAY_S = 60.0
TUBE_POSITIONS = ["A1", "A2", "A3", "B1", "B2", "B3"]


@dataclass
class Layout:
    """Where each PyLabRobot container lives on the OT-2 deck."""

    slots: dict[str, tuple[int, str]] = field(default_factory=dict)  # label -> slot, load name
    tubes: dict[str, str] = field(default_factory=dict)  # tube name -> rack position

    def place(self, label: str, load_name: str) -> None:
        if label not in self.slots:
            self.slots[label] = (len(self.slots) + 1, load_name)


class ExportResult(BaseModel):
    protocol: str
    text: str
    volumes_uL: dict[str, float]  # "aspirate A1 of plate_1" -> total uL, as the OT run logs it
    tips: int


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


def _trace_to_code(wc: Workcell, trace: list[Action], layout: Layout) -> tuple[list[str], dict]:
    lines: list[str] = []
    volumes: dict[str, float] = defaultdict(float)
    previous = trace[0].time if trace else None
    for a in trace:
        assert previous is not None
        idle = (a.time - previous).total_seconds()
        if idle >= WAIT_AS_DELAY_S:
            lines.append(f"protocol.delay(seconds={idle:.0f})")
        previous = a.time
        d = a.detail
        if a.action == "pick_up_tip":
            lines.append("p1000.pick_up_tip()")
        elif a.action == "drop_tip":
            lines.append("p1000.drop_tip()")
        elif a.action in ("aspirate", "dispense"):
            name = d["source"] if a.action == "aspirate" else d["target"]
            label, well = _location(wc, name, layout)
            vol = round(float(d["volume_uL"]), 2)
            volumes[f"{a.action} {well} of {label}"] += vol
            loc = f"{label}[{well!r}]"
            if a.action == "aspirate":
                lines.append(f"p1000.aspirate({vol}, {loc})")
            else:
                flow = d.get("flow_uL_per_s")
                x = d.get("offset_mm", [0, 0, 0])[0]
                if flow:
                    loc = f"{loc}.bottom(3).move(types.Point(x={x:.1f}))"
                    lines.append(
                        f"p1000.dispense({vol}, {loc}, rate={flow:.0f} / p1000.flow_rate.dispense)"
                    )
                else:
                    lines.append(f"p1000.dispense({vol}, {loc})")
        elif a.action == "take_in_plate":
            lines.append(f'protocol.pause("Put {d["plate"]} into the incubator (37 C).")')
        elif a.action == "fetch_plate":
            lines.append(f'protocol.pause("Bring {d["plate"]} from the incubator to its slot.")')
        elif a.action == "capture":
            pass  # imaging happens on the imager, outside the OT-2
        elif a.action == "count":
            lines.append(f'protocol.pause("Count a sample of {d["sample"]} on the cell counter.")')
    return lines, dict(volumes)


def _header(
    protocol: str, params: BaseModel, layout: Layout, tips: int
) -> tuple[list[str], list[str]]:
    racks = max(1, math.ceil(tips / 96))
    out = [
        f'"""{protocol} for the OT-2, exported by `workcell export-opentrons`.',
        "",
        "Parameters:",
        *(f"    {line}" for line in params.model_dump_json(indent=2).splitlines()),
        '"""',
        "",
        "from opentrons import types",
        "",
        f'metadata = {{"protocolName": "MSC {protocol}", "source": "msc-workcell"}}',
        f'requirements = {{"robotType": "OT-2", "apiLevel": "{API_LEVEL}"}}',
        "",
        "",
        "def run(protocol):",
    ]
    body = [
        f"tips = [protocol.load_labware({TIP_RACK!r}, slot) "
        f"for slot in {list(range(1, racks + 1))}]",
        f'p1000 = protocol.load_instrument("{PIPETTE}", "right", tip_racks=tips)',
    ]
    for label, (slot, load_name) in layout.slots.items():
        body.append(
            f'{label} = protocol.load_labware("{load_name}", {slot + racks}, label="{label}")'
        )
    if racks + len(layout.slots) > OT2_SLOTS:
        raise WorkcellError(
            f"the protocol needs {racks + len(layout.slots)} deck slots ({racks} tip racks, "
            f"{', '.join(layout.slots)}), more than the OT-2's {OT2_SLOTS} deck slots; "
            "split it into smaller runs"
        )
    return out, body


async def export(
    config: WorkcellConfig, protocol: str, params: BaseModel, culture_days: float = 7.0
) -> ExportResult:
    """Dry-run the protocol and write its trace as an Opentrons protocol."""
    from workcell.assembly.build import build_workcell

    if not config.simulated:
        raise WorkcellError("export-opentrons dry-runs the protocol: use a simulated config")
    entry = PROTOCOLS[protocol]
    for load_name in {*OT_LABWARE.values(), TIP_RACK}:
        load_definition(load_name, 1)  # every Opentrons definition we name must exist
    wc = build_workcell(config)
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
    code, volumes = _trace_to_code(wc, trace, layout)
    tips = sum(1 for a in trace if a.action == "pick_up_tip")
    head, body = _header(protocol, params, layout, tips)
    for label, position in layout.tubes.items():
        body.append(f"# tube {position} of the rack: {label}")
    text = "\n".join([*head, *(f"    {line}" for line in [*body, *code])]) + "\n"
    return ExportResult(protocol=protocol, text=text, volumes_uL=volumes, tips=tips)


def write(result: ExportResult, path: Path) -> None:
    path.write_text(result.text)
