"""Unit operations authored in Python: seeding, media exchange, passaging, harvest.

Each protocol is a plain ``async def run(workcell, params)`` that reads like a bench
protocol, with a pydantic parameter model. It plans first and refuses bad input
with every problem listed, before any device moves; the same code runs on
hardware and in a dry-run.
"""
