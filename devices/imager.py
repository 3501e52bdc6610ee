"""Confluence imager: front end and back-end interface.

The imager reports, per well of a plate, the fraction of the growth area the cells
cover (0-1). The back end decides how: a simulator reads the culture model, a real
imager takes brightfield images that a confluence estimator segments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pylabrobot.resources import Plate


class ImagerBackend(ABC):
    async def setup(self) -> None:  # noqa: B027 - optional hook
        """Open the connection; most back ends need nothing."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Close the connection."""

    @abstractmethod
    async def confluence(self, plate: Plate) -> dict[str, float]:
        """Confluence per well (PyLabRobot well name -> 0..1)."""


class ConfluenceImager:
    """The imager a protocol talks to."""

    def __init__(self, name: str, backend: ImagerBackend) -> None:
        self.name = name
        self.backend = backend

    async def setup(self) -> None:
        await self.backend.setup()

    async def stop(self) -> None:
        await self.backend.stop()

    async def confluence(self, plate: Plate) -> dict[str, float]:
        return await self.backend.confluence(plate)
