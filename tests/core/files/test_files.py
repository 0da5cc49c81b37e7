"""File trees between real peers on loopback (wire-protocol.md §4, §5, §8)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from core.events import FilesChanged, GotFile, PeerFiles, TopicData
from core.files import fileproto
from core.files.fileproto import PROTOCOL
from core.files.filetree import Cancel, FileTreeError
from core.files.paths import PathError
from core.ipfs import dagpb
from core.ipfs.unixfs import ImportCancelled
from core.network.framing import dumps, encode_frame, loads, read_exactly, read_frame
from core.peer import Peer
from tests.conftest import connect, fast_config, peer_group

HELLO_CID = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"
EMPTY_SHARD = "Qma5kEnM5fEKTXrFC5zXYRy5QG3hcMWopoFS7ijhxx19qc"


def files_config(tmp: Path, name: str, **kw):
    def make():
        return fast_config(files_dir=str(tmp / name), **kw)

    return make


async def test_store_list_remove_and_persistence(tmp_path: Path) -> None:
    async with peer_group(1, config=files_config(tmp_path, "a")) as [(a, rec)]:
        files = a.require_files()
        assert files.tree.root == EMPTY_SHARD
        file_cid, root = await files.store_file("docs/readme.txt", b"hello world\n")
        assert file_cid == HELLO_CID and root != EMPTY_SHARD
        await files.mkdir("empty")
        entries = await files.tree.entries()
        assert {p: e.kind for p, e in entries.items()} == {
            "docs": "directory",
            "docs/readme.txt": "file",
            "empty": "directory",
        }
        assert entries["docs/readme.txt"].mime == "text/plain; charset=utf-8"
        assert entries["empty"].cid == EMPTY_SHARD
        kept_root = files.tree.root
        assert rec.of(FilesChanged)[-1].root == kept_root
    # A restart shows the same tree.
    async with peer_group(1, config=files_config(tmp_path, "a")) as [(a, _)]:
        files = a.require_files()
        assert files.tree.root == kept_root
        await files.remove("docs/readme.txt")
        await files.remove("docs")
        await files.remove("empty")
        assert files.tree.root == EMPTY_SHARD
        blocks, _ = files.store.stats()
        assert blocks == 1  # everything superseded was collected


async def test_bad_paths_and_missing_entries_are_refused(tmp_path: Path) -> None:
    async with peer_group(1, config=files_config(tmp_path, "a")) as [(a, _)]:
        files = a.require_files()
        for bad in ["", "/", "../x", "a//b", "a/../b", "nul\0name", "x" * 300]:
            with pytest.raises(PathError):
                await files.store_file(bad, b"x")
        with pytest.raises(FileTreeError):
            await files.remove("nothing/here")
        await files.store_file("file", b"x")
        with pytest.raises(FileTreeError, match="not a folder"):
            await files.store_file("file/child", b"y")
        with pytest.raises(FileTreeError):
            await files.mkdir("file")


async def test_cancelled_import_leaves_the_tree_as_it_was(tmp_path: Path) -> None:
    async with peer_group(1, config=files_config(tmp_path, "a")) as [(a, _)]:
        files = a.require_files()
        root = files.tree.root
        cancel = Cancel()
        cancel.cancel()
        with pytest.raises(ImportCancelled):
            await files.store_file("big.bin", b"\0" * (3 * 262144), cancel=cancel)
        assert files.tree.root == root


async def test_two_peers_list_get_and_fallback(tmp_path: Path) -> None:
    async with (
        peer_group(1, config=files_config(tmp_path, "a")) as [(a, _)],
        peer_group(1, config=files_config(tmp_path, "b")) as [(b, rb)],
    ):
        await connect(b, a)
        fa, fb = a.require_files(), b.require_files()
        content = os.urandom(700_000)  # three chunks: a real DAG, not one block
        file_cid, root = await fa.store_file("pics/photo.bin", content)

        fb.list_files(str(a.peer_id))
        await rb.wait_for(lambda: rb.of(PeerFiles))
        listing = rb.of(PeerFiles)[0]
        assert listing.peer == str(a.peer_id) and listing.cid == root and not listing.error
        assert listing.entries == {
            "pics": {"type": "directory", "cid": listing.entries["pics"]["cid"]},
            "pics/photo.bin": {
                "type": "file",
                "cid": file_cid,
                "mimeType": "application/octet-stream",
                "size": 700_000,
            },
        }

        # Without fallback: bitswap from the connected peer.
        fb.get_file(file_cid)
        await rb.wait_for(lambda: rb.of(GotFile))
        got = rb.of(GotFile)[0]
        assert got.success and base64.b64decode(got.content["content"]) == content
        assert got.content["type"] == "file"

        # With the fallback peer (the only one connected, so no bitswap): over
        # /p2p-webapp/1.0.0, verified and cached whole.
        small_cid, _ = await fa.store_file("note.txt", b"a small note\n")
        await fb.fetch(dagpb.parse_cid(small_cid), fallback=str(a.peer_id))
        assert b"".join(fb.tree.read(dagpb.parse_cid(small_cid))) == b"a small note\n"

        # A directory by CID.
        fb.get_file(listing.entries["pics"]["cid"], str(a.peer_id))
        await rb.wait_for(lambda: len(rb.of(GotFile)) == 2)
        assert rb.of(GotFile)[1].content == {
            "type": "directory",
            "entries": {"photo.bin": file_cid},
        }

        # Unknown content: a clear failure, not a hang.
        missing = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
        fb.get_file(missing, str(a.peer_id))
        await rb.wait_for(lambda: len(rb.of(GotFile)) == 3, timeout=30)
        assert not rb.of(GotFile)[2].success and rb.of(GotFile)[2].content["error"]


async def test_tampered_fallback_answer_is_rejected(tmp_path: Path) -> None:
    async with (
        peer_group(1, config=files_config(tmp_path, "b")) as [(b, rb)],
        peer_group(1, config=files_config(tmp_path, "evil")) as [(evil, _)],
    ):
        real_cid, _ = await evil.require_files().store_file("x.txt", b"the real thing\n")

        @asynccontextmanager
        async def lie(_cid: str) -> AsyncIterator[dict]:
            fake = b"something else entirely\n"
            yield {
                "cid": real_cid,
                "isDirectory": False,
                "mimeType": "text/plain",
                "rawNode": base64.b64encode(fake).decode(),
                "content": base64.b64encode(fake).decode(),
            }

        evil.require_files().service.content = lie
        await connect(b, evil)
        fb = b.require_files()
        fb.get_file(real_cid, str(evil.peer_id))
        await rb.wait_for(lambda: rb.of(GotFile), timeout=30)
        got = rb.of(GotFile)[0]
        assert not got.success and "match" in got.content["error"]
        assert not fb.store.has(dagpb.parse_cid(real_cid))


async def test_file_update_notice_only_while_subscribed(tmp_path: Path) -> None:
    cfg = files_config(tmp_path, "a", file_update_topic="files")
    async with (
        peer_group(1, config=cfg) as [(a, _)],
        peer_group(1, config=files_config(tmp_path, "b")) as [(b, rb)],
    ):
        await connect(b, a)
        fa = a.require_files()
        await b.subscribe("files")
        await fa.store_file("before.txt", b"not announced")  # a is not subscribed yet
        await a.subscribe("files")
        await fa.store_file("after.txt", b"announced")
        notice = {"type": "p2p-webapp-file-update", "peer": str(a.peer_id)}
        await rb.wait_for(lambda: TopicData("files", str(a.peer_id), notice) in rb.events)
        await fa.remove("after.txt")
        await rb.wait_for(lambda: rb.events.count(TopicData("files", str(a.peer_id), notice)) == 2)


async def test_garbage_on_the_file_protocol(tmp_path: Path) -> None:
    async with (
        peer_group(1, config=files_config(tmp_path, "a")) as [(a, _)],
        peer_group(1) as [(b, _)],
    ):
        await connect(b, a)
        await a.require_files().store_file("f", b"data")
        for payload in [
            b"\x07",
            b"\x02\xff\xff\xff\xff",
            b"\x02\x00\x00\x00\x03abc",
            b"\x02\x00\x00\x00\x02{}",
        ]:
            stream = await b.host.new_stream(a.peer_id, [PROTOCOL])
            await stream.write(payload)
            with trio.move_on_after(2):
                try:
                    await stream.read(100)
                except Exception:
                    pass
            await stream.reset()
        # still serving
        stream = await b.host.new_stream(a.peer_id, [PROTOCOL])
        await stream.write(b"\x00")
        head = b""
        with trio.fail_after(5):
            while len(head) < 5:
                head += await stream.read(5 - len(head))
        assert head[0] == 1


async def _raw_answer(asker: Peer, server: Peer, cid: str) -> bytes:
    """The whole FileContent message as it came off the wire."""
    stream = await asker.host.new_stream(server.peer_id, [PROTOCOL])
    await stream.write(bytes([fileproto.GET_FILE]) + encode_frame(dumps({"cid": cid})))
    kind = await read_exactly(stream, 1)
    frame = await read_frame(stream, fileproto.MAX_FILE_CONTENT)
    await stream.reset()
    return kind + encode_frame(frame)


async def test_streamed_file_answers_match_whole_built_ones_byte_for_byte(tmp_path: Path) -> None:
    """A file's FileContent is written as its blocks are read (base64 piece by piece, each a
    multiple of 3 bytes): every size around the 3-byte and 256 KiB chunk edges gives the very
    frame the whole-built answer would, and it decodes to the file."""
    chunk = 256 * 1024
    sizes = [0, 1, 2, 3, 4, chunk - 1, chunk, chunk + 1, 3 * chunk + 2, 5 * 1024 * 1024 + 7]
    async with (
        peer_group(1, config=files_config(tmp_path, "a")) as [(a, _)],
        peer_group(1, config=files_config(tmp_path, "b")) as [(b, _)],
    ):
        await connect(b, a)
        files = a.require_files()
        for size in sizes:
            content = os.urandom(size)
            cid, _ = await files.store_file(f"f{size}.bin", content)
            with trio.fail_after(30):
                got = await _raw_answer(b, a, cid)
            whole = files.tree.content_sync(dagpb.parse_cid(cid))
            assert got == bytes([fileproto.FILE_CONTENT]) + encode_frame(dumps(whole)), size
            assert base64.b64decode(loads(got[5:])["content"], validate=True) == content
        folder, _ = await files.mkdir("docs")
        with trio.fail_after(10):
            reply = await b.require_files().service.request_content(a.peer_id, folder)
        assert reply["isDirectory"] is True and reply["entries"] == {}


async def test_a_streamed_answer_that_breaks_its_length_costs_only_its_stream(
    tmp_path: Path,
) -> None:
    """Content that ends short of (or runs past) the announced length is never sent as a
    wrong frame: the stream is reset, and the next request is answered."""
    async with (
        peer_group(1, config=files_config(tmp_path, "a")) as [(a, _)],
        peer_group(1, config=files_config(tmp_path, "b")) as [(b, _)],
    ):
        await connect(b, a)
        files = a.require_files()
        cid, _ = await files.store_file("ok.txt", b"fine\n")
        honest = files.service.content

        def broken(size: int, chunks: list[bytes]) -> fileproto.ContentProvider:
            @asynccontextmanager
            async def provide(_cid: str) -> AsyncIterator[fileproto.Answer]:
                yield fileproto.StreamedContent({"cid": _cid}, size, iter(chunks))

            return provide

        for size, chunks in [(10, [b"abc"]), (2, [b"abc"])]:
            files.service.content = broken(size, chunks)
            with trio.fail_after(10), pytest.raises(fileproto.FileProtocolError):
                await b.require_files().service.request_content(a.peer_id, cid)
        files.service.content = honest
        with trio.fail_after(10):
            reply = await b.require_files().service.request_content(a.peer_id, cid)
        assert base64.b64decode(reply["content"]) == b"fine\n"
        assert a.running


async def test_websocket_file_methods(tmp_path: Path) -> None:
    from core.server.manager import PeerManager
    from core.server.wsapi import WsApi
    from tests.core.server.test_wsapi import client

    async with trio.open_nursery() as nursery:
        manager = await nursery.start(PeerManager(fast_config(files_dir=str(tmp_path))).run)
        port = await nursery.start(WsApi(manager).serve, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/ws"
        async with client(url) as alice, client(url) as bob:
            ra = (await alice.call("peer", {}))["result"]
            rb = (await bob.call("peer", {}))["result"]
            stored = await alice.call(
                "storefile",
                {
                    "path": "docs/hello.txt",
                    "directory": False,
                    "content": base64.b64encode(b"hello world\n").decode(),
                },
            )
            assert stored["result"]["fileCid"] == HELLO_CID
            root = stored["result"]["rootCid"]
            made = await alice.call("storefile", {"path": "docs/sub", "directory": True})
            assert made["result"]["fileCid"] == EMPTY_SHARD
            bad = await alice.call("storefile", {"path": "../x", "content": "", "directory": False})
            assert bad["error"]["code"] == 400
            bad64 = await alice.call(
                "storefile", {"path": "x", "content": "!!", "directory": False}
            )
            assert bad64["error"] == {"code": 400, "message": "invalid base64 content"}

            assert (await bob.call("listfiles", {"peerid": ra["peerid"]}))["result"] is None
            listed = await bob.push("peerFiles", peerid=ra["peerid"])
            assert listed["params"]["entries"]["docs/hello.txt"] == {
                "type": "file",
                "cid": HELLO_CID,
                "mimeType": "text/plain; charset=utf-8",
                "size": 12,
            }
            assert listed["params"]["cid"] != root  # the mkdir changed the root since

            await bob.call("getfile", {"cid": HELLO_CID, "fallbackPeerID": ra["peerid"]})
            got = await bob.push("gotFile", cid=HELLO_CID)
            assert got["params"]["success"] is True
            assert got["params"]["content"] == {
                "type": "file",
                "mimeType": "text/plain; charset=utf-8",
                "content": base64.b64encode(b"hello world\n").decode(),
            }
            assert (await alice.call("removefile", {"path": "docs"}))["result"] is None
            gone = await alice.call("removefile", {"path": "docs"})
            assert gone["error"]["code"] == 500
            bad_cid = await bob.call("getfile", {"cid": "not-a-cid"})
            assert bad_cid["result"] is None
            failed = await bob.push("gotFile", cid="not-a-cid")
            assert failed["params"]["success"] is False
            assert rb["peerid"] != ra["peerid"]
        await manager.close()
        nursery.cancel_scope.cancel()


CRASH_CHILD = """
import sys, trio
sys.path.insert(0, {root!r})
from pathlib import Path
from core.files.blockstore import BlockStore
from core.files.filetree import FileTree

async def main():
    tree = FileTree(BlockStore(Path({db!r})))
    i = 0
    while True:
        await tree.store_file(f"dir{{i % 7}}/file{{i}}.bin", bytes([i % 251]) * (300_000 + i))
        if i % 3 == 0:
            await tree.remove(f"dir{{i % 7}}")
        print(tree.root, flush=True)
        i += 1

trio.run(main)
"""


def test_peer_killed_mid_store_restarts_with_a_consistent_tree(tmp_path: Path) -> None:
    from core.files.blockstore import BlockStore
    from core.ipfs import unixfs
    from core.ipfs.hamt import HamtDirectory

    db = tmp_path / "blocks.sqlite"
    root_dir = str(Path(__file__).resolve().parents[3])
    script = CRASH_CHILD.format(root=root_dir, db=str(db))
    checked = 0
    for kill_after in (0.4, 0.9, 1.5, 2.2):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        store = BlockStore(db)
        try:
            root = store.get_root("files")
            if root is None:
                continue
            # Every block reachable from the persisted root is there, and readable.
            for _name, link in HamtDirectory.load(store.get, root).items():
                if unixfs.node_kind(store.get, link.cid) == "hamt":
                    for _, f in HamtDirectory.load(store.get, link.cid).items():
                        data = b"".join(unixfs.read_file(store.get, f.cid))
                        assert len(data) >= 300_000
            assert all(store.has(c) for c in unixfs.dag_cids(store.get, root))
            store.gc()
            checked += 1
        finally:
            store.close()
    assert checked >= 2


async def test_bitswap_mixed_dag_from_two_peers(tmp_path: Path) -> None:
    """Raw leaves (0x55), CIDv0 and CIDv1 dag-pb, an identity CID, all in one file, held by
    two peers: the third fetches it from both, and reads it back whole."""
    from core.ipfs import unixfs
    from core.ipfs.unixfs import DataType, UnixFSData

    def raw_cid(data: bytes) -> bytes:
        return b"\x01\x55" + dagpb.cid_v0(data)

    leaves: list[tuple[bytes, bytes, bytes]] = []  # (cid, block, file bytes)
    for i in range(40):  # 10 MiB: long enough for the second peer's HAVE to count
        data = os.urandom(262_144 - i)
        leaves.append((raw_cid(data), data, data))
    pb_data = os.urandom(50_000)
    pb_block = dagpb.PBNode([], UnixFSData(DataType.FILE, pb_data, len(pb_data)).encode()).encode()
    leaves.append((dagpb.cid_v1_dagpb(pb_block), pb_block, pb_data))
    inline = b"inline bytes"
    identity = b"\x01\x55\x00" + dagpb.encode_varint(len(inline)) + inline
    leaves.append((identity, b"", inline))
    sizes = [len(f) for _, _, f in leaves]
    root_block = dagpb.PBNode(
        [dagpb.Link("", c, len(b) or len(f)) for c, b, f in leaves],
        UnixFSData(DataType.FILE, filesize=sum(sizes), blocksizes=sizes).encode(),
    ).encode()
    root = dagpb.cid_v0(root_block)
    whole = b"".join(f for _, _, f in leaves)

    async with (
        peer_group(1, config=files_config(tmp_path, "a")) as [(a, _)],
        peer_group(1, config=files_config(tmp_path, "b")) as [(b, _)],
        peer_group(1, config=files_config(tmp_path, "c")) as [(c, _)],
    ):
        for holder in (a, b):
            store = holder.require_files().store
            for cid, block, _ in leaves:
                if block:
                    store.put(cid, block, [])
            store.put(root, root_block, [cid for cid, _, _ in leaves])
            store.set_root("test", root)
        await connect(c, a)
        await connect(c, b)
        fc = c.require_files()
        with trio.fail_after(30):
            await fc.fetch(root)
        assert b"".join(unixfs.read_file(fc.store.get, root)) == whole
        assert a.require_files().bitswap.blocks_sent > 0
        assert b.require_files().bitswap.blocks_sent > 0
        # fetched again: everything is local, nothing asked
        sent = a.require_files().bitswap.blocks_sent + b.require_files().bitswap.blocks_sent
        await fc.fetch(root)
        assert a.require_files().bitswap.blocks_sent + b.require_files().bitswap.blocks_sent == sent


async def test_a_get_by_cid_reports_bytes_and_learns_the_total_from_the_root(
    tmp_path: Path,
) -> None:
    """A get by CID knows no size when it starts: once the root block is in, the progress
    events carry the file's size, and the bytes counted (file bytes of each leaf as it
    arrives) rise to it; a fallback-only get reports its size once, when verified."""
    from core.events import Progress

    async with (
        peer_group(1, config=files_config(tmp_path, "a")) as [(a, _)],
        peer_group(1, config=files_config(tmp_path, "b")) as [(b, rb)],
    ):
        await connect(b, a)
        fa, fb = a.require_files(), b.require_files()
        size = 40 * 262_144 + 12_345  # 41 leaves under one root
        content = os.urandom(size)
        file_cid, _ = await fa.store_file("big.bin", content)

        await fb.answer_get(file_cid, op="get-1")
        got = rb.of(GotFile)[-1]
        assert got.success and base64.b64decode(got.content["content"]) == content
        reports = [e for e in rb.of(Progress) if e.op == "get-1"]
        assert reports[-1].finished and reports[-1].done == reports[-1].total == size
        moving = [e for e in reports if not e.finished]
        assert moving and all(e.total == size for e in moving)  # the root comes first
        dones = [e.done for e in moving]
        assert dones == sorted(dones) and len(set(dones)) > 2  # it rose, batch by batch
        # The desktop's answer: the size, not the bytes (it saves them streamed).
        await fb.answer_get(file_cid, inline=False)
        assert rb.of(GotFile)[-1].content == {
            "type": "file",
            "mimeType": "application/octet-stream",
            "size": size,
        }

        # A folder has no file size: bytes only, never a made-up total.
        await fa.store_file("dir/x.bin", os.urandom(300_000))
        listing = await fa.tree.entries()
        await fb.answer_get(listing["dir"].cid, op="get-2")
        folder = [e for e in rb.of(Progress) if e.op == "get-2" and not e.finished]
        assert folder and all(e.total == 0 for e in folder)
        assert max(e.done for e in folder) == 300_000

        # Only the fallback peer: one report, when the answer is in and verified.
        await b.host.disconnect(a.peer_id)
        small_cid, _ = await fa.store_file("note.txt", b"a small note\n")
        await connect(b, a)
        await fb.answer_get(small_cid, str(a.peer_id), op="get-3")
        assert [(e.done, e.total) for e in rb.of(Progress) if e.op == "get-3"] == [(13, 13)]
