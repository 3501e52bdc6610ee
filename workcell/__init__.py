"""The core of the MSC workcell: config, assembly, clock, store and the `workcell` CLI.

Everything a protocol needs arrives through one :class:`~workcell.assembly.Workcell`
built by :func:`~workcell.assembly.build_workcell` from a validated config, so
swapping a simulator for hardware is a config change, never a code change.
"""

__version__ = "0.1.0"
