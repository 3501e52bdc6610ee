"""The ``workcell`` command line: the one room allowed to reach every floor.

Its modules import the kernel at the top and everything above it (protocols,
flows) lazily, inside the command that needs it, so ``workcell --help`` stays
fast and the layers below never learn that a command line exists.
"""
