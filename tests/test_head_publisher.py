"""The record head's artifact goes out after a step without the next step waiting for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flows import steps
from flows.steps import HeadPublisher


def test_a_step_does_not_wait_for_the_head_and_flush_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    release = asyncio.Event()

    async def publish(folder: Path) -> None:
        await release.wait()  # a slow server
        sent.append(str(folder))

    monkeypatch.setattr(steps, "publish_head", publish)

    async def run() -> None:
        heads = HeadPublisher(tmp_path, every_s=0.0)
        await asyncio.wait_for(heads.step_ended(), 1.0)  # returns while the server is slow
        await asyncio.wait_for(heads.step_ended(), 1.0)  # one in flight: no second
        assert sent == []
        release.set()
        await heads.flush()  # waits for the one in flight, then the newest head
        assert sent == [str(tmp_path)] * 2
        await heads.flush()  # nothing new since
        assert len(sent) == 2

    asyncio.run(run())


def test_a_failed_publication_raises_at_the_next_step_or_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def publish(folder: Path) -> None:
        raise ConnectionError("the Prefect server is gone")

    monkeypatch.setattr(steps, "publish_head", publish)

    async def run() -> None:
        heads = HeadPublisher(tmp_path, every_s=0.0)
        await heads.step_ended()
        await asyncio.sleep(0)  # the publication runs and fails
        with pytest.raises(ConnectionError):
            await heads.step_ended()
        await heads.step_ended()
        with pytest.raises(ConnectionError):
            await heads.flush()

    asyncio.run(run())
