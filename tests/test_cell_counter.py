"""The cell counter: noise model, the serial driver against its simulator, faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from devices.cell_counter import CellCounter, CellCounterBackend, CountResult
from devices.cell_counter_serial import SerialCellCounterBackend, parse_reply
from simulators.cell_counter import (
    CellCounterSimulator,
    CounterInstrument,
    checksum,
    expected_cv,
)
from simulators.culture import CultureModel, Liquid
from simulators.serial_port import Fault
from tests.conftest import run
from workcell.assembly.build import build_workcell
from workcell.assembly.config import parse_config
from workcell.errors import DeviceError

CONC_PER_ML = 1.0e6


def _culture() -> CultureModel:
    culture = CultureModel(lambda: 0.0)
    culture.load("tube", Liquid(20_000, CONC_PER_ML * 20, CONC_PER_ML * 20 * 0.1 / 0.9, 1.0))
    return culture


@pytest.mark.parametrize(("chamber_uL", "cv"), [(0.4, 0.03), (0.05, 0.02)])
def test_repeated_counts_scatter_as_the_noise_model_says(chamber_uL: float, cv: float) -> None:
    inst = CounterInstrument(_culture(), 3, "counter", chamber_uL, cv)
    inst.load("tube", 200)
    totals, viable = [], []
    for _ in range(600):
        inst.count()
        assert inst.result is not None
        totals.append(inst.result.total_per_mL)
        viable.append(inst.result.viable_per_mL)
    true_total = CONC_PER_ML / 0.9
    want = expected_cv(true_total / 1000, chamber_uL, cv)
    got = float(np.std(totals, ddof=1) / np.mean(totals))
    assert got == pytest.approx(want, rel=0.12)  # the SD of a CV from 600 counts is ~3 %
    assert float(np.mean(totals)) == pytest.approx(true_total, abs=4 * want * true_total / 600**0.5)
    assert float(np.mean(viable)) / float(np.mean(totals)) == pytest.approx(0.9, abs=0.01)


@pytest.fixture
def counter_sim() -> Iterator[CellCounterSimulator]:
    inst = CounterInstrument(_culture(), 5)
    sim = CellCounterSimulator("counter", inst)
    sim.start()
    yield sim
    sim.stop()


def _count(sim: CellCounterSimulator, attempts: int = 3, **kw: Any) -> Any:
    async def go() -> Any:
        backend = SerialCellCounterBackend("counter", sim.port, attempts=attempts)
        front = CellCounter("counter", backend)
        await front.setup()
        try:
            return await front.count("tube", 20), backend
        finally:
            await front.stop()

    return run(go())


def test_driver_round_trips_through_the_simulator(counter_sim: CellCounterSimulator) -> None:
    result, backend = _count(counter_sim)
    assert result.sample == "tube"
    assert result.total_per_mL == pytest.approx(CONC_PER_ML / 0.9, rel=0.2)
    assert 80 < result.viability_percent < 100
    assert counter_sim.commands == [
        "ID?",
        "STATUS?",
        "LOAD tube 20",
        "COUNT",
        "RESULT?",
        "EJECT",
    ]
    assert counter_sim.instrument.culture.liquid("tube").volume_uL == pytest.approx(19_980)
    assert backend.retries == 0


def test_replies_carry_a_checksum() -> None:
    assert parse_reply(f"OK EJECT*{checksum('OK EJECT')}\r\n".encode()) == "OK EJECT"
    with pytest.raises(Exception, match="garbled"):
        parse_reply(b"OK EJECT*00\r\n")


@pytest.mark.parametrize("fault", [Fault.NO_ANSWER, Fault.GARBLED])
def test_lost_or_garbled_replies_never_do_a_step_twice(
    counter_sim: CellCounterSimulator, fault: Fault
) -> None:
    # the fault hits LOAD (and the first STATUS? after it), COUNT and EJECT: each was
    # carried out and its reply lost, so the driver must ask before it repeats
    counter_sim.faults.queue(None, None, fault, fault, None, fault, None, None, fault, None)
    result, backend = _count(counter_sim)
    assert result.total_per_mL > 0
    commands = counter_sim.commands
    assert commands.count("LOAD tube 20") == 1
    assert commands.count("COUNT") == 1
    assert commands.count("EJECT") == 1
    assert backend.confirmed_by_status == 3
    assert counter_sim.instrument.seq == 1
    assert counter_sim.instrument.culture.liquid("tube").volume_uL == pytest.approx(19_980)


def test_busy_error_is_retried(counter_sim: CellCounterSimulator) -> None:
    counter_sim.faults.queue(None, None, None, Fault.ERROR)  # COUNT gets "ERR 01 BUSY" once
    _, backend = _count(counter_sim)
    assert counter_sim.commands.count("COUNT") == 2
    assert counter_sim.instrument.seq == 1
    assert backend.retries == 1


def test_refusal_names_device_and_command(counter_sim: CellCounterSimulator) -> None:
    counter_sim.instrument.culture.load("water", Liquid(1000, 0, 0, 0))

    async def go() -> None:
        backend = SerialCellCounterBackend("counter", counter_sim.port)
        await backend.setup()
        try:
            await backend.count("water", 20)
        finally:
            await backend.stop()

    with pytest.raises(DeviceError, match=r"counter: command 'COUNT' failed: refused: ERR 20 TOO"):
        run(go())


def test_disconnect_gives_a_clear_error(counter_sim: CellCounterSimulator) -> None:
    counter_sim.faults.queue(None, None, Fault.DISCONNECT)
    with pytest.raises(DeviceError) as exc:
        _count(counter_sim, attempts=2)
    assert "counter: command 'LOAD tube 20'" in str(exc.value)
    assert "could not ask whether it happened" in str(exc.value)
    assert "cannot open /dev/pts/" in str(exc.value)


def test_no_answer_every_time_gives_up_after_bounded_attempts(
    counter_sim: CellCounterSimulator,
) -> None:
    counter_sim.faults.queue(None, Fault.NO_ANSWER, Fault.NO_ANSWER, Fault.NO_ANSWER)
    with pytest.raises(DeviceError, match=r"counter: command 'STATUS\?' failed: no valid reply"):
        _count(counter_sim)


def test_simulated_serial_counter_from_the_config(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["counter"]["driver"] = "simulated-serial"
    wc = build_workcell(parse_config(sim_data))

    async def go() -> Any:
        async with wc:
            assert wc.lab is not None
            wc.load("pool_tube", 10_000, Liquid(10_000, 5e6, 2e5, 1.0), "test")
            port = wc.lab.serial("counter")["port"]
            return await wc.cell_counter.count("pool_tube", 20), port

    result, port = run(go())
    assert result.viable_per_mL == pytest.approx(5e5, rel=0.2)
    assert port.startswith("/dev/pts/")  # the real serial driver talked to the lab's terminal
    assert wc.lab is None  # the workcell's own lab was stopped with it


def test_faults_from_the_config_are_recovered_without_repeats(sim_data: dict[str, Any]) -> None:
    sim_data["devices"]["counter"].update(
        driver="simulated-serial", faults={"garbled": 0.15, "error": 0.1, "no_answer": 0.03}
    )
    wc = build_workcell(parse_config(sim_data))

    async def go() -> tuple[list[Any], dict[str, Any], float]:
        async with wc:
            assert wc.lab is not None
            wc.load("pool_tube", 10_000, Liquid(10_000, 5e6, 2e5, 1.0), "test")
            results = [await wc.cell_counter.count("pool_tube", 20) for _ in range(8)]
            return results, wc.lab.serial("counter"), wc.lab.liquid("pool_tube").volume_uL

    results, sim, left = run(go())
    injected = sim["injected"]
    assert sum(injected.values()) >= 3
    assert sim["seq"] == len(results) == 8  # each sample counted once
    assert sim["commands"].count("COUNT") - injected.get("error", 0) <= 8
    loads = [c for c in sim["commands"] if c.startswith("LOAD")]
    assert left == pytest.approx(10_000 - 20 * 8)
    assert len(loads) >= 8


@pytest.mark.parametrize("driver", ["simulated", "simulated-serial"])
def test_a_sample_below_the_detection_limit_is_a_result_not_a_fault(
    sim_data: dict[str, Any], driver: str
) -> None:
    """A pool too dilute to count must not end a passage after motion: the counter's
    'ERR 20 TOO FEW CELLS' (from the lab, by either driver) comes back as a result."""
    sim_data["devices"]["counter"]["driver"] = driver
    wc = build_workcell(parse_config(sim_data))

    async def go() -> Any:
        async with wc:
            wc.load("pool_tube", 10_000, Liquid(10_000, 20.0, 0.0, 1.0), "test")
            return await wc.cell_counter.count("pool_tube", 20)

    result = run(go())
    assert result.below_detection and result.viable_per_mL == 0.0


def test_other_counter_errors_stay_errors() -> None:
    class Broken(CellCounterBackend):
        async def count(self, sample: str, volume_uL: float) -> CountResult:
            raise DeviceError("counter", "COUNT", "refused: ERR 10 NO SAMPLE")

    with pytest.raises(DeviceError, match="ERR 10 NO SAMPLE"):
        run(CellCounter("counter", Broken()).count("pool_tube", 20))


def test_a_count_taken_again_leaves_later_counts_as_they_were() -> None:
    """A count's noise is the world's (seed, sample, lab time): an extra count of one sample
    does not move the next sample's result, and two counts of one load differ."""

    def later_count(extra: bool) -> CountResult:
        culture = _culture()
        culture.load("other", Liquid(20_000, CONC_PER_ML * 20, 0.0, 1.0))
        inst = CounterInstrument(culture, 11)
        inst.load("tube", 200)
        inst.count()
        first = inst.result
        if extra:
            inst.count()
            assert inst.result != first
        inst.eject()
        inst.load("other", 200)
        inst.count()
        assert inst.result is not None
        return inst.result

    assert later_count(False) == later_count(True)
