"""The batch record on the command line: verify it, the users, QC results, signatures.

``workcell record verify`` opens the store read-only and runs every check
(``workcell.batch.integrity``); ``workcell users`` keeps the user registry;
``workcell release`` enters QC results and signs, each under a user id proven by
the user's secret (asked for, never an argument), and wakes a release flow
waiting in Prefect for them. Errors end as the CLI's others do (``GuardedGroup``
in ``workcell.cli.app``): one line, exit 2 for bad input (a wrong secret, a
refused signature, an invalid QC file, a store that cannot be read), 1 for a
fault. ``record verify`` exits 1 with every problem it found when the record is
not intact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from workcell.errors import WorkcellError
from workcell.store import STORE_FILE, Store

out = Console(width=max(120, Console().width))
err = Console(stderr=True, soft_wrap=True)

record_app = typer.Typer(no_args_is_help=True, help="The batch record: verify it.")
release_app = typer.Typer(
    no_args_is_help=True, help="Release: QC results, criteria, signatures (operator, QA)."
)
users_app = typer.Typer(
    no_args_is_help=True, help="The user registry: who may enter results and sign, and as what."
)

RunDirArg = Annotated[Path, typer.Argument(help="the run folder (holds workcell.db)")]
UsersOpt = Annotated[
    Path | None,
    typer.Option(
        "--users", help="user registry JSON (default: $WORKCELL_USERS or ~/.config/msc-workcell)"
    ),
]
UserOpt = Annotated[str, typer.Option("--user", "-u", help="your user id")]


def _registry(users: Path | None) -> Any:
    from workcell.batch.users import UserRegistry

    return UserRegistry(users)


def _secret(user: str, prompt: str = "secret for") -> str:
    """A secret typed at the terminal (not echoed), or one line of standard input (scripts)."""
    import sys

    if sys.stdin.isatty():
        return str(typer.prompt(f"{prompt} {user}", hide_input=True))
    line = sys.stdin.readline()
    if not line.strip():
        raise WorkcellError(f"expected the {prompt} {user} as a line on standard input")
    return line.rstrip("\r\n")


def _new_secret(user: str) -> str:
    """A new secret: typed twice at the terminal, or one line of standard input (scripts)."""
    import sys

    if sys.stdin.isatty():
        return str(
            typer.prompt(f"new secret for {user}", hide_input=True, confirmation_prompt=True)
        )
    return _secret(user, "new secret for")


def _open_for_writing(run_dir: Path) -> Store:
    """The run's store, after the quick check that its record is all there."""
    from workcell.batch.integrity import refuse_damaged

    path = run_dir / STORE_FILE
    if not path.is_file():
        raise WorkcellError(f"no batch record in {run_dir} (expected {path})")
    refuse_damaged(path)
    return Store(path)


def _wake_release(run_dir: Path) -> None:
    """Resume a release flow waiting in Prefect for this run (if PREFECT_API_URL is set)."""
    import os

    if not os.environ.get("PREFECT_API_URL"):
        return
    from flows.release import resume_waiting

    try:
        resumed = resume_waiting(run_dir)
    except Exception as e:  # noqa: BLE001 - the store has it; the UI can resume the flow
        err.print(f"[yellow]warning:[/] could not resume the release flow: {e}")
        return
    for run_id in resumed:
        out.print(f"resumed release flow run {run_id}")


# --- record --------------------------------------------------------------------


@record_app.command("verify")
def record_verify(
    run_dir: RunDirArg,
    users: UsersOpt = None,
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            "--anchor", help="a head kept elsewhere, ENTRIES:HASH (the report or artifact)"
        ),
    ] = None,
    prefect: Annotated[
        bool,
        typer.Option("--prefect", help="also check the head anchored in the Prefect artifact"),
    ] = False,
) -> None:
    """Exit 0 if the record is whole and unchanged; otherwise say where and exit 1.

    Read-only: works on an archived run folder nobody may write to.
    """
    from workcell import anchor as anchors
    from workcell.batch.integrity import verify_run

    if not run_dir.is_dir():
        raise WorkcellError(f"no run folder {run_dir}")
    external = [(f"--anchor {a}", [anchors.parse(a)]) for a in anchor or []]
    if prefect:
        from flows.steps import read_head_artifact

        external.append(read_head_artifact(run_dir))
    result = verify_run(run_dir, _registry(users), external)
    if result.ok:
        out.print(result.line())
        return
    err.print("[bold red]record NOT intact[/]")
    for p in result.problems:
        err.print(f"  {p}", highlight=False, markup=False)
    raise typer.Exit(code=1)


# --- users ---------------------------------------------------------------------


@users_app.command("add")
def users_add(
    user_id: Annotated[str, typer.Argument(help="the new user's id (lowercase, e.g. j.doe)")],
    name: Annotated[str, typer.Option("--name", help="the name signatures show")],
    role: Annotated[
        list[str], typer.Option("--role", help="operator, analyst, reviewer or qa (repeat)")
    ],
    by: Annotated[
        str | None, typer.Option("--by", help="the QA user adding them (not for the first)")
    ] = None,
    users: UsersOpt = None,
) -> None:
    """Add a user; asks for their new secret, and for the adding QA user's secret."""
    from workcell.batch.users import ROLES, check_user_id

    check_user_id(user_id)
    bad = [r for r in role if r not in ROLES]
    if bad:
        raise WorkcellError(f"unknown role {bad[0]!r}: roles are {', '.join(ROLES)}")
    registry = _registry(users)
    endorser = registry.authenticate(by, _secret(by)) if by else None
    secret = _new_secret(user_id)
    user = registry.add(user_id, name, role, secret, endorser)  # type: ignore[arg-type]
    out.print(f"added {user.id} ({user.name}): {', '.join(user.roles)}; registry {registry.path}")


@users_app.command("disable")
def users_disable(
    user_id: Annotated[str, typer.Argument(help="the user to deactivate")],
    by: Annotated[str, typer.Option("--by", help="the QA user deactivating them")],
    enable: Annotated[bool, typer.Option("--enable", help="reactivate instead")] = False,
    users: UsersOpt = None,
) -> None:
    """Deactivate a user (a lost secret, a person who left): they can no longer sign."""
    registry = _registry(users)
    qa = registry.authenticate(by, _secret(by))
    user = registry.set_active(user_id, enable, qa)
    out.print(f"{user.id} is {'active' if user.active else 'deactivated'} (by {by})")


@users_app.command("passwd")
def users_passwd(
    user_id: Annotated[str, typer.Argument(help="your user id")], users: UsersOpt = None
) -> None:
    """Change your secret (your key stays: signatures you made stay valid)."""
    registry = _registry(users)
    old = _secret(user_id)
    new = _new_secret(user_id)
    registry.change_secret(user_id, old, new)
    out.print(f"secret of {user_id} changed")


@users_app.command("list")
def users_list(users: UsersOpt = None) -> None:
    """Every user: id, name, roles, who added them; and whether the registry checks out."""
    registry = _registry(users)
    if not registry.path.exists():
        out.print(
            f"no user registry at {registry.path} yet: the first user, a QA user, is added "
            "with `workcell users add ID --name NAME --role qa`"
        )
        return
    table = Table("user id", "name", "roles", "active", "added by", "added (UTC)")
    for u in registry.users():
        table.add_row(
            u.id, u.name, ", ".join(u.roles), str(u.active), u.added_by, f"{u.added_utc:%Y-%m-%d}"
        )
    out.print(table)
    problems = registry.problems()
    for p in problems:
        err.print(f"[bold red]registry problem:[/] {p}", highlight=False)
    if problems:
        raise typer.Exit(code=1)


# --- release -------------------------------------------------------------------


def print_release(store: Store, registry: Any) -> Any:
    from workcell.batch.release import Status, release_state

    state = release_state(store, registry)
    out.print(state.integrity.line(), highlight=False, markup=False)
    table = Table("criterion", "requirement", "result", "status", title="release criteria")
    colours = {Status.PASS: "green", Status.FAIL: "red", Status.MISSING: "yellow"}
    for c in state.criteria:
        table.add_row(c.name, c.requirement, c.result, f"[{colours[c.status]}]{c.status.value}")
    out.print(table)
    for s in state.signatures:
        st = s.statement
        out.print(
            f"signed: {st.name} ({st.user_id}, {st.role}) {st.meaning} "
            f"{st.utc.isoformat(timespec='seconds')}, record at entry {st.entries}",
            highlight=False,
            markup=False,
        )
    if state.released:
        out.print("[bold green]RELEASED[/]")
    else:
        out.print(f"[bold red]NOT RELEASED[/]: {state.stage.value}: {state.reason}")
    return state


@release_app.command("status")
def release_status(run_dir: RunDirArg, users: UsersOpt = None) -> None:
    """The record's check, each criterion (pass / fail / missing), the signatures, the verdict."""
    path = run_dir / STORE_FILE
    if not path.is_file():
        raise WorkcellError(f"no batch record in {run_dir} (expected {path})")
    store = Store(path, read_only=True)
    try:
        print_release(store, _registry(users))
    finally:
        store.close()


@release_app.command("enter")
def release_enter(
    run_dir: RunDirArg,
    results: Annotated[Path, typer.Argument(help="JSON: one QC result or a list of them")],
    user: UserOpt,
    users: UsersOpt = None,
) -> None:
    """Enter QC results (flow cytometry, sterility, mycoplasma, endotoxin): all or none."""
    from workcell.batch.release import enter_results_as, parse_results

    try:
        data = json.loads(results.read_text())
    except (OSError, ValueError) as e:
        raise WorkcellError(f"QC results {results}: {e}") from None
    parsed = parse_results(data)
    registry = _registry(users)
    secret = _secret(user)
    store = _open_for_writing(run_dir)
    try:
        enter_results_as(store, registry, user, secret, parsed)
    finally:
        store.close()
    out.print(f"entered {len(parsed)} QC results from {results} as {user}")
    _wake_release(run_dir)


@release_app.command("simulate-qc")
def release_simulate_qc(run_dir: RunDirArg) -> None:
    """Dry-run only: a simulated QC lab reports a healthy batch (sterility after 14 days)."""
    from workcell.batch.release import simulated_qc

    store = _open_for_writing(run_dir)
    try:
        for r in simulated_qc(store):
            shown = r.markers_percent or r.result or r.value
            out.print(f"{r.test}: {shown} ({r.method}, reported {r.reported_at:%Y-%m-%d})")
    finally:
        store.close()
    _wake_release(run_dir)


@release_app.command("sign")
def release_sign(
    run_dir: RunDirArg,
    user: UserOpt,
    meaning: Annotated[str, typer.Option("--meaning", help="performed, reviewed or approved")],
    users: UsersOpt = None,
) -> None:
    """Sign the batch under your user id and secret; QA's 'approved' releases it."""
    from workcell.batch.release import sign

    if meaning not in ("performed", "reviewed", "approved"):
        raise WorkcellError("--meaning is performed, reviewed or approved")
    registry = _registry(users)
    secret = _secret(user)
    store = _open_for_writing(run_dir)
    try:
        sig = sign(store, registry, user, secret, meaning)  # type: ignore[arg-type]
        st = sig.statement
        out.print(
            f"{st.name} ({st.user_id}) signed {st.meaning} at "
            f"{st.utc.isoformat(timespec='seconds')}: record at entry {st.entries}",
            highlight=False,
        )
        print_release(store, registry)
    finally:
        store.close()
    _wake_release(run_dir)
