"""The floor that binds devices and simulators into one workcell.

``config`` describes a workcell (its devices, drivers, deck and reagents) with the
devices' and simulators' own parameter models; ``build`` is the one factory that
turns a config into a :class:`~workcell.assembly.workcell.Workcell`; ``session``
opens a run folder's workcell with its device locks; ``checkpoint`` carries a
simulated workcell's state between processes. It sits above ``devices/`` and
``simulators/`` and below ``protocols/``.
"""
