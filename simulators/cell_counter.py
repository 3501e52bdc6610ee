"""A simulated automated cell counter that measures the culture model.

Noise model, as for an image-based counter: the instrument counts the cells in a
small imaged chamber volume (``chamber_volume_uL``), so the number counted is
Poisson-distributed about the true concentration times that volume (counting
statistics); on top, each reading carries a multiplicative instrument error with
coefficient of variation ``instrument_cv``. Viable and dead cells are counted
separately, so viability scatters too. The expected CV of a total count at
concentration ``c`` (cells/uL) is ``sqrt(1 / (c * chamber_volume_uL) + instrument_cv^2)``.
Each count's noise is drawn from the world (the lab's seed, the source, which sample
drawn from it), not from one stream in call order (``simulators/noise.py``).

The instrument model (:class:`CounterInstrument`) lives in the simulated lab and is
reached either over the lab link (``devices.lab_counter``, fast) or by the
simulator that speaks the serial protocol of ``docs/instruments/cell-counter.md``
on a pseudo-terminal, through the real serial driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from devices.cell_counter import CountResult
from simulators.culture import CultureModel, Liquid
from simulators.noise import world_rng
from simulators.serial_port import FaultInjector, PtySimulator
from workcell.actions import ActionLog
from workcell.clock import SimClock

COUNT_S = 60.0
MSC_DIAMETER_UM = 17.0
DETECTION_LIMIT_PER_ML = 5.0e3


class CounterRefusal(Exception):
    """The instrument refuses a command: an error code and its text."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"ERR {code} {text}")
        self.code = code
        self.text = text


def expected_cv(per_uL: float, chamber_volume_uL: float, instrument_cv: float) -> float:
    """The coefficient of variation the noise model gives a count at ``per_uL``."""
    return math.sqrt(1.0 / (per_uL * chamber_volume_uL) + instrument_cv**2)


@dataclass
class CounterInstrument:
    """The counter's cassette, its counting optics and its last result."""

    culture: CultureModel
    seed: int
    name: str = "counter"
    chamber_volume_uL: float = 2.0
    instrument_cv: float = 0.03
    sample_name: str | None = None
    sample: Liquid | None = None
    result: CountResult | None = None
    seq: int = 0
    counts_of_sample: int = 0  # counts of the sample now in the cassette
    loads: dict[str, int] = field(default_factory=dict)  # samples drawn, per source

    @property
    def state(self) -> str:
        if self.sample is None:
            return "IDLE"
        return "COUNTED" if self.result is not None else "LOADED"

    def load(self, sample: str, volume_uL: float) -> None:
        if self.sample is not None:
            raise CounterRefusal("11", "SAMPLE LOADED")
        if not 5.0 <= volume_uL <= 1000.0:
            raise CounterRefusal("03", "BAD PARAMETER")
        drawn = self.culture.withdraw(sample, volume_uL)
        if drawn.volume_uL <= 0:
            raise CounterRefusal("10", "NO SAMPLE")
        self.sample_name, self.sample, self.result = sample, drawn, None
        self.counts_of_sample = 0
        self.loads[sample] = self.loads.get(sample, 0) + 1

    def _rng(self) -> np.random.Generator:
        """A count's noise, fixed by the world: the source, which sample drawn from it this
        is, and which count of that sample (``simulators/noise.py``). A count taken again
        after a crash is a new sample with noise of its own and leaves every other count as
        it was; a count made later than planned (the controller was down) reads the same
        sample as it would have, so a kill's effect on cells is not hidden in count noise."""
        assert self.sample_name is not None
        n = self.loads.get(self.sample_name, 0)
        return world_rng(self.seed, self.name, self.sample_name, n, self.counts_of_sample)

    def _read(self, per_uL: float, rng: np.random.Generator) -> float:
        counted = rng.poisson(per_uL * self.chamber_volume_uL)
        error = rng.normal(1.0, self.instrument_cv)
        return max(0.0, counted * error / self.chamber_volume_uL * 1000.0)

    def count(self) -> int:
        if self.sample is None or self.sample_name is None:
            raise CounterRefusal("10", "NO SAMPLE")
        s = self.sample
        rng = self._rng()
        self.counts_of_sample += 1
        viable = self._read(s.viable / s.volume_uL, rng)
        dead = self._read(s.dead / s.volume_uL, rng)
        total = viable + dead
        if total < DETECTION_LIMIT_PER_ML:
            raise CounterRefusal("20", "TOO FEW CELLS")
        self.seq += 1
        self.result = CountResult(
            sample=self.sample_name,
            total_per_mL=total,
            viable_per_mL=viable,
            viability_percent=min(100.0, 100.0 * viable / total),  # 100*v/v can round up
            mean_diameter_um=float(rng.normal(MSC_DIAMETER_UM, 0.5)),
        )
        return self.seq

    def eject(self) -> None:
        self.sample_name = self.sample = self.result = None


def checksum(body: str) -> str:
    value = 0
    for byte in body.encode():
        value ^= byte
    return f"{value:02X}"


def with_checksum(body: str) -> str:
    return f"{body}*{checksum(body)}"


class CellCounterSimulator(PtySimulator):
    """The counter on a pseudo-terminal, speaking MSC-CC ASCII v1."""

    def __init__(
        self,
        name: str,
        instrument: CounterInstrument,
        clock: SimClock | None = None,
        log: ActionLog | None = None,
        faults: FaultInjector | None = None,
    ) -> None:
        super().__init__(name, faults)
        self.instrument = instrument
        self.clock = clock
        self.log = log

    def error_reply(self, command: str) -> str:
        return with_checksum("ERR 01 BUSY")

    def handle(self, line: str) -> str:
        try:
            return with_checksum(self._handle(line.split()))
        except CounterRefusal as err:
            return with_checksum(f"ERR {err.code} {err.text}")

    def _handle(self, words: list[str]) -> str:
        inst = self.instrument
        cmd, args = words[0].upper(), words[1:]
        if cmd == "ID?" and not args:
            return "ID MSCSIM-CC1 SN0001 FW1.0"
        if cmd == "STATUS?" and not args:
            return (
                f"STATUS {inst.state} {inst.sample_name or '-'} {inst.seq if inst.result else '-'}"
            )
        if cmd == "LOAD":
            if len(args) != 2:
                raise CounterRefusal("03", "BAD PARAMETER")
            try:
                volume = float(args[1])
            except ValueError:
                raise CounterRefusal("03", "BAD PARAMETER") from None
            inst.load(args[0], volume)
            return f"OK LOAD {args[0]}"
        if cmd == "COUNT" and not args:
            seq = inst.count()
            if self.clock is not None:
                self.clock.advance(COUNT_S)
            if self.log is not None and self.clock is not None and inst.result is not None:
                self.log.record(self.clock.now(), self.name, "count", **inst.result.model_dump())
            return f"OK COUNT {seq}"
        if cmd == "RESULT?" and not args:
            r = inst.result
            if r is None:
                raise CounterRefusal("10", "NO SAMPLE")
            return (
                f"RESULT {inst.seq} {r.sample} TOTAL={r.total_per_mL:.4e} "
                f"VIABLE={r.viable_per_mL:.4e} VIAB={r.viability_percent:.1f} "
                f"DIAM={r.mean_diameter_um:.1f}"
            )
        if cmd == "EJECT" and not args:
            inst.eject()
            return "OK EJECT"
        if cmd in ("ID?", "STATUS?", "LOAD", "COUNT", "RESULT?", "EJECT"):
            raise CounterRefusal("03", "BAD PARAMETER")
        raise CounterRefusal("02", "UNKNOWN COMMAND")
