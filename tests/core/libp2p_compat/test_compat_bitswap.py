"""Bitswap against py-libp2p 0.8.1 (core/libp2p_compat/bitswap.py, core/ipfs/bitswap.py): the
schema we borrow, and our engine as a go / js peer sees it, driven by a raw py-libp2p host
that speaks the wire format itself (answers on streams Peerdesk opens, prefixes, HAVE and
DONT_HAVE, capped ledgers, unsolicited blocks dropped, garbage survived)."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest
import trio
from libp2p.bitswap.client import BitswapClient

from core import libp2p_compat as compat
from core.ipfs import bitswap, bitswap_wire, dagpb
from core.libp2p_compat import BitswapMessage
from core.peer import Peer
from tests.conftest import connect, fast_config, peer_group

HELLO_CID = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"


def test_schema_we_borrow_is_unchanged() -> None:
    fields = {f.name: f.number for f in BitswapMessage.DESCRIPTOR.fields}
    assert fields == {
        "wantlist": 1,
        "blocks": 2,
        "payload": 3,
        "blockPresences": 4,
        "pendingBytes": 5,
    }
    entry = BitswapMessage.Wantlist.Entry.DESCRIPTOR.fields
    assert {f.name: f.number for f in entry} == {
        "block": 1,
        "priority": 2,
        "cancel": 3,
        "wantType": 4,
        "sendDontHave": 5,
    }
    assert {f.name: f.number for f in BitswapMessage.Block.DESCRIPTOR.fields} == {
        "prefix": 1,
        "data": 2,
    }
    assert (compat.WANT_BLOCK, compat.WANT_HAVE) == (0, 1)
    assert (compat.PRESENCE_HAVE, compat.PRESENCE_DONT_HAVE) == (0, 1)


def test_why_we_do_not_use_the_library_client() -> None:
    """If these change, py-libp2p's own client may have learnt to answer like go and js do:
    worth a look before keeping our engine."""
    assert hasattr(BitswapClient, "_send_wantlist_responses_inline")
    assert "_read_responses_from_stream" in inspect.getsource(BitswapClient)


def test_cid_prefixes() -> None:
    v0 = dagpb.cid_v0(b"x")
    assert bitswap_wire.prefix(v0) == bytes.fromhex("00701220")
    assert bitswap_wire.prefix(dagpb.cid_v1_dagpb(b"x")) == bytes.fromhex("01701220")
    raw = b"\x01\x55" + v0
    assert bitswap_wire.prefix(raw) == bytes.fromhex("01551220")


# -- a raw bitswap peer -------------------------------------------------------------------


class RawPeer:
    """A py-libp2p peer that speaks bitswap by hand and records what Peerdesk sends it."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.messages: list[BitswapMessage] = []
        self.streams = 0
        self._changed = trio.Event()
        for protocol in compat.BITSWAP_PROTOCOLS:
            peer.host.set_stream_handler(protocol, self._handle)

    async def _handle(self, stream) -> None:
        self.streams += 1
        reader = bitswap_wire.MessageReader(stream)
        try:
            while True:
                self.messages.append(bitswap_wire.decode(await reader.next()))
                self._changed.set()
                self._changed = trio.Event()
        except bitswap_wire.WireError:
            pass

    async def send(self, to: Peer, *messages: BitswapMessage, raw: bytes = b"") -> None:
        """Like Helia: a stream of our own, closed once written; answers must come back on
        a stream the other side opens."""
        stream = await self.peer.host.new_stream(to.peer_id, [compat.BITSWAP_120])
        for message in messages:
            await stream.write(bitswap_wire.encode(message))
        if raw:
            await stream.write(raw)
        await stream.close()

    async def wait(self, predicate, timeout: float = 10.0):
        with trio.fail_after(timeout):
            while not (result := predicate()):
                await self._changed.wait()
            return result

    def blocks(self) -> dict[bytes, bytes]:
        return {bytes(b.prefix): bytes(b.data) for m in self.messages for b in m.payload}

    def presences(self) -> dict[bytes, int]:
        return {bytes(p.cid): p.type for m in self.messages for p in m.blockPresences}


def wants(*entries: tuple[bytes, int, bool]) -> BitswapMessage:
    message = BitswapMessage()
    for cid, want_type, dont_have in entries:
        message.wantlist.entries.add(block=cid, wantType=want_type, sendDontHave=dont_have)
    return message


def unknown_cid() -> bytes:
    return dagpb.cid_v1_dagpb(os.urandom(16))


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def test_answers_as_go_and_js_expect(tmp_path: Path) -> None:
    async with (
        peer_group(1, config=lambda: fast_config(files_dir=str(tmp_path / "pd"))) as [(pd, _)],
        peer_group(1) as [(raw_peer, _)],
    ):
        raw = RawPeer(raw_peer)
        await connect(raw_peer, pd)
        files = pd.require_files()
        await files.store_file("docs/hello.txt", b"hello world\n")
        big_data = os.urandom(5000)
        big, _ = await files.store_file("big.bin", big_data)
        shard = dagpb.parse_cid((await files.tree.entries())["docs"].cid)  # a CIDv0 HAMT
        assert dagpb.cid_parts(shard).version == 0
        hello = dagpb.parse_cid(HELLO_CID)
        nobody, silent = unknown_cid(), unknown_cid()
        await raw.send(
            pd,
            wants(
                (hello, compat.WANT_BLOCK, True),
                (shard, compat.WANT_BLOCK, True),
                (dagpb.parse_cid(big), compat.WANT_HAVE, True),
                (nobody, compat.WANT_BLOCK, True),
                (silent, compat.WANT_BLOCK, False),
            ),
        )
        await raw.wait(lambda: len(raw.blocks()) == 2 and len(raw.presences()) == 2)
        blocks = raw.blocks()
        assert dagpb.verify(hello, blocks[bytes.fromhex("01701220")])
        assert dagpb.verify(shard, blocks[bytes.fromhex("00701220")])  # not an empty prefix
        assert raw.presences() == {
            dagpb.parse_cid(big): compat.PRESENCE_HAVE,  # 5 kB: HAVE, not the block
            nobody: compat.PRESENCE_DONT_HAVE,
        }
        assert raw.streams >= 1  # on a stream Peerdesk opened: ours was closed
        # A WANT-HAVE, even for a tiny block, gets HAVE (answered by the store's has(), its size
        # unknown); the unanswered want waits in the ledger.
        before = len(raw.messages)
        await raw.send(pd, wants((hello, compat.WANT_HAVE, True)))
        await raw.wait(
            lambda: any(
                p.cid == hello and p.type == compat.PRESENCE_HAVE
                for m in raw.messages[before:]
                for p in m.blockPresences
            )
        )
        assert files.bitswap.ledger_size(raw_peer.peer_id) == 2  # nobody + silent
        with trio.move_on_after(0.5):
            await raw.wait(lambda: silent in raw.presences())
        assert silent not in raw.presences()


async def test_a_want_answered_dont_have_is_served_once_we_store_the_block(
    tmp_path: Path,
) -> None:
    """boxo and Helia keep a want open after DONT_HAVE and take the block when it comes: a
    file imported after the ask reaches the asker without a new wantlist."""
    async with (
        peer_group(1, config=lambda: fast_config(files_dir=str(tmp_path / "pd"))) as [(pd, _)],
        peer_group(1) as [(raw_peer, _)],
    ):
        raw = RawPeer(raw_peer)
        await connect(raw_peer, pd)
        hello = dagpb.parse_cid(HELLO_CID)
        await raw.send(pd, wants((hello, compat.WANT_BLOCK, True)))
        await raw.wait(lambda: raw.presences().get(hello) == compat.PRESENCE_DONT_HAVE)
        assert not raw.blocks()
        files = pd.require_files()
        await files.store_file("later/hello.txt", b"hello world\n")
        blocks = await raw.wait(raw.blocks)
        assert dagpb.verify(hello, blocks[bytes.fromhex("01701220")])
        assert files.bitswap.ledger_size(raw_peer.peer_id) == 0


async def test_unsolicited_blocks_are_dropped(tmp_path: Path) -> None:
    async with (
        peer_group(1, config=lambda: fast_config(files_dir=str(tmp_path / "pd"))) as [(pd, _)],
        peer_group(1) as [(raw_peer, _)],
    ):
        raw = RawPeer(raw_peer)
        await connect(raw_peer, pd)
        files = pd.require_files()
        before = files.store.stats()
        message = BitswapMessage()
        for _ in range(48):
            data = os.urandom(64 * 1024)
            message.payload.add(prefix=bytes.fromhex("01551220"), data=data)
        await raw.send(pd, message)
        with trio.fail_after(10):
            while files.bitswap.unsolicited < 48:
                await trio.sleep(0.02)
        assert files.store.stats() == before


async def test_huge_wantlist_is_capped_and_the_peer_serves_on(tmp_path: Path) -> None:
    async with (
        peer_group(1, config=lambda: fast_config(files_dir=str(tmp_path / "pd"))) as [(pd, _)],
        peer_group(1, config=lambda: fast_config(files_dir=str(tmp_path / "ok"))) as [(ok, _)],
        peer_group(1) as [(raw_peer, _)],
    ):
        raw = RawPeer(raw_peer)
        await connect(raw_peer, pd)
        await connect(ok, pd)
        files = pd.require_files()
        data = os.urandom(600_000)
        cid, _ = await files.store_file("wanted.bin", data)
        rss = rss_mib()
        # 100 000 wants for blocks nobody has, as go would split them: 4 messages of 25 000
        for _ in range(4):
            entries = [(unknown_cid(), compat.WANT_BLOCK, True) for _ in range(25_000)]
            await raw.send(pd, wants(*entries))
        # an honest peer is served meanwhile
        with trio.fail_after(15):
            await ok.require_files().fetch(dagpb.parse_cid(cid))
        assert b"".join(ok.require_files().tree.read(dagpb.parse_cid(cid))) == data
        with trio.fail_after(15):
            while files.bitswap.ledger_size(raw_peer.peer_id) == 0:
                await trio.sleep(0.05)
        assert files.bitswap.ledger_size(raw_peer.peer_id) <= bitswap.MAX_WANTS_PER_PEER
        assert rss_mib() - rss < 150  # the wantlists themselves (~18 MB) and their parsing
        dont_haves = sum(len(m.blockPresences) for m in raw.messages)
        assert dont_haves <= 4 * bitswap.MAX_WANTS_PER_PEER


async def test_garbage_costs_the_stream_only(tmp_path: Path) -> None:
    async with (
        peer_group(1, config=lambda: fast_config(files_dir=str(tmp_path / "pd"))) as [(pd, _)],
        peer_group(1) as [(raw_peer, _)],
    ):
        raw = RawPeer(raw_peer)
        await connect(raw_peer, pd)
        await pd.require_files().store_file("hello.txt", b"hello world\n")
        for garbage in [
            b"\x05\xff\xff\xff\xff\xff",  # not protobuf
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # varint too long
            dagpb.encode_varint(1 << 30),  # a 1 GiB message announced
        ]:
            await raw.send(pd, raw=garbage)
        await raw.send(pd, wants((b"\x01\x02not a cid", compat.WANT_BLOCK, True)))
        await raw.send(pd, wants((dagpb.parse_cid(HELLO_CID), compat.WANT_BLOCK, True)))
        await raw.wait(lambda: raw.blocks())
        assert pd.running


async def test_ledger_dropped_when_the_peer_leaves(tmp_path: Path) -> None:
    async with (
        peer_group(1, config=lambda: fast_config(files_dir=str(tmp_path / "pd"))) as [(pd, _)],
        peer_group(1) as [(raw_peer, _)],
    ):
        raw = RawPeer(raw_peer)
        await connect(raw_peer, pd)
        files = pd.require_files()
        await raw.send(pd, wants(*[(unknown_cid(), compat.WANT_BLOCK, False) for _ in range(50)]))
        with trio.fail_after(10):
            while files.bitswap.ledger_size(raw_peer.peer_id) < 50:
                await trio.sleep(0.02)
        await raw_peer.host.disconnect(pd.peer_id)
        with trio.fail_after(10):
            while raw_peer.peer_id in files.bitswap.tracked_peers():
                await trio.sleep(0.02)
        assert files.bitswap.ledger_size(raw_peer.peer_id) == 0


@pytest.mark.parametrize("version", [compat.BITSWAP_110, compat.BITSWAP_100])
async def test_older_protocol_versions_are_served(tmp_path: Path, version: str) -> None:
    async with (
        peer_group(1, config=lambda: fast_config(files_dir=str(tmp_path / "pd"))) as [(pd, _)],
        peer_group(1) as [(raw_peer, _)],
    ):
        raw = RawPeer(raw_peer)
        for protocol in compat.BITSWAP_PROTOCOLS:
            if protocol != version:
                raw_peer.host.remove_stream_handler(protocol)
        await connect(raw_peer, pd)
        files = pd.require_files()
        await files.store_file("docs/hello.txt", b"hello world\n")
        shard = dagpb.parse_cid((await files.tree.entries())["docs"].cid)
        stream = await raw_peer.host.new_stream(pd.peer_id, [version])
        await stream.write(bitswap_wire.encode(wants((shard, compat.WANT_BLOCK, False))))
        await stream.close()
        if version == compat.BITSWAP_110:
            got = await raw.wait(raw.blocks)
            assert dagpb.verify(shard, got[bytes.fromhex("00701220")])
        else:  # 1.0.0: bare blocks, no prefix
            got = await raw.wait(lambda: [b for m in raw.messages for b in m.blocks])
            assert dagpb.verify(shard, bytes(got[0]))


async def test_fetch_fails_fast_when_no_connected_peer_speaks_bitswap(tmp_path: Path) -> None:
    from core.files.sharing import FetchError

    async with (
        peer_group(1, config=lambda: fast_config(files_dir=str(tmp_path / "pd"))) as [(pd, _)],
        peer_group(1) as [(plain, _)],  # no file store: no bitswap handler at all
    ):
        await connect(plain, pd)
        start = trio.current_time()
        with pytest.raises(FetchError):
            await pd.require_files().fetch(unknown_cid())
        assert trio.current_time() - start < 15  # not the 30 s no-progress timeout
