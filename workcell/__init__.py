"""The kernel of the MSC workcell: clock, errors, action log, store, batch record,
device locks, labware helpers and the CPU pool.

Everything here is imported by the floors above (devices, simulators, the
assembly, protocols, flows, the CLI) and imports none of them; see
``docs/architecture.md`` for the whole house.
"""

__version__ = "0.1.0"
