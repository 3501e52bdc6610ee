"""The OT-2 workcell: PyLabRobot's real OT-2 back end against the robot server's HTTP API,
simulated at the wire on 127.0.0.1, and one truth across robots (the STAR moves the
same volumes into the same vessels for the same parameters).

Volumes are read from the simulators' own action logs: the STAR simulator's, and the
OT-2 wire simulator's (which resolves each aspirate's container from the coordinates
PyLabRobot sent, against Opentrons' own deck and labware definitions).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pylabrobot.liquid_handling.backends.opentrons_backend import OpentronsOT2Backend

from protocols import harvest, media_exchange, passaging, seeding
from protocols.campaign import housekeeping
from tests.conftest import run
from workcell.actions import Action
from workcell.assembly.build import build_workcell
from workcell.assembly.config import WorkcellConfig, load_config, parse_config
from workcell.assembly.workcell import Workcell
from workcell.errors import ConfigError, DeviceError, ProtocolRefused

ROOT = Path(__file__).parents[1]
OT2_YAML = ROOT / "configs" / "ot2.yaml"
DAY = 86400.0
START = datetime(2026, 1, 5, 8, tzinfo=UTC)


def _ot2() -> WorkcellConfig:
    return load_config(OT2_YAML).model_copy(
        update={"clock": load_config(OT2_YAML).clock.model_copy(update={"start": START})}
    )


def _star() -> WorkcellConfig:
    cfg = load_config()
    return cfg.model_copy(update={"clock": cfg.clock.model_copy(update={"start": START})})


def _robot_log(wc: Workcell) -> list[dict[str, Any]]:
    """The simulated OT-2's own log rows, from the simulated lab's physical log."""
    assert wc.lab is not None
    return [r for r in wc.lab.log() if r["device"] == "ot2"]


def _volumes(actions: list[Action], device: str) -> dict[tuple[str, str], float]:
    """Total uL per (aspirate source | dispense target), from the simulator's own log."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for a in actions:
        if a.device == device and a.action in ("aspirate", "dispense"):
            where = a.detail["source" if a.action == "aspirate" else "target"]
            out[(a.action, where)] += a.detail["volume_uL"]
    return dict(out)


SEED = seeding.SeedingParams(
    suspension=seeding.Suspension(volume_mL=6.0, viable_cells_per_mL=5.0e5),
    plates=["plate_1"],
)
FEED = media_exchange.MediaExchangeParams(plates=["plate_1"])
PASSAGE = passaging.PassagingParams(
    plate="plate_1", confluence_threshold_percent=30, destination_plates=["plate_2", "plate_4"]
)


async def _scenario(config: WorkcellConfig) -> tuple[dict[str, dict], Workcell, dict[str, Any]]:
    """Seed, feed, passage and harvest on one workcell; each operation's volumes (and, for
    an OT-2, what the simulated robot logged and counted, before its lab stops)."""
    wc = build_workcell(config)
    device = next(n for n, d in config.devices.items() if d.kind == "liquid_handler")
    ops: dict[str, dict] = {}
    results: dict[str, Any] = {}
    async with wc:

        async def op(name: str, coro: Any) -> None:
            n0 = len(wc.log)
            results[name] = await coro
            ops[name] = _volumes(wc.log.actions[n0:], device)

        async def until(day: float) -> None:
            await wc.clock.sleep(day * DAY - wc.clock.elapsed())

        await op("seeding", seeding.run(wc, SEED))
        await wc.store_plate("plate_1")
        await until(3)
        await op("media_exchange", media_exchange.run(wc, FEED))
        await until(6)
        await op("passaging", passaging.run(wc, PASSAGE))
        await until(7)
        # the operator empties the passage's pool tube: a harvest pools into an empty one
        housekeeping.do(wc, [housekeeping.Chore(kind="empty", target="pool_tube")], "operator")
        await op("harvest", harvest.run(wc, harvest.HarvestParams(plates=["plate_2", "plate_4"])))
        assert wc.lab is not None
        if device in wc.lab.ports:
            results["robot_log"] = _robot_log(wc)
            results["robot"] = wc.lab.ot2(device)
    return ops, wc, results


def test_each_unit_operation_on_the_ot2_moves_the_star_volumes() -> None:
    star, _, star_results = run(_scenario(_star()))
    ot2, wc, ot2_results = run(_scenario(_ot2()))

    # it really went through PyLabRobot's OT-2 back end and the HTTP API
    assert isinstance(wc.liquid_handler.backend, OpentronsOT2Backend)
    robot = ot2_results["robot"]
    aspirates = [r for r in ot2_results["robot_log"] if r["action"] == "aspirate"]
    journalled = [a for a in wc.log.actions if a.device == "ot2" and a.action == "aspirate"]
    # an aspirate with a mix (a suspension) is its strokes, then the aspirate, on the robot
    strokes = sum(a.detail["mix"]["cycles"] for a in journalled if "mix" in a.detail)
    assert strokes > 0
    assert robot["commands_run"]["aspirateInPlace"] == len(aspirates)
    assert len(aspirates) == len(journalled) + strokes > 100
    assert (
        robot["commands_run"]["dispenseInPlace"]
        == len([a for a in wc.log.actions if a.device == "ot2" and a.action == "dispense"])
        + strokes
    )
    assert robot["commands_run"]["moveToCoordinates"] >= 2 * len(aspirates)
    # both pipettes did their share: the P300 the small suspension volumes, the P1000 the rest
    used = {r["detail"]["pipette"] for r in aspirates}
    assert used == {"p1000_single_gen2", "p300_single_gen2"}
    assert all(
        r["detail"]["pipette"] == "p300_single_gen2"
        for r in aspirates
        if r["detail"]["source"] == "cell_suspension"
    )

    for name in ("seeding", "media_exchange", "harvest"):
        assert ot2[name].keys() == star[name].keys(), name
        for key, volume in star[name].items():
            assert ot2[name][key] == pytest.approx(volume, rel=1e-9), (name, key)
    assert sum(v for (verb, _), v in ot2["seeding"].items() if verb == "dispense") > 10_000

    # a passage: detaching and pooling move the same volumes; the children's suspension
    # follows each robot's count of the pool, a few minutes apart in culture time
    assert star_results["passaging"].children == ot2_results["passaging"].children
    assert len(ot2_results["passaging"].children) == 12
    assert ot2["passaging"].keys() == star["passaging"].keys()
    for key, volume in star["passaging"].items():
        children = key[1] in {"pool_tube", "medium"} or key[1].startswith(("plate_2", "plate_4"))
        tolerance = 0.02 if children else 1e-9
        assert ot2["passaging"][key] == pytest.approx(volume, rel=tolerance), key

    # the operator carried the plates: the OT-2 has no gripper
    assert any(a.device == "operator" and a.action == "carry_plate" for a in wc.log.actions)


def _seed_small(wc: Workcell) -> seeding.SeedingResult:
    params = SEED.model_copy(update={"wells": ["A1", "A2"]})
    return run(seeding.run(wc, params))


def test_a_failed_tip_pick_up_at_the_wire_is_recovered_with_the_next_tip() -> None:
    wc = build_workcell(_ot2())
    run(wc.setup())
    try:
        assert wc.lab is not None
        wc.lab.ot2_fault("ot2", "fail", "pickUpTip")
        _seed_small(wc)
        failed = [r for r in _robot_log(wc) if r["action"] == "command_failed"]
        assert [r["detail"]["command"] for r in failed] == ["pickUpTip"]
        assert len(wc.log.of("pick_up_tip")) == 3  # medium, and a tip per well
        assert wc.resource("tips_1000_1_tipspot_A1").tracker.has_tip is False  # written off
    finally:
        run(wc.stop())


def test_a_dropped_connection_is_a_device_error_and_a_recorded_fault() -> None:
    wc = build_workcell(_ot2())
    run(wc.setup())
    try:
        assert wc.lab is not None
        wc.lab.ot2_fault("ot2", "slow", "aspirateInPlace", slow_answer_s=0.2)
        wc.lab.ot2_fault("ot2", "drop", "dispenseInPlace")
        with pytest.raises(DeviceError) as exc:
            _seed_small(wc)
        assert exc.value.device == "ot2" and exc.value.command == "dispense"
        assert "connection to the robot lost" in str(exc.value)
        # the slow answer was waited for; the dropped dispense never reached the robot
        assert [r["action"] for r in _robot_log(wc)][-3:] == [
            "aspirate",
            "slow_answer",
            "connection_dropped",
        ]
        faults = wc.store.events("protocol_fault")
        assert faults and "dispense" in faults[-1].data["error"]
    finally:
        run(wc.stop())


def test_plans_refuse_what_no_mounted_pipette_can_do() -> None:
    data = yaml.safe_load(OT2_YAML.read_text())
    data["devices"]["ot2"]["pipettes"] = {"left": "p1000_single_gen2"}
    wc = build_workcell(parse_config(data))
    run(wc.setup())
    try:
        n0 = len(wc.log)
        with pytest.raises(ProtocolRefused) as exc:
            _seed_small(wc)  # ~60 uL of suspension per well: below the P1000's 100 uL
        assert "below every usable pipette's range" in str(exc.value)
        assert "p1000_single_gen2 100-1000 uL" in str(exc.value)
        assert len(wc.log) == n0  # nothing moved
    finally:
        run(wc.stop())


def test_ot2_config_errors_name_the_field() -> None:
    data = yaml.safe_load(OT2_YAML.read_text())
    data["deck"]["slots"] = [s for s in data["deck"]["slots"] if "200" not in s["labware"]]
    with pytest.raises(ConfigError, match=r"devices.ot2.pipettes.right: no tip rack .*200/300"):
        parse_config(data)
    data = yaml.safe_load(OT2_YAML.read_text())
    data["deck"]["slots"][3]["labware"] = "cor_cos_6_wellplate_16800uL_Fb"
    with pytest.raises(ConfigError, match=r"deck.slots.3.labware: unknown labware"):
        parse_config(data)
    star = yaml.safe_load((ROOT / "configs" / "sim.yaml").read_text())
    star["devices"]["star"] = yaml.safe_load(OT2_YAML.read_text())["devices"]["ot2"]
    with pytest.raises(ConfigError, match="cannot use a STARLetDeck"):
        parse_config(star)


def test_a_real_ot2_is_reached_at_the_configured_address() -> None:
    data = yaml.safe_load(OT2_YAML.read_text())
    data["devices"]["ot2"] |= {"driver": "opentrons-ot2", "host": "192.0.2.7"}
    wc = build_workcell(parse_config(data))  # builds, connects only at set-up
    backend = wc.liquid_handler.backend
    assert isinstance(backend, OpentronsOT2Backend)
    assert (backend.host, backend.port) == ("192.0.2.7", 31950)
    assert wc.lab is not None and "ot2" not in wc.lab.ports  # no simulated robot
    run(wc.stop())
