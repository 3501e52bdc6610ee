"""Between steps, what an operator does by hand so a weeks-long campaign can go on.

A campaign outlives its consumables: medium, PBS and enzyme troughs run low, the
waste trough fills, tip racks empty, and the pool and suspension tubes keep the
surplus of the last passage. Before each campaign step ``due`` lists the chores
that step needs and ``do`` carries them out, each recorded in the store with its
volumes (and, for discarded suspension, the cells), so the batch record shows
every top-up and every cell thrown away. In a dry-run the simulated operator does
them; on a real workcell the campaign asks a person first.
"""

from __future__ import annotations

from pydantic import BaseModel
from pylabrobot.resources import Container, TipRack

from workcell.assembly.workcell import Workcell, reagent_liquid

TOP_UP_BELOW = 0.999  # share of the configured fill under which a reagent is topped up
# fewer fresh tips than two racks (or than half of a pipette's racks): replace the spent
# racks. A harvest of two 24-well plates takes 104 tips, since spent medium and PBS
# leave each well with its own tip.
TIPS_LOW = 192
SIMULATED_OPERATOR = "operator (simulated)"  # who does the chores in a dry-run


class Chore(BaseModel):
    kind: str  # "top_up" | "empty" | "tips"
    target: str
    volume_uL: float = 0.0

    @property
    def text(self) -> str:
        if self.kind == "top_up":
            return f"top up {self.target} with {self.volume_uL / 1000:.1f} mL"
        if self.kind == "empty":
            return f"empty {self.target} ({self.volume_uL / 1000:.1f} mL)"
        return f"replace spent tip racks ({self.target})"


def due(wc: Workcell) -> list[Chore]:
    chores: list[Chore] = []
    for site in wc.config.deck.sites():
        res = wc.resource(site.name)
        if isinstance(res, TipRack) or not isinstance(res, Container):
            continue
        used = res.tracker.get_used_volume()
        if site.contents is not None:
            fill = site.contents.volume_mL * 1000.0
            if used < TOP_UP_BELOW * fill:
                chores.append(Chore(kind="top_up", target=site.name, volume_uL=fill - used))
        elif used > 0:
            chores.append(Chore(kind="empty", target=site.name, volume_uL=used))
    racks = wc.tip_racks()
    # per kind of tip (an OT-2's P1000 and P300 each have their own racks)
    kinds: dict[float, list[TipRack]] = {}
    for r in racks:
        kinds.setdefault(r.get_item(0).make_tip().maximal_volume, []).append(r)
    low = False
    for group in kinds.values():
        spots = [s for r in group for s in r.get_all_items()]
        fresh = sum(1 for s in spots if s.tracker.has_tip)
        low = low or fresh < min(TIPS_LOW, len(spots) // 2)
    if low:
        spent = [r.name for r in racks if not all(s.tracker.has_tip for s in r.get_all_items())]
        chores.append(Chore(kind="tips", target=", ".join(spent)))
    return chores


def do(wc: Workcell, chores: list[Chore], actor: str) -> None:
    """Carry out ``chores`` and record each one."""
    for chore in chores:
        if chore.kind == "top_up":
            site = next(s for s in wc.config.deck.sites() if s.name == chore.target)
            assert site.contents is not None
            wc.load(chore.target, chore.volume_uL, reagent_liquid(site.contents.reagent), actor)
        elif chore.kind == "empty":
            _empty(wc, chore.target, actor)
        else:
            for rack in wc.tip_racks():
                wc.replace_tips(rack, actor)


def _empty(wc: Workcell, name: str, actor: str) -> None:
    wc.empty(name, actor)
