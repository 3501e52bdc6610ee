"""A campaign works only on vessels it seeded, unless told to adopt others.

A campaign seeds its thawed vial only into an empty run folder. Started on a
folder whose store already holds vessels (an earlier seed run from the UI, another
batch), it would otherwise take those cells over silently and ignore the vial in
its parameters, while its record claimed the vial. ``check_run_folder`` refuses
that, unless the campaign is told to adopt them; an adoption is recorded
(``vessels_adopted``, with who asked and which vessels) before the campaign starts.
A folder where this campaign already started is its own: it resumes.
"""

from __future__ import annotations

from workcell.assembly.workcell import Workcell
from workcell.errors import WorkcellError


def check_run_folder(wc: Workcell, adopt: bool, by: str) -> list[str]:
    """The vessels adopted (none when the campaign seeds its own); refuse foreign ones."""
    store = wc.store
    if store.events("campaign_started"):
        return []
    vessels = store.vessels()
    if not vessels:
        return []
    plates = sorted({v.plate for v in vessels})
    active = [v.id for v in vessels if v.state == "active"]
    if not adopt:
        raise WorkcellError(
            f"the run folder already holds {len(vessels)} vessels ({len(active)} in culture, "
            f"on {', '.join(plates)}) that this campaign did not seed: start it in a new run "
            "folder, or adopt them (they are taken over instead of seeding the thawed vial)"
        )
    wc.event(
        "vessels_adopted",
        by,
        vessels=active,
        plates=plates,
        message="the campaign takes over vessels it did not seed; the thawed vial in its "
        "parameters is not seeded",
    )
    return active
