"""``python -m simulators.lab --state-dir DIR``: the simulated lab process."""

from simulators.lab.server import main

main()
