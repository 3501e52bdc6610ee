"""The plan as people read it: per day, device by device, with the windows.

``plan_markdown`` draws one day of a plan as a text Gantt chart (one row per device,
one character per ``minutes_per_char``, a letter per campaign) followed by the
planned slots with their windows, and each campaign's next planned actions. The
Prefect flow (``flows/floor.py``) publishes it as a markdown artifact; it is plain
text so it reads the same in a terminal.
"""

from __future__ import annotations

import string
from datetime import datetime

from protocols.campaign.engine import DAY_S
from protocols.campaign.scheduler import Plan, Slot

LETTERS = string.ascii_uppercase + string.ascii_lowercase


def _hm(s: float) -> str:
    day, rest = divmod(s, DAY_S)
    return f"d{int(day)} {int(rest // 3600):02d}:{int(rest % 3600 // 60):02d}"


def _work(s: Slot) -> str:
    """The slot's work without its campaign's name, which has a column of its own."""
    prefix = f"{s.campaign}: "
    return s.label[len(prefix) :] if s.label.startswith(prefix) else s.label


def plan_markdown(
    plan: Plan, devices: list[str], minutes_per_char: int = 20, start: datetime | None = None
) -> str:
    """One day of ``plan``; times read ``d<day> HH:MM`` from the floor's ``start``. At 20 min
    a character the chart is 72 characters wide: it fits the Prefect UI's page unscrolled."""
    if not plan.slots:
        return f"# Plan at {_hm(plan.made_at_s)}\n\nNothing planned."
    day0 = int(plan.made_at_s // DAY_S) * DAY_S
    width = int(DAY_S / 60 / minutes_per_char)
    campaigns = sorted({s.campaign for s in plan.slots})
    letter = {c: LETTERS[i % len(LETTERS)] for i, c in enumerate(campaigns)}
    rows = []
    for d in devices:
        line = ["."] * width
        for s in plan.slots:
            if d not in s.devices:
                continue
            a = int((s.start_s - day0) / 60 / minutes_per_char)
            b = max(a + 1, int((s.end_s - day0) / 60 / minutes_per_char + 0.999))
            for i in range(max(0, a), min(width, b)):
                line[i] = letter[s.campaign].lower() if s.forecast else letter[s.campaign]
        rows.append(f"{d:9s} |{''.join(line)}|")
    rows.append(f"{'deck':9s} |{_deck_row(plan, day0, width, minutes_per_char)}|")
    hours = "".join(f"{h:<{60 // minutes_per_char * 3}d}" for h in range(0, 24, 3))
    out = [
        f"# Plan at {_hm(plan.made_at_s)} ({plan.policy.value}: {plan.method}, "
        f"{plan.solve_s:.3f} s)",
        "",
        f"Day {int(day0 // DAY_S)}, one character = {minutes_per_char} min; capitals are "
        "requested work, small letters forecasts. "
        + ", ".join(f"{letter[c]} = {c}" for c in campaigns)
        + "; the deck row: culture plates planned on the deck (working positions taken)"
        + ". Times are days and hours since the floor's start"
        + (f" ({start:%Y-%m-%d %H:%M %Z})." if start is not None else "."),
        "",
        "```",
        f"{'hour':9s}  {hours}",
        *rows,
        "```",
        "",
        "| start | end | campaign | work | devices | due | closes |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in plan.slots:
        if s.start_s >= day0 + DAY_S:
            continue
        out.append(_row(s))
    out += ["", "## Next planned actions", "", "| campaign | next | at |", "|---|---|---|"]
    for c in campaigns:
        first = min((s for s in plan.slots if s.campaign == c), key=lambda s: s.start_s)
        what = _work(first) + (" (forecast)" if first.forecast else "")
        out.append(f"| {c} | {what} | {_hm(first.start_s)} |")
    return "\n".join(out)


def _deck_row(plan: Plan, day0: float, width: int, minutes_per_char: int) -> str:
    """Per character, the working positions the plan's requests hold (their plates on the
    deck from their first segment, or from when they came, to their last segment's end)."""
    holds: dict[str, tuple[float, float, int]] = {}
    for s in plan.slots:
        if not s.positions:
            continue
        a = s.start_s if s.holds_from_s is None else min(s.start_s, s.holds_from_s)
        was = holds.get(s.request, (a, s.end_s, s.positions))
        holds[s.request] = (min(was[0], a), max(was[1], s.end_s), s.positions)
    out = []
    for i in range(width):
        t = day0 + (i + 0.5) * minutes_per_char * 60
        n = sum(k for a, b, k in holds.values() if a <= t < b)
        out.append("." if n == 0 else str(n) if n < 10 else "+")
    return "".join(out)


def _row(s: Slot) -> str:
    closes = "-" if s.closes_s is None else _hm(s.closes_s) + (" (hard)" if s.hard else "")
    due = "-" if s.due_s is None else _hm(s.due_s)
    work = _work(s) + (f" (part {s.segment + 1})" if s.segment else "")
    if s.forecast:
        work += " (forecast)"
    return (
        f"| {_hm(s.start_s)} | {_hm(s.end_s)} | {s.campaign} | {work} | "
        f"{', '.join(s.devices)} | {due} | {closes} |"
    )
