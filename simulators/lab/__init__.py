"""The simulated lab: its own process, on disk, that outlives the controller.

``spec`` (what the lab holds), ``world`` (the devices, labware, cells and clock
answering requests), ``store`` (state and physical log on disk), ``server`` (the
process serving the lab link), ``process`` (starting, finding and stopping it).
"""
