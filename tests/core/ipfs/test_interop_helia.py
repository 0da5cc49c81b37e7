"""Bitswap with Helia 7 (js IPFS, tests/interop/heliapeer.mjs) over TCP + Noise + Yamux on
loopback: files and folders both ways, DONT_HAVE, two Helia nodes at once (issue 9)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from libp2p.peer.id import ID

from core.events import GotFile
from core.files.sharing import FetchError
from core.ipfs import dagpb, unixfs
from core.peer import Peer
from tests.conftest import Recorder, fast_config, peer_group
from tests.test_interop_js import HERE, NODE, JsPeer, stop_js

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")

SIZES = [0, 1024, 300 * 1024, 5 * 1024 * 1024, 64 * 1024 * 1024]


@pytest.fixture(scope="module")
def helia_installed() -> None:
    if not (HERE / "node_modules" / "helia").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            check=True,
            timeout=600,
        )


@asynccontextmanager
async def helia_node() -> AsyncIterator[JsPeer]:
    async with trio.open_nursery() as nursery:
        assert NODE is not None
        proc = await trio.lowlevel.open_process(
            [NODE, str(HERE / "heliapeer.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=HERE,
        )
        js = JsPeer(proc)
        nursery.start_soon(js.pump)
        try:
            await js.wait(lambda: js.ready, timeout=60)
            yield js
        finally:
            with trio.CancelScope(shield=True):
                await stop_js(js)
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def peerdesk(tmp: Path, name: str) -> AsyncIterator[tuple[Peer, Recorder]]:
    async with peer_group(1, config=lambda: fast_config(files_dir=str(tmp / name))) as [pr]:
        yield pr


def content(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes (sha256 in counter mode: fast and no RNG state)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest() * 64
        counter += 1
    return bytes(out[:size])


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def peerdesk_cid(data: bytes) -> str:
    """The CID Peerdesk's importer gives these bytes (nothing stored)."""
    return dagpb.cid_str(unixfs.import_file([data], lambda c, d, ln: None).cid)


async def dial(js: JsPeer, peer: Peer) -> None:
    await js.cmd("dial", addr=peer.listen_addrs()[0])


@pytest.mark.usefixtures("helia_installed")
async def test_helia_fetches_files_from_peerdesk(tmp_path: Path) -> None:
    async with peerdesk(tmp_path, "pd") as (pd, _), helia_node() as helia:
        files = pd.require_files()
        stored = {}
        for i, size in enumerate(SIZES):
            data = content(size, seed=i)
            cid, _ = await files.store_file(f"f{size}.bin", data)
            stored[cid] = data
        await dial(helia, pd)
        for cid, data in stored.items():
            out = tmp_path / f"helia-{cid}"
            answer = await helia.cmd("cat", cid=cid, out=str(out), timeoutMs=120000, timeout=150)
            assert answer["size"] == len(data)
            assert out.read_bytes() == data, cid


@pytest.mark.usefixtures("helia_installed")
async def test_peerdesk_fetches_helia_files(tmp_path: Path) -> None:
    async with peerdesk(tmp_path, "pd") as (pd, _), helia_node() as helia:
        await dial(helia, pd)
        files = pd.require_files()
        for i, size in enumerate([0, 1024, 300 * 1024, 5 * 1024 * 1024]):
            data = content(size, seed=100 + i)
            src = write(tmp_path, f"src{i}", data)
            same = await helia.cmd("addFile", path=str(src), peerdesk=True)
            assert same["cid"] == peerdesk_cid(data)  # Peerdesk's parameters: the same DAG
            default = await helia.cmd("addFile", path=str(src))  # raw leaves, 1 MiB chunks
            for cid in (same["cid"], default["cid"]):
                dest = tmp_path / f"got-{cid}"
                with trio.fail_after(60):
                    assert await files.save(cid, dest) == size
                assert dest.read_bytes() == data, cid
        # a raw-leaf DAG with several leaves under a dag-pb root, CIDv1 raw codec inside
        assert dagpb.cid_parts(dagpb.parse_cid(default["cid"])).codec == dagpb.DAG_PB


@pytest.mark.usefixtures("helia_installed")
async def test_blocks_hashed_with_sha2_512_travel_both_ways(tmp_path: Path) -> None:
    """kubo (`--hash`) and Helia can name blocks with another hash: such a block is fetched
    and verified from Helia, then served to a second Helia node."""
    async with (
        peerdesk(tmp_path, "pd") as (pd, _),
        helia_node() as source,
        helia_node() as reader,
    ):
        data = content(700 * 1024 + 5, seed=7)
        cid = (await source.cmd("putRaw", path=str(write(tmp_path, "src", data))))["cid"]
        parts = dagpb.cid_parts(dagpb.parse_cid(cid))
        assert (parts.codec, parts.hash_code) == (dagpb.RAW, 0x13)  # raw, sha2-512
        await dial(source, pd)
        dest = tmp_path / "got"
        with trio.fail_after(60):
            assert await pd.require_files().save(cid, dest) == len(data)
        assert dest.read_bytes() == data
        await dial(reader, pd)
        out = tmp_path / "reader"
        answer = await reader.cmd("cat", cid=cid, out=str(out), timeoutMs=60000, timeout=90)
        assert answer["size"] == len(data)
        assert out.read_bytes() == data


@pytest.mark.usefixtures("helia_installed")
async def test_directories_both_ways(tmp_path: Path) -> None:
    names = {f"file-{i:02d}.txt": content(3000 + i, seed=i) for i in range(12)}
    paths = [{"name": n, "path": str(write(tmp_path, n, d))} for n, d in names.items()]
    async with (
        peerdesk(tmp_path, "pd") as (pd, rec),
        helia_node() as helia,
        helia_node() as helia2,
    ):
        await dial(helia, pd)
        await dial(helia2, pd)
        files = pd.require_files()

        # Helia -> Peerdesk: a plain folder and a HAMT-sharded one, listed with Helia's CIDs.
        for sharded in (False, True):
            made = await helia.cmd("addDir", entries=paths, sharded=sharded)
            listed = await helia.cmd("ls", cid=made["cid"])
            expect = {e["name"]: e["cid"] for e in listed["entries"]}
            assert set(expect) == set(names)
            files.get_file(made["cid"])
            got = await rec.wait_for(
                lambda cid=made["cid"]: [e for e in rec.of(GotFile) if e.cid == cid], timeout=60
            )
            assert got[0].success, got[0].content
            assert got[0].content == {"type": "directory", "entries": expect}
            kind = unixfs.node_kind(files.store.get, dagpb.parse_cid(made["cid"]))
            assert kind == ("hamt" if sharded else "directory")
            for name, cid in expect.items():  # the files came whole, too
                assert b"".join(files.tree.read(dagpb.parse_cid(cid))) == names[name]
            if not sharded:
                plain = made["cid"]

        # Peerdesk -> Helia: its own folder (a HAMT of CIDv0 shards) and the plain folder
        # it now holds, fetched by another Helia node.
        for name, data in names.items():
            await files.store_file(f"docs/{name}", data)
        entries = await files.tree.entries()
        docs = entries["docs"].cid
        assert unixfs.node_kind(files.store.get, dagpb.parse_cid(docs)) == "hamt"
        listed = await helia2.cmd("ls", cid=docs)
        assert {e["name"]: e["cid"] for e in listed["entries"]} == {
            n: entries[f"docs/{n}"].cid for n in names
        }
        listed = await helia2.cmd("ls", cid=plain)
        assert {e["name"] for e in listed["entries"]} == set(names)
        first = listed["entries"][0]
        out = tmp_path / "plain-entry"
        await helia2.cmd("cat", cid=first["cid"], out=str(out))
        assert out.read_bytes() == names[first["name"]]


@pytest.mark.usefixtures("helia_installed")
async def test_unknown_cid_gets_dont_have_both_ways(tmp_path: Path) -> None:
    nobody = dagpb.cid_str(dagpb.cid_v1_dagpb(b"nobody has this block " + os.urandom(8)))
    async with peerdesk(tmp_path, "pd") as (pd, _), helia_node() as helia:
        await dial(helia, pd)
        # one block first: Helia sends wants with sendDontHave only to peers its bitswap
        # topology already knows (after identify), and the full list on joining without it
        files = pd.require_files()
        cid, _ = await files.store_file("before.bin", b"before")
        await helia.cmd("cat", cid=cid, out=str(tmp_path / "before"))
        answer = await helia.cmd("want", cid=nobody, timeoutMs=3000)
        assert not answer["got"] and str(pd.peer_id) in answer["dontHave"]
        # Peerdesk asking Helia: Helia's DONT_HAVE ends the fetch at once, not after a timeout
        start = trio.current_time()
        with pytest.raises(FetchError):
            await files.fetch(dagpb.parse_cid(nobody))
        assert trio.current_time() - start < 20  # the bitswap timeout without fallback is 30 s
        # and the peer is still serving
        data = content(5000, seed=7)
        cid, _ = await files.store_file("after.bin", data)
        out = tmp_path / "after"
        await helia.cmd("cat", cid=cid, out=str(out))
        assert out.read_bytes() == data


@pytest.mark.usefixtures("helia_installed")
async def test_two_helia_nodes_fetch_at_once(tmp_path: Path) -> None:
    async with (
        peerdesk(tmp_path, "pd") as (pd, _),
        helia_node() as one,
        helia_node() as two,
    ):
        data = content(5 * 1024 * 1024, seed=42)
        cid, _ = await pd.require_files().store_file("shared.bin", data)
        await dial(one, pd)
        await dial(two, pd)
        results: dict[str, bytes] = {}

        async def cat(js: JsPeer, name: str) -> None:
            out = tmp_path / name
            await js.cmd("cat", cid=cid, out=str(out), timeoutMs=60000, timeout=90)
            results[name] = out.read_bytes()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cat, one, "one")
            nursery.start_soon(cat, two, "two")
        assert results == {"one": data, "two": data}
        for js in (one, two):  # everything asked for was answered: nothing left in the ledger
            assert pd.require_files().bitswap.ledger_size(ID.from_base58(js.ready["peerId"])) == 0
