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

* a resource's absolute location is cached until it or a resource above it is
  assigned or unassigned (which forgets what was cached for the moved resource and
  everything under it: a location is its parent's plus its own, so nothing else's
  changes) or anything anywhere is rotated (a global generation counter), and only
  while the resource keeps the same parent and location object; callers get a
  copy, since some of PyLabRobot's back ends adjust the coordinate they are given.
  The 70 kg campaign assigns and unassigns about 6,400 times; forgetting every
  cached location at each, as the first version did, left the tip spots, troughs and
  other trays to be worked out again: one relative location in eight (one in 35 now).

* a resource's location relative to another (``get_location_wrt``: a STAR back end
  asks it for every channel of every command, twice, against the deck; each time
  PyLabRobot walks the tree to check the one is under the other and subtracts two
  absolute locations) is cached the same way, while both keep their parent and
  location objects: about 8 % of the controller's time in the 70 kg campaign.

* a resource's absolute size (the extent of its rotated corners: PyLabRobot builds
  eight coordinates and rotates them for every ``get_absolute_size_*``) is cached
  the same way, and also only while its own sizes stay what they were. A STAR
  aspirate or dispense asks it per channel, and ``LiquidHandler``'s check that a
  tip spot is on the deck compares the spot with the deck's by its sizes: together
  about a tenth of the controller's time in the 70 kg campaign.

* that check (``_assert_resources_exist``) first asks whether the deck's resource of
  that name is the very same object, which is what it always is: equal by
  definition, so PyLabRobot's field-by-field comparison is left for the rest.

* assigning a resource checks its names against the subtree it joins with two
  name sets (PyLabRobot compares every name of one with every name of the other,
  recursively: 10 % of the controller's time in the 70 kg campaign, whose trays
  go into and out of 210-slot incubator racks); the same conflicts are refused with
  the same message (the first in PyLabRobot's order). A large tree's names (the
  incubator's, hundreds) are counted once and kept counted: every assignment under
  it adds the newcomer's names, every unassignment takes them away, a failed one
  has them counted again, and a renamed root (the only resource PyLabRobot lets be
  renamed) is counted again. Walking the incubator's tree at every take-in was 3 %.

* ``LiquidHandler._log_command`` formats a command's arguments (coordinates and
  resources as text) for a debug line its logger then drops: it now formats only
  when the ``pylabrobot`` logger would print it (2 % of the controller's time).

All are exact: the same numbers as PyLabRobot computes, not approximations
(``tests/test_plr_geometry.py`` compares locations with and without, across
moves). ``install`` is idempotent and is called by the workcell factory.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import pylabrobot.resources.resource as _resource
from pylabrobot.liquid_handling.liquid_handler import LiquidHandler
from pylabrobot.resources import Coordinate, Resource
from pylabrobot.resources.rotation import Rotation
from pylabrobot.utils.linalg import matrix_vector_multiply_3x3

_original_matrix = Rotation.get_rotation_matrix
_original_location = Resource.get_absolute_location
_original_location_wrt = Resource.get_location_wrt
_original_assign = Resource.assign_child_resource
_original_unassign = Resource.unassign_child_resource
_original_rotate = Resource.rotate
_original_naming = Resource._check_naming_conflicts
_original_load_state = Resource.load_state
_original_size_x = Resource.get_absolute_size_x
_original_size_y = Resource.get_absolute_size_y
_original_size_z = Resource.get_absolute_size_z
_original_assert_exist = LiquidHandler._assert_resources_exist
_original_log_command = LiquidHandler._log_command
_plr_log = logging.getLogger("pylabrobot")  # PyLabRobot's liquid handler logs to it
_installed = False
_generation = 0
# per resource (by id): (generation, parent, location, {(x, y, z): location})
_locations: dict[int, tuple[int, Any, Any, dict[tuple[str, str, str], Coordinate]]] = {}
# per resource: (generation, parent, location, {(id(other), x, y, z): (other's parent,
# other's location, location relative to other)})
_relative: dict[int, tuple[int, Any, Any, dict[tuple[int, str, str, str], Any]]] = {}
_sizes: dict[int, tuple[int, Any, float, float, float, tuple[float, float, float]]] = {}
# per root of a large tree (by id): (the root, weakly: a run's incubator is not kept
# after the run; its name then; how many of each name the tree holds), kept up to date
# by every assignment and unassignment under it
_tree_names: dict[int, tuple[weakref.ref[Resource], str, Counter[str]]] = {}
COUNT_NAMES_FROM = 64  # a smaller tree is walked at each check (a plate being built)


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


def _changed() -> None:
    """Forget every cached answer (a rotation anywhere: rare)."""
    global _generation
    _generation += 1
    _locations.clear()
    _relative.clear()
    _sizes.clear()
    _tree_names.clear()


def _moved(resource: Any) -> None:
    """Forget what was cached for ``resource`` and everything under it, whose absolute
    locations, sizes and relative locations a move (an assignment or unassignment)
    changes; nothing else's changes (a location is the parent's plus its own). A
    location relative to a moved resource is one of a resource under it (PyLabRobot
    answers no other), so it is forgotten with that resource's."""
    if not isinstance(resource, Resource):
        return
    for node in _names(resource):
        key = id(node)
        _locations.pop(key, None)
        _relative.pop(key, None)
        _sizes.pop(key, None)


def _answers(cache: dict[int, Any], self: Resource) -> dict[Any, Any]:
    """The answers cached for ``self`` in ``cache``: none if it has another parent or
    location object than when they were cached, or anything was rotated since."""
    hit = cache.get(id(self))
    if (
        hit is None
        or hit[0] != _generation
        or hit[1] is not self.parent
        or hit[2] is not self.location
    ):
        hit = cache[id(self)] = (_generation, self.parent, self.location, {})
    return hit[3]


def _absolute_location(self: Resource, x: str = "l", y: str = "f", z: str = "b") -> Coordinate:
    answers = _answers(_locations, self)
    found = answers.get((x, y, z))
    if found is None:
        found = answers[x, y, z] = _original_location(self, x, y, z)
    out = object.__new__(Coordinate)
    out.__dict__.update(found.__dict__)
    return out


def _location_wrt(
    self: Resource, other: Resource, x: str = "l", y: str = "f", z: str = "b"
) -> Coordinate:
    answers = _answers(_relative, self)
    key = (id(other), x, y, z)
    found = answers.get(key)
    if found is None or found[0] is not other.parent or found[1] is not other.location:
        # PyLabRobot's own, which refuses a resource not under ``other``: never cached
        found = (other.parent, other.location, _original_location_wrt(self, other, x, y, z))
        answers[key] = found
    out = object.__new__(Coordinate)
    out.__dict__.update(found[2].__dict__)
    return out


def _absolute_sizes(self: Resource) -> tuple[float, float, float]:
    """(x, y, z) extents of the resource's rotated corners, as PyLabRobot computes them."""
    own = (self.get_size_x(), self.get_size_y(), self.get_size_z())
    hit = _sizes.get(id(self))
    if (
        hit is not None
        and hit[0] == _generation
        and hit[1] is self.parent
        and (hit[2], hit[3], hit[4]) == own
    ):
        return hit[5]
    corners = self._get_rotated_corners()
    xs, ys, zs = [c.x for c in corners], [c.y for c in corners], [c.z for c in corners]
    found = (max(xs) - min(xs), max(ys) - min(ys), max(zs) - min(zs))
    _sizes[id(self)] = (_generation, self.parent, *own, found)
    return found


def _absolute_size_x(self: Resource) -> float:
    return _absolute_sizes(self)[0]


def _absolute_size_y(self: Resource) -> float:
    return _absolute_sizes(self)[1]


def _absolute_size_z(self: Resource) -> float:
    return _absolute_sizes(self)[2]


def _load_state(self: Resource, state: dict[str, Any]) -> None:
    if "rotation" in state:  # a checkpoint's rotation: locations and sizes may change
        _changed()
    _original_load_state(self, state)


def _assert_resources_exist(self: LiquidHandler, resources: Any) -> None:
    deck = self.deck
    for r in resources:  # in order: the first resource not on the deck is the one named
        if deck.get_resource(r.name) is not r:
            _original_assert_exist(self, [r])


def _child(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("resource")


def _tree_change(child: Any, change: Callable[[], Any], after: Callable[[], None]) -> Any:
    """An assignment or unassignment of ``child``: what was cached under it forgotten
    before and after; ``after`` (the names' bookkeeping) once it has succeeded, and
    every tree's names counted again if it failed (the tree may be half changed)."""
    _moved(child)
    try:
        done = change()
    except BaseException:
        _tree_names.clear()
        raise
    finally:
        _moved(child)
    after()
    return done


def _assign(self: Resource, *args: Any, **kwargs: Any) -> Any:
    child = _child(args, kwargs)
    return _tree_change(
        child, lambda: _original_assign(self, *args, **kwargs), lambda: _joined(self, child)
    )


def _unassign(self: Resource, *args: Any, **kwargs: Any) -> Any:
    child, root = _child(args, kwargs), _root_of(self)
    return _tree_change(
        child, lambda: _original_unassign(self, *args, **kwargs), lambda: _left(root, child)
    )


def _rotate(self: Resource, *args: Any, **kwargs: Any) -> Any:
    _changed()
    return _original_rotate(self, *args, **kwargs)


def _names(root: Resource) -> Iterator[Resource]:
    """``root`` and everything under it, parents before children (PyLabRobot's order)."""
    stack = [root]
    while stack:
        res = stack.pop()
        yield res
        stack.extend(reversed(res.children))


def _root_of(resource: Resource) -> Resource:
    while resource.parent is not None:
        resource = resource.parent
    return resource


def _counted(root: Resource) -> Counter[str] | None:
    """The names under ``root`` as counted, if they still count its tree (only a root's
    own name can change: PyLabRobot refuses to rename an assigned resource)."""
    hit = _tree_names.get(id(root))
    if hit is None or hit[1] != root.name or root.parent is not None or hit[0]() is not root:
        return None
    return hit[2]


def _check_naming_conflicts(self: Resource, resource: Resource) -> None:
    taken = _counted(self)
    if taken is None:
        taken = Counter(r.name for r in _names(self))
        if self.parent is None and len(taken) >= COUNT_NAMES_FROM:
            key = id(self)
            gone = lambda _: _tree_names.pop(key, None)  # noqa: E731
            _tree_names[key] = (weakref.ref(self, gone), self.name, taken)
    for r in _names(resource):
        if taken[r.name] > 0:
            raise ValueError(f"Resource with name '{r.name}' already exists in the tree.")


def _joined(parent: Resource, child: Any) -> None:
    """``child`` (and its subtree) is now under ``parent``: its root counts its names."""
    if not isinstance(child, Resource):
        return
    _tree_names.pop(id(child), None)  # no longer a root
    taken = _counted(_root_of(parent))
    if taken is not None:
        taken.update(r.name for r in _names(child))


def _left(root: Resource, child: Any) -> None:
    """``child`` (and its subtree) has left ``root``'s tree."""
    taken = _counted(root) if isinstance(child, Resource) else None
    if taken is not None:
        taken.subtract(r.name for r in _names(child))


def _log_command(self: LiquidHandler, name: str, **kwargs: Any) -> None:
    """PyLabRobot formats every command's arguments for a debug line (resources by
    name, coordinates as text) before its logger decides whether to print it: only
    when it would."""
    if _plr_log.isEnabledFor(logging.DEBUG):
        _original_log_command(self, name, **kwargs)


def install() -> None:
    """Memoise PyLabRobot's geometry in this process (idempotent)."""
    global _installed
    if _installed:
        return
    Rotation.get_rotation_matrix = _rotation_matrix  # type: ignore[method-assign]
    _resource.matrix_vector_multiply_3x3 = _multiply  # type: ignore[attr-defined]
    Resource.get_absolute_location = _absolute_location  # type: ignore[method-assign]
    Resource.get_location_wrt = _location_wrt  # type: ignore[method-assign]
    Resource.assign_child_resource = _assign  # type: ignore[method-assign]
    Resource.unassign_child_resource = _unassign  # type: ignore[method-assign]
    Resource.rotate = _rotate  # type: ignore[method-assign]
    Resource._check_naming_conflicts = _check_naming_conflicts  # type: ignore[method-assign]
    Resource.get_absolute_size_x = _absolute_size_x  # type: ignore[method-assign]
    Resource.get_absolute_size_y = _absolute_size_y  # type: ignore[method-assign]
    Resource.get_absolute_size_z = _absolute_size_z  # type: ignore[method-assign]
    Resource.load_state = _load_state  # type: ignore[method-assign]
    LiquidHandler._assert_resources_exist = _assert_resources_exist  # type: ignore[method-assign]
    LiquidHandler._log_command = _log_command  # type: ignore[method-assign]
    _installed = True


def uninstall() -> None:
    """PyLabRobot's own geometry again (tests compare the two)."""
    global _installed
    Rotation.get_rotation_matrix = _original_matrix  # type: ignore[method-assign]
    _resource.matrix_vector_multiply_3x3 = matrix_vector_multiply_3x3  # type: ignore[attr-defined]
    Resource.get_absolute_location = _original_location  # type: ignore[method-assign]
    Resource.get_location_wrt = _original_location_wrt  # type: ignore[method-assign]
    Resource.assign_child_resource = _original_assign  # type: ignore[method-assign]
    Resource.unassign_child_resource = _original_unassign  # type: ignore[method-assign]
    Resource.rotate = _original_rotate  # type: ignore[method-assign]
    Resource._check_naming_conflicts = _original_naming  # type: ignore[method-assign]
    Resource.get_absolute_size_x = _original_size_x  # type: ignore[method-assign]
    Resource.get_absolute_size_y = _original_size_y  # type: ignore[method-assign]
    Resource.get_absolute_size_z = _original_size_z  # type: ignore[method-assign]
    Resource.load_state = _original_load_state  # type: ignore[method-assign]
    LiquidHandler._assert_resources_exist = _original_assert_exist  # type: ignore[method-assign]
    LiquidHandler._log_command = _original_log_command  # type: ignore[method-assign]
    _changed()
    _installed = False
