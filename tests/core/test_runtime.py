"""The core on its own thread, driven from another thread as the GUI drives it."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
import trio

from core.events import TopicData
from core.peer import new_peer
from core.runtime import CoreRuntime
from tests.conftest import fast_config


def test_submit_cancel_and_stop_from_another_thread() -> None:
    events = []
    threads = set()

    def sink(event) -> None:
        threads.add(threading.current_thread().name)
        events.append(event)

    runtime = CoreRuntime(new_peer(fast_config(), sink).run)
    runtime.start()
    assert runtime.ready.wait(10) and runtime.error is None
    peer = runtime.value
    assert peer.running

    assert runtime.submit(peer.topics.subscribe, "t", 0.1).result(10) is None
    assert runtime.submit(peer.publish, "t", {"x": 1}).result(10) == 0  # nobody else in "t"

    async def slow() -> None:
        await trio.sleep(60)

    call = runtime.submit(slow)
    assert call.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        call.result(5)

    async def boom() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        runtime.submit(boom).result(5)

    for _ in range(50):
        if any(isinstance(e, TopicData) for e in events):
            break
        threading.Event().wait(0.1)
    assert any(isinstance(e, TopicData) for e in events)
    assert threads == {"peerdesk-core"}

    runtime.stop()
    assert not runtime.running
    assert peer.stopped.is_set()
    with pytest.raises(RuntimeError):
        runtime.submit(slow).result(1)
