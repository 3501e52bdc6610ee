"""Imaging plates for confluence: out of the incubator, under the imager, and back.

Each active vessel's confluence is recorded in the store as a measurement (a
fraction), which is what the campaign decides from and what the UI shows.

Resumable (``protocols/recovery``): re-entered after an interruption, a plate whose
values are recorded is not imaged again, and a plate that came out of the incubator
for its image and was found outside it goes back.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from protocols.recovery.resumable import unit
from workcell.assembly.workcell import Workcell
from workcell.store import Measurement


async def image_plates(wc: Workcell, plates: list[str]) -> dict[str, float]:
    """Image plates for confluence, from the incubator and back; record each well's value."""
    out: dict[str, float] = {}
    for name in plates:
        # where the plate was before its image, kept for a re-entered step
        back = bool(wc.journal.once(f"image:{name}:in", partial(wc.in_incubator, name)))
        async with unit(wc, f"image:{name}", []) as u:
            if u.done:
                _, kept = wc.journal.remembered(f"image:{name}")
                out.update(kept or {})
            else:
                if wc.in_incubator(name) and not wc.on_transfer_station(name):
                    plate = await wc.fetch_plate(name, to_deck=False)
                else:
                    plate = wc.plate(name)
                vessels = [v.id for v in wc.store.vessels(state="active", plate=name)]
                measured = await wc.imager.confluence(plate, vessels)
                now = wc.clock.now()
                values = {well: value for well, value in measured.items() if well in vessels}

                def record(
                    values: dict[str, float] = values, name: str = name, now: datetime = now
                ) -> None:
                    for well, value in values.items():
                        wc.store.add_measurement(
                            Measurement(
                                vessel_id=well,
                                kind="confluence",
                                value=value,
                                unit="fraction",
                                time=now,
                                source=wc.imager.name,
                            )
                        )
                    wc.journal.remember(f"image:{name}", values)

                u.then(record)
                out.update(values)
        if back and not wc.in_slot(name):
            await wc.store_plate(name)
        await wc.check_incubators()
    return out
