"""core/ipfs/bitswap.py serving: a WANT-HAVE is answered from the store's cheap ``has``, never by
reading the block; a WANT-BLOCK reads it. A real Peerdesk peer with a real block store, asked by
a raw py-libp2p peer speaking the wire format (tests/core/libp2p_compat/test_compat_bitswap.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from core import libp2p_compat as compat
from core.ipfs import dagpb
from tests.conftest import connect, fast_config, peer_group
from tests.core.libp2p_compat.test_compat_bitswap import RawPeer, unknown_cid, wants


class Counting:
    """The store's own get, counting what it is asked for."""

    def __init__(self, get: Callable[[bytes], bytes | None]) -> None:
        self.get = get
        self.asked: list[bytes] = []

    def __call__(self, cid: bytes) -> bytes | None:
        self.asked.append(cid)
        return self.get(cid)


async def test_want_have_for_a_big_block_does_not_read_it(tmp_path: Path) -> None:
    async with (
        peer_group(1, config=lambda: fast_config(files_dir=str(tmp_path / "pd"))) as [(pd, _)],
        peer_group(1) as [(raw_peer, _)],
    ):
        raw = RawPeer(raw_peer)
        await connect(raw_peer, pd)
        files = pd.require_files()
        data = os.urandom(200_000)
        root, _ = await files.store_file("big.bin", data)
        big = dagpb.parse_cid(root)
        assert files.store.has(big)
        reads = Counting(files.store.get)
        files.bitswap.get_block = reads
        nobody = unknown_cid()
        await raw.send(pd, wants((big, compat.WANT_HAVE, True), (nobody, compat.WANT_HAVE, True)))
        await raw.wait(lambda: len(raw.presences()) == 2)
        assert raw.presences() == {
            big: compat.PRESENCE_HAVE,
            nobody: compat.PRESENCE_DONT_HAVE,
        }
        assert not raw.blocks()
        assert reads.asked == []  # answered by has(), the block never read
        # A WANT-BLOCK for it still reads and sends it.
        await raw.send(pd, wants((big, compat.WANT_BLOCK, True)))
        await raw.wait(raw.blocks)
        assert big in reads.asked
        sent = next(iter(raw.blocks().values()))
        assert dagpb.verify(big, sent)
