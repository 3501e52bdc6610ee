"""Measurement noise as a function of the world, not of the order of calls.

A simulated instrument that drew its noise from one random stream in call order
would give every later reading a different value once a single reading was
taken again (a controller killed after the imager captured, before it recorded
the reply, takes that image again on resume): the retaken reading would shift
the stream for everything after it. Drawing each reading's noise from a
generator seeded by what identifies it in the world (the lab's seed, the
instrument, the vessel or sample, the lab time of the reading) makes a retaken
reading change only its own values, and a repeated run reproduce every reading.

Keys are stable integers (strings by CRC-32, times in milliseconds), never
Python's ``hash()``, which is salted per process.
"""

from __future__ import annotations

import zlib

import numpy as np

_MASK = (1 << 64) - 1


def _word(key: str | int | float) -> int:
    if isinstance(key, str):
        return zlib.crc32(key.encode())
    if isinstance(key, float):
        return round(key * 1000.0) & _MASK  # lab time, to the millisecond
    return int(key) & _MASK


def world_rng(seed: int, *keys: str | int | float) -> np.random.Generator:
    """A generator fixed by ``seed`` and ``keys`` (instrument, vessel or sample, lab time s)."""
    return np.random.default_rng(np.random.SeedSequence([_word(seed), *map(_word, keys)]))
