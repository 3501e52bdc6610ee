"""Imaging plates for confluence: out of the incubator, under the imager, and back.

Each active vessel's confluence is recorded in the store as a measurement (a
fraction), which is what the campaign decides from and what the UI shows.
"""

from __future__ import annotations

from workcell.assembly.workcell import Workcell
from workcell.store import Measurement


async def image_plates(wc: Workcell, plates: list[str]) -> dict[str, float]:
    """Image plates for confluence, from the incubator and back; record each well's value."""
    out: dict[str, float] = {}
    for name in plates:
        back = wc.in_incubator(name)
        plate = await wc.fetch_plate(name, to_deck=False) if back else wc.plate(name)
        vessels = [v.id for v in wc.store.vessels(state="active") if v.plate == name]
        measured = await wc.imager.confluence(plate, vessels)
        for well, value in measured.items():
            if well in vessels:
                wc.store.add_measurement(
                    Measurement(
                        vessel_id=well,
                        kind="confluence",
                        value=value,
                        unit="fraction",
                        time=wc.clock.now(),
                        source=wc.imager.name,
                    )
                )
                out[well] = value
        if back:
            await wc.store_plate(name)
        await wc.check_incubators()
    return out
