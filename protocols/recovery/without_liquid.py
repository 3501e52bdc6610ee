"""The without-medium window on resume: how long a drained monolayer stood uncovered.

A culture whose medium (or PBS wash) was drawn off down to its wet residual must get
fresh liquid soon: it dries and its cells suffer. In normal operation that is a
minute or two; an interruption can stretch it by the whole outage. When a step is
resumed, the vessel's next liquid goes in at once, and past the declared window
(``declarations.Windows.without_medium_max_min``) a deviation names the vessel.
"""

from __future__ import annotations

from protocols.recovery.declarations import WINDOWS
from protocols.recovery.resumable import done_into
from workcell.assembly.workcell import Workcell


def check_without_liquid(wc: Workcell, vessel: str, drained: str, adding: str, what: str) -> None:
    """Resumed with ``vessel`` drained by unit ``drained`` and nothing of unit ``adding``
    (``what``) in it yet: record the recovery, and past the window a deviation naming it
    (once per step)."""
    if not wc.journal.resumed or done_into(wc, adding, vessel)[1]:
        return
    times = [  # drained before the interruption (not by this resumed run)
        r["time"]
        for r in wc.journal.rows()
        if r["kind"] == "unit"
        and r["key"] == wc.journal.scoped(drained)
        and r["id"] <= wc.journal.entered_after
    ]
    key = f"without_liquid:{vessel}:{what}"
    if not times or wc.journal.done(key):
        return
    minutes = (wc.clock.now() - times[0]).total_seconds() / 60
    window = WINDOWS.without_medium_max_min
    with wc.store.transaction():
        wc.journal.recovery(
            f"{what} into {vessel} at once",
            f"it was drained ({drained.split(':')[0]}) {minutes:.0f} min ago, before the "
            "interruption",
            [vessel],
        )
        if minutes > window:
            wc.event(
                "deviation",
                "workcell",
                vessel_id=vessel,
                message=f"{vessel} stood {minutes:.0f} min under its residual without "
                f"{what} (window {window:g} min) after an interruption",
                vessels=[vessel],
            )
        wc.journal.mark_done(key, [vessel])
