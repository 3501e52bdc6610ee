"""PyLabRobot's Cytomat driver against the Cytomat simulator on a pseudo-terminal.

Each telegram costs the driver's 1 s read timeout (PyLabRobot reads up to 128
bytes), as on a real Cytomat, so these tests take a few seconds each.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pylabrobot.resources import Coordinate
from pylabrobot.resources.corning.costar.plates import cor_cos_6_wellplate_16800uL_Fb
from pylabrobot.storage import Incubator
from pylabrobot.storage.cytomat import CytomatBackend
from pylabrobot.storage.cytomat.racks import cytomat_rack_23mm_21

from devices.incubator import CheckedCytomatBackend
from simulators.chamber import Chamber
from simulators.cytomat import CytomatSimulator
from simulators.serial_port import Fault
from tests.conftest import run
from workcell.clock import SimClock
from workcell.errors import DeviceError


@pytest.fixture
def sim() -> Iterator[CytomatSimulator]:
    clock = SimClock()
    chamber = Chamber("cytomat", clock.elapsed, np.random.default_rng(1))
    simulator = CytomatSimulator("cytomat", chamber, clock)
    simulator.start()
    yield simulator
    simulator.stop()


def _incubator(backend: CytomatBackend) -> Incubator:
    return Incubator(
        backend,
        "cytomat",
        0,
        0,
        0,
        racks=[cytomat_rack_23mm_21("rack")],
        loading_tray_location=Coordinate(0, 0, 0),
    )


def _put_on_station(sim: CytomatSimulator, inc: Incubator, name: str) -> None:
    plate = cor_cos_6_wellplate_16800uL_Fb(name)
    inc.loading_tray.assign_child_resource(plate)
    sim.chamber.arrive_at_transfer_station(name, [])


def test_unmodified_pylabrobot_backend_loads_fetches_and_queries(sim: CytomatSimulator) -> None:
    async def scenario() -> None:
        backend = CytomatBackend("C6000", sim.port)
        inc = _incubator(backend)
        await inc.setup()
        _put_on_station(sim, inc, "p1")
        await inc.take_in_plate("smallest")
        _put_on_station(sim, inc, "p2")
        await inc.take_in_plate("smallest")
        assert sim.chamber.slots == {1: "p1", 2: "p2"}
        assert inc.get_site_by_plate_name("p2").name == "rack-2"

        assert 36.5 < await backend.get_temperature() < 37.5
        assert (await backend.get_co2()).nominal_value == 5.0
        overview = await backend.get_overview_register()
        assert overview.ready_bit_set and not overview.transfer_station_occupied
        swap = await backend.get_swap_register()
        assert swap.position == 1

        await inc.fetch_plate_to_loading_tray("p1")
        assert sim.chamber.transfer_station == "p1" and sim.chamber.slots == {2: "p2"}
        assert inc.loading_tray.resource is not None
        assert (await backend.get_overview_register()).transfer_station_occupied
        await inc.stop()

    run(scenario())
    moves = [c for c in sim.commands if c.startswith("mv:")]
    assert moves == ["mv:ts 001", "mv:ts 002", "mv:st 001"]


def test_lost_reply_to_a_move_is_checked_not_repeated(sim: CytomatSimulator) -> None:
    async def scenario() -> CheckedCytomatBackend:
        backend = CheckedCytomatBackend("C6000", sim.port, "cytomat")
        inc = _incubator(backend)
        await inc.setup()
        _put_on_station(sim, inc, "p1")
        sim.faults.queue(Fault.NO_ANSWER)  # the move happens, its reply is lost
        await inc.take_in_plate("smallest")
        sim.faults.queue(Fault.GARBLED)  # and again, the reply arrives corrupted
        await inc.fetch_plate_to_loading_tray("p1")
        await inc.stop()
        return backend

    backend = run(scenario())
    moves = [c for c in sim.commands if c.startswith("mv:")]
    assert moves == ["mv:ts 001", "mv:st 001"]  # each done exactly once
    # the lost reply is confirmed from the transfer station; a garbled reply whose
    # "ok" survived the noise is taken as it is (the Cytomat protocol has no checksum)
    assert backend.moves_confirmed_by_state >= 1
    assert sim.chamber.transfer_station == "p1"


def test_device_error_code_is_retried_then_succeeds(sim: CytomatSimulator) -> None:
    async def scenario() -> None:
        backend = CheckedCytomatBackend("C6000", sim.port, "cytomat")
        inc = _incubator(backend)
        await inc.setup()
        _put_on_station(sim, inc, "p1")
        sim.faults.queue(Fault.ERROR)  # "er 01": busy, command not accepted
        await inc.take_in_plate("smallest")
        await inc.stop()

    run(scenario())
    assert [c for c in sim.commands if c.startswith("mv:")] == ["mv:ts 001", "mv:ts 001"]
    assert sim.chamber.slots == {1: "p1"}  # refused once, done once


def test_refusal_by_the_device_names_device_and_telegram(sim: CytomatSimulator) -> None:
    async def scenario() -> None:
        backend = CheckedCytomatBackend("C6000", sim.port, "cytomat")
        inc = _incubator(backend)
        await inc.setup()
        inc.loading_tray.assign_child_resource(cor_cos_6_wellplate_16800uL_Fb("ghost"))
        await inc.take_in_plate("smallest")  # but nothing is on the station: er 31

    with pytest.raises(DeviceError) as exc:
        run(scenario())
    assert "cytomat: command 'mv:ts 001' failed: refused by the Cytomat" in str(exc.value)
    assert "Transfer station empty" in str(exc.value)
    assert [c for c in sim.commands if c.startswith("mv:")] == ["mv:ts 001"]  # not retried


def test_disconnect_ends_in_a_clear_error(sim: CytomatSimulator) -> None:
    async def scenario() -> None:
        backend = CheckedCytomatBackend("C6000", sim.port, "cytomat", attempts=2)
        inc = _incubator(backend)
        await inc.setup()
        _put_on_station(sim, inc, "p1")
        sim.faults.queue(Fault.DISCONNECT)
        await inc.take_in_plate("smallest")

    with pytest.raises(DeviceError) as exc:
        run(scenario())
    assert "cytomat: command 'mv:ts 001'" in str(exc.value)
    assert "no valid reply after 2 attempts" in str(exc.value)
    assert sim.chamber.slots == {}  # the line died before the move


# --- fidelity to the device as PyLabRobot's client sees it ---------------------------------


def _fast(backend: CytomatBackend) -> CytomatBackend:
    """The simulator answers at once: a short read timeout keeps each telegram quick."""
    backend.io.timeout = 0.2
    return backend


def test_registers_follow_the_gate_shovel_and_moves(sim: CytomatSimulator) -> None:
    async def scenario() -> list[tuple[str, object]]:
        backend = _fast(CheckedCytomatBackend("C6000", sim.port, "cytomat"))
        inc = _incubator(backend)
        await inc.setup()
        seen: list[tuple[str, object]] = []
        await backend.open_door()
        s = await backend.get_sensor_register()
        seen.append(("gate opened", (s.GATE_OPENED, s.GATE_CLOSED)))
        await backend.close_door()
        s = await backend.get_sensor_register()
        seen.append(("gate closed", (s.GATE_OPENED, s.GATE_CLOSED)))
        await backend.shovel_out()
        s = await backend.get_sensor_register()
        seen.append(("shovel out", (s.SHOVEL_EXTENDED, s.SHOVEL_RETRACTED)))
        await backend.shovel_in()
        _put_on_station(sim, inc, "p1")
        s = await backend.get_sensor_register()
        seen.append(("station", s.TRANSFER_STATION_OCCUPIED))
        await inc.take_in_plate("smallest")
        seen.append(("after store", (await backend.get_action_register()).target.name))
        await inc.fetch_plate_to_loading_tray("p1")
        seen.append(("after fetch", (await backend.get_action_register()).target.name))
        await inc.stop()
        return seen

    seen = dict(run(scenario()))
    assert seen["gate opened"] == (True, False) and seen["gate closed"] == (False, True)
    assert seen["shovel out"] == (True, False)
    assert seen["station"] is True
    assert seen["after store"] == "STACKER" and seen["after fetch"] == "TRANSFER_STATION"


def test_wait_exposed_and_shaker_telegrams_are_answered_not_unknown(sim: CytomatSimulator) -> None:
    async def scenario() -> None:
        backend = _fast(CheckedCytomatBackend("C6000", sim.port, "cytomat"))
        inc = _incubator(backend)
        await inc.setup()
        _put_on_station(sim, inc, "p1")
        await inc.take_in_plate("smallest")
        site = inc.get_site_by_plate_name("p1")
        await backend.action_storage_to_wait(site)
        assert sim.handler == "p1" and (await backend.get_overview_register()).handler_occupied
        await backend.action_wait_to_exposed()
        await backend.action_exposed_to_wait()
        await backend.action_wait_to_storage(site)
        assert sim.chamber.slots == {1: "p1"} and sim.handler is None
        await backend.init_shakers()
        await backend.set_shaking_frequency(300)
        await backend.start_shaking(300)
        assert sim.shaking and sim.shaker_frequency == [300, 300]
        await backend.stop_shaking()
        await inc.stop()

    run(scenario())
    assert not any(c.startswith("rs:be") for c in sim.commands)  # no error was ever answered


def test_bad_parameter_is_er_04_and_an_occupied_slot_is_an_error_register(
    sim: CytomatSimulator,
) -> None:
    async def scenario() -> list[str]:
        backend = _fast(CheckedCytomatBackend("C6000", sim.port, "cytomat"))
        inc = _incubator(backend)
        await inc.setup()
        errors = []
        try:
            await backend.send_action("ll", "gp", "007")
        except DeviceError as e:
            errors.append(str(e))
        _put_on_station(sim, inc, "p1")
        await inc.take_in_plate("smallest")
        _put_on_station(sim, inc, "p2")
        site = inc.get_site_by_plate_name("p1")
        try:
            await backend.action_transfer_to_storage(site)  # slot 1 already holds p1
        except DeviceError as e:
            errors.append(str(e))
        await inc.stop()
        return errors

    bad, occupied = run(scenario())
    assert "Incorrect parameter" in bad and "ll:gp 007" in bad
    assert "mv:ts 001" in occupied and "MTP not unloaded" in occupied
    assert sim.chamber.transfer_station == "p2" and sim.chamber.slots == {1: "p1"}
    assert [c for c in sim.commands if c.startswith("mv:")].count("mv:ts 001") == 2  # not retried


def test_c2c_425_addresses_rack_and_site_and_moves_plates() -> None:
    clock = SimClock()
    chamber = Chamber("cytomat", clock.elapsed, np.random.default_rng(1))
    simulator = CytomatSimulator("cytomat", chamber, clock, model="C2C_425", rack_sizes=[21])
    simulator.start()
    try:

        async def scenario() -> None:
            backend = _fast(CheckedCytomatBackend("C2C_425", simulator.port, "cytomat"))
            inc = _incubator(backend)
            await inc.setup()
            _put_on_station(simulator, inc, "p1")
            await inc.take_in_plate("smallest")
            await inc.fetch_plate_to_loading_tray("p1")
            await inc.stop()

        run(scenario())
    finally:
        simulator.stop()
    assert [c for c in simulator.commands if c.startswith("mv:")] == ["mv:ts 00 00", "mv:st 00 00"]
    assert chamber.transfer_station == "p1"


class _GarbledValue(CytomatSimulator):
    """A simulator whose next replies to ``ch:it`` / ``ch:bs`` keep the key but garble the value."""

    garble = {"ch:it": 1, "ch:bs": 1}

    def handle(self, line: str) -> str:
        reply = super().handle(line)
        if self.garble.get(line, 0):
            self.garble[line] -= 1
            key, _, value = reply.partition(" ")
            return f"{key} {value.replace('0', 'O', 1)}"
        return reply


def test_a_garbled_value_is_read_again_inside_the_retry_not_a_bare_value_error() -> None:
    clock = SimClock()
    chamber = Chamber("cytomat", clock.elapsed, np.random.default_rng(1))
    simulator = _GarbledValue("cytomat", chamber, clock)
    simulator.garble = {"ch:it": 1, "ch:bs": 0}
    simulator.start()
    try:

        async def scenario() -> tuple[float, int]:
            backend = _fast(CheckedCytomatBackend("C6000", simulator.port, "cytomat"))
            inc = _incubator(backend)
            await inc.setup()
            _put_on_station(simulator, inc, "p1")
            simulator.garble["ch:bs"] = 1  # the completion check right after the move
            await inc.take_in_plate("smallest")
            t = await backend.get_temperature()
            await inc.stop()
            return t, backend.retries

        temperature, retries = run(scenario())
    finally:
        simulator.stop()
    assert 36.0 < temperature < 38.0 and retries == 2
    assert simulator.chamber.slots == {1: "p1"}
    assert [c for c in simulator.commands if c.startswith("mv:")] == ["mv:ts 001"]
