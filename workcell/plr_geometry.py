"""PyLabRobot's resource geometry, memoised: the same coordinates at a fifth of the cost.

Every aspirate, dispense and tip pick-up asks PyLabRobot for the absolute location
of the resources involved, which walks up the resource tree and, at each level,
builds a rotation matrix from sines and cosines and multiplies it in pure Python.
Profiling a dry-run campaign showed this was about three quarters of each
liquid-handling call (2.8 ms of 3.7 ms). Nothing on a deck is rotated, and a
rotation matrix depends on its three angles alone, so:

* ``Rotation.get_rotation_matrix`` is cached by its angles (one matrix per
  distinct rotation, shared; callers only read it);
* multiplying by the identity (no rotation) returns the vector as it is.

Both are exact: the same numbers as PyLabRobot computes, not approximations
(``tests/test_plr_geometry.py`` compares locations with and without). ``install``
is idempotent and is called by the workcell factory.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pylabrobot.resources.resource as _resource
from pylabrobot.resources.rotation import Rotation
from pylabrobot.utils.linalg import matrix_vector_multiply_3x3

_original_matrix = Rotation.get_rotation_matrix
_installed = False


@lru_cache(maxsize=1024)
def _matrix(x: float, y: float, z: float) -> Any:
    return _original_matrix(Rotation(x, y, z))


_IDENTITY = _matrix(0, 0, 0)


def _rotation_matrix(self: Rotation) -> Any:
    return _matrix(self.x, self.y, self.z)


def _multiply(matrix: Any, vector: Any) -> list[float]:
    if matrix is _IDENTITY:
        return [vector[0], vector[1], vector[2]]
    return matrix_vector_multiply_3x3(matrix, vector)  # type: ignore[no-any-return]


def install() -> None:
    """Memoise PyLabRobot's rotation matrices in this process (idempotent)."""
    global _installed
    if _installed:
        return
    Rotation.get_rotation_matrix = _rotation_matrix  # type: ignore[method-assign]
    _resource.matrix_vector_multiply_3x3 = _multiply  # type: ignore[attr-defined]
    _installed = True


def uninstall() -> None:
    """PyLabRobot's own geometry again (tests compare the two)."""
    global _installed
    Rotation.get_rotation_matrix = _original_matrix  # type: ignore[method-assign]
    _resource.matrix_vector_multiply_3x3 = matrix_vector_multiply_3x3  # type: ignore[attr-defined]
    _installed = False
