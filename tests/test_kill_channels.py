"""A group of channels into one OmniTray well, the controller killed mid-transfer: by the lab.

A medium exchange on an OmniTray with the STAR's channels as a group of up to eight:
the fresh medium goes in as aspirates of seven channels (what its volume needs) from
the medium trough, each followed by one dispense of seven into the tray's well. The
controller is killed when a dispense's intent is written (not sent), when its reply
came (done, not recorded) and when the aspirate before it replied; resumed, the well
must have had the medium exactly once, by the simulated lab's own log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks import judge, kill
from benchmarks.kill import Outcome, operation_reference, operation_work, output_of, run_point

OP = "media_exchange"
OMNITRAY = "thermo_nunc_1_troughplate_90000uL_Fb_omnitray"
WELL = "plate_1_well_A1"


def _omnitray_config(folder: Path, name: str = "kill-bench") -> Path:
    """The kill bench's workcell with plate_1 an OmniTray and pipetting on 8 channels."""
    path = _bench_config(folder, name)
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    for carrier in data["deck"]["carriers"]:
        for site in carrier.get("sites", []):
            if site.get("name") == "plate_1":
                site["labware"] = OMNITRAY
    data["devices"]["star"]["pipetting_channels"] = 8
    path.write_text(yaml.safe_dump(data))
    return path


_bench_config = kill.bench_config


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKCELL_CPU_WORKERS", "0")  # controllers are forked: no worker pools
        mp.setattr(kill, "bench_config", _omnitray_config)
        yield operation_reference(tmp_path_factory.mktemp("kill8"), OP)


def _medium_dispense(intents: list[dict[str, Any]]) -> tuple[int, int]:
    """(1-based number, channels) of the middle dispense of fresh medium into the tray:
    a group of channels (the protocol takes as many as its volume needs, here 7)."""
    hits = [
        (i + 1, len(r["data"]["ops"]))
        for i, r in enumerate(intents)
        if r["data"].get("action") == "dispense"
        and len(r["data"].get("ops", [])) > 1
        and {op["target"] for op in r["data"]["ops"]} == {WELL}
        and {op["from"] for op in r["data"]["ops"]} == {"medium"}
    ]
    assert len(hits) >= 2, hits
    return hits[len(hits) // 2]


@pytest.mark.parametrize(
    ("action", "phase"),
    [
        ("dispense", "intent"),  # medium in the tips, not sent
        ("dispense", "reply"),  # medium in the well, not recorded
        ("aspirate", "reply"),  # medium in the tips, not recorded
    ],
)
def test_a_group_dispense_killed_adds_the_medium_once(
    bench: dict[str, Any], action: str, phase: str
) -> None:
    ref: Outcome = bench["ref"]
    assert ref.exit_codes == [0] and ref.verified
    n, channels = _medium_dispense(bench["intents"])
    assert channels >= 7
    if action == "aspirate":  # the group's aspirate just before that dispense
        n -= 1
        assert bench["intents"][n - 1]["data"]["action"] == "aspirate"
    got = run_point(
        bench["template"],
        bench["folder"] / "k",
        bench["cfg"],
        operation_work(OP),
        output_of(OP),
        crash=f"{n}:{phase}",
    )
    assert got.exit_codes == [-9, 0]  # SIGKILLed at the action, then resumed to the end
    assert judge.double_additions(got.log, ref.log) == []
    added, expected = judge.additions(got.log), judge.additions(ref.log)
    assert expected[(WELL, "medium")] > 0
    assert added[(WELL, "medium")] == pytest.approx(expected[(WELL, "medium")], abs=1.0)
    assert judge.episodes(got.log)[(WELL, "medium")] == 1
    # the dispenses were groups in the lab: several channels into the one well
    group = [
        r
        for r in got.log
        if r["action"] == "dispense"
        and r["detail"]["target"] == WELL
        and "medium" in r["detail"].get("sources", [])
    ]
    assert len({r["detail"].get("channel") for r in group}) == channels


def _missing_tips_config(folder: Path, name: str = "kill-bench") -> Path:
    """The OmniTray bench on a STAR that misses a tip on a channel one time in ten."""
    path = _omnitray_config(folder, name)
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["devices"]["star"]["faults"] = {"tip_pickup_failure": 0.1}
    path.write_text(yaml.safe_dump(data))
    return path


def test_tips_missing_on_some_channels_of_a_group_are_picked_again_alone(
    bench: dict[str, Any], tmp_path: Path
) -> None:
    """A group's pick-up keeps the tips it got and each empty channel picks its own: the
    trays get what they get without faults, every tip picked is dropped, no tip spot
    is tried twice (the lab's log)."""
    ref: Outcome = bench["ref"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKCELL_CPU_WORKERS", "0")
        mp.setattr(kill, "bench_config", _missing_tips_config)
        got: Outcome = operation_reference(tmp_path, OP)["ref"]
    assert got.exit_codes == [0] and got.verified
    picked = [r for r in got.log if r["action"] == "pick_up_tip"]
    failed = [r for r in got.log if r["action"] == "pick_up_tip_failed"]
    partial = {r["t"] for r in failed} & {r["t"] for r in picked}
    assert partial, "no group pick-up came back with some channels loaded and some not"
    spots = [r["detail"]["tip_spot"] for r in picked + failed]
    assert len(spots) == len(set(spots)), "a tip spot was tried twice"
    assert len([r for r in got.log if r["action"] == "drop_tip"]) == len(picked)
    added, expected = judge.additions(got.log), judge.additions(ref.log)
    assert added.keys() == expected.keys()
    for key, volume in expected.items():
        assert added[key] == pytest.approx(volume, abs=1.0), key
