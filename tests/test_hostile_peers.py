"""Hostile remote peers (issue 10, items 3 and 4): real py-libp2p hosts on loopback that ask
for answers and never read them, write past Yamux windows, leave direct-message frames
unfinished. Each test asserts the victim peer alive, an honest peer answered within a second,
RSS growth bounded (the bound is in the test), and the victim's data intact."""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.peerinfo import PeerInfo

from core import fileproto, identity
from core import libp2p_compat as compat
from core.peer import Peer

from .conftest import fast_config, peer_group
from .test_hostile_local import HONEST_REPLY, rss_bytes

MiB = 1024 * 1024


@asynccontextmanager
async def hostile_host() -> AsyncIterator[IHost]:
    """A bare py-libp2p host, built as ours are, that the test drives by hand."""
    host = compat.build_host(identity.generate())
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        yield host


async def dial(host: IHost, victim: Peer) -> None:
    await host.connect(PeerInfo(victim.peer_id, victim.host.get_addrs()))


def stores(tmp_path: Path):
    made = iter(range(100))
    return lambda: fast_config(files_dir=str(tmp_path / f"p{next(made)}"))


async def honest_listing(honest: Peer, victim: Peer, expect: str) -> None:
    """An honest peer's file-list request is answered within a second, with the victim's file."""
    assert honest.files is not None
    with trio.fail_after(HONEST_REPLY):
        listing = await honest.files.service.request_list(victim.peer_id)
    assert expect in listing["entries"]


async def intact(victim: Peer, name: str, digest: str) -> None:
    assert victim.files is not None
    cid = (await victim.files.tree.listing())["entries"][name]["cid"]
    from core import dagpb

    data = b"".join(victim.files.tree.read(dagpb.parse_cid(cid)))
    assert hashlib.sha256(data).hexdigest() == digest


async def test_slow_getfile_readers_cost_a_bounded_number_of_answers(tmp_path: Path) -> None:
    """16 GetFile requests for a 12 MiB file from one peer that never reads: at most
    fileproto.ANSWERS_PER_PEER answers are built at a time. RSS bound: 200 MiB (without the
    bound all 16 answers, ~60 MiB each while built, were held at once)."""
    async with peer_group(2, config=stores(tmp_path)) as [(victim, _), (honest, _)]:
        assert victim.files is not None
        content = os.urandom(12 * MiB)
        digest = hashlib.sha256(content).hexdigest()
        await victim.files.store_file("big.bin", content)
        cid = (await victim.files.tree.listing())["entries"]["big.bin"]["cid"]
        del content
        await honest.connect(victim.listen_addrs()[0])
        before = rss_bytes()
        async with hostile_host() as evil:
            await dial(evil, victim)
            streams = []
            request = bytes([fileproto.GET_FILE]) + fileproto.encode_frame(
                fileproto.dumps({"cid": cid})
            )
            for _ in range(16):
                stream = await evil.new_stream(victim.peer_id, [fileproto.PROTOCOL])
                await stream.write(request)
                streams.append(stream)
            await trio.sleep(4)  # let the victim build what it will
            grown = rss_bytes() - before
            await honest_listing(honest, victim, "big.bin")
            assert victim.running
        assert grown < 200 * MiB, f"RSS grew {grown / MiB:.0f} MiB"
        await intact(victim, "big.bin", digest)


async def test_writing_past_the_yamux_window_is_not_buffered(tmp_path: Path) -> None:
    """A peer writes 96 MiB of DATA frames on one stream, ignoring the receive window, to a
    handler that does not read. RSS bound: 48 MiB (the library buffered all 96 MiB)."""
    async with peer_group(2, config=stores(tmp_path)) as [(victim, _), (honest, _)]:
        assert victim.files is not None
        await victim.files.store_file("keep.txt", b"keep me")
        digest = hashlib.sha256(b"keep me").hexdigest()
        stalled = trio.Event()

        async def not_reading(stream: object) -> None:
            stalled.set()
            await trio.sleep_forever()

        victim.host.set_stream_handler("/test/sink/1.0.0", not_reading)
        await honest.connect(victim.listen_addrs()[0])
        before = rss_bytes()
        async with hostile_host() as evil:
            await dial(evil, victim)
            stream = await evil.new_stream(victim.peer_id, ["/test/sink/1.0.0"])
            await stream.write(b"hello")
            with trio.fail_after(5):
                await stalled.wait()
            conn = stream.muxed_conn
            sid = stream.muxed_stream.stream_id
            chunk = os.urandom(MiB)
            header = struct.pack(">BBHII", 0, 0, 0, sid, len(chunk))
            with trio.move_on_after(30):
                for _ in range(96):
                    await conn._write_frame(header + chunk)
            await trio.sleep(1)
            grown = rss_bytes() - before
            await honest_listing(honest, victim, "keep.txt")
            assert victim.running
        assert grown < 48 * MiB, f"RSS grew {grown / MiB:.0f} MiB"
        await intact(victim, "keep.txt", digest)
