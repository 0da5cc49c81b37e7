"""Fuzz every protocol the peer speaks (issue 10): a real py-libp2p host sends random bytes and
random, structured protobuf messages (varint-framed, as identify-push, kad, meshsub, bitswap,
autonat, relay and dcutr frame them), bad frames on ``/p2p-webapp/1.0.0`` and direct protocols,
and answers the peer's own identify request with garbage. Afterwards the victim peer is
running with every service, answers an honest peer within a second (ping, a file listing, a
direct message, a topic message), its data is intact, and RSS grew less than 64 MiB.

Bounded: a fixed seed (so a failure is reproducible), a fixed number of cases per protocol,
every read and write under a deadline; the whole test takes well under a minute.
"""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path

import trio
from libp2p.abc import IHost, INetStream

from core.events import PeerData, TopicData
from tests.core.server.test_hostile_local import HONEST_REPLY, rss_bytes
from tests.test_hostile_peers import dial, honest_listing, hostile_host, intact, stores

MiB = 1024 * 1024
SEED = 20261202
CASES = 24
CHAT = "/chat/1.0.0"


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def random_protobuf(rng: random.Random, depth: int = 0) -> bytes:
    """Random fields of random wire types: valid protobuf framing, nonsense content."""
    out = bytearray()
    for _ in range(rng.randint(0, 8)):
        field = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 10, 11, rng.randint(1, 2**29 - 1)])
        kind = rng.choice([0, 1, 2, 2, 2, 5])
        out += uvarint(field << 3 | kind)
        if kind == 0:
            out += uvarint(rng.choice([0, 1, 2**31, 2**63, rng.getrandbits(64)]))
        elif kind == 1:
            out += rng.randbytes(8)
        elif kind == 5:
            out += rng.randbytes(4)
        else:
            if depth < 3 and rng.random() < 0.4:
                body = random_protobuf(rng, depth + 1)
            else:
                body = rng.choice([b"", b"\xff\xfe", "\ud800".encode("utf-8", "surrogatepass")])
                body += rng.randbytes(rng.randint(0, 300))
            out += uvarint(len(body)) + body
    return bytes(out)


def varint_cases(rng: random.Random) -> list[bytes]:
    """What a varint-length-prefixed protobuf protocol gets."""
    cases = [
        b"",
        b"\x00",
        b"\xff" * 11,  # a varint that never ends
        uvarint(2**32) + b"x",  # a length far beyond any limit
        uvarint(64 * MiB),  # a big length, then nothing
        uvarint(10) + b"short",  # truncated body
    ]
    while len(cases) < CASES:
        if rng.random() < 0.25:
            cases.append(rng.randbytes(rng.randint(1, 2000)))
        else:
            body = random_protobuf(rng)
            frames = uvarint(len(body)) + body
            if rng.random() < 0.3:  # several messages on one stream
                more = random_protobuf(rng)
                frames += uvarint(len(more)) + more
            cases.append(frames)
    return cases


def json_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def p2p_webapp_cases(rng: random.Random) -> list[bytes]:
    cases = [
        b"",
        b"\x00\x00",
        b"\x02" + struct.pack(">I", 2**31),  # GetFile with a huge frame length
        b"\x02" + json_frame(b"[" * 50_000),
        b"\x02" + json_frame(b'{"cid": 5}'),
        b"\x02" + json_frame(b'{"cid": "bafy-not-a-cid"}'),
        b"\x02" + json_frame(b'{"cid": "\\ud800"}'),
        b"\x09rest",
        b"\x01" + json_frame(b"{}"),  # an answer type sent as a request
    ]
    while len(cases) < CASES:
        cases.append(bytes([rng.randint(0, 4)]) + rng.randbytes(rng.randint(0, 600)))
    return cases


def direct_cases(rng: random.Random) -> list[bytes]:
    cases = [
        struct.pack(">I", 2**31),
        struct.pack(">I", 100) + b"{",
        json_frame(b"not json"),
        json_frame(b"[" * 50_000),
        json_frame(b'{"type":"data","id":"x","data":"!!!not base64"}'),
        json_frame(b'{"type":"data","id":"x","data":"WyJ1bmNsb3NlZA=="}'),
        json_frame(b'{"type":"data","id":5,"data":"IngiCg=="}'),
        json_frame(b'{"type":"ack","id":["x"]}'),
        json_frame(b'{"type":"data","id":"\\ud800","data":"Ilx1ZDgwMCIK"}'),
        json_frame(b'{"type":"data","id":"ok","data":"Ilx1ZDgwMCI="}'),  # "\ud800" inside
    ]
    while len(cases) < CASES:
        cases.append(json_frame(rng.randbytes(rng.randint(0, 400))))
    return cases


async def send_case(evil: IHost, victim_id: object, protocol: str, data: bytes) -> None:
    """One case on a fresh stream: write, read what comes back for a moment, then reset."""
    stream: INetStream | None = None
    try:
        with trio.move_on_after(3):
            stream = await evil.new_stream(victim_id, [protocol])  # type: ignore[arg-type]
            if data:
                await stream.write(data)
            with trio.move_on_after(0.2):
                await stream.read(65536)
    except Exception:
        pass  # the victim refusing or resetting is its right; only its survival is checked
    finally:
        if stream is not None:
            with trio.move_on_after(1):
                try:
                    await stream.reset()
                except Exception:
                    pass


async def test_fuzz_every_protocol_the_peer_speaks(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    async with (
        trio.open_nursery() as nursery,
        _group(tmp_path) as [(victim, vrec), (honest, _)],
    ):
        victim.start_protocol(CHAT)
        await victim.subscribe("fuzz-room")
        await honest.subscribe("fuzz-room")
        assert victim.files is not None
        await victim.files.store_file("keep.bin", b"keep me " * 1000)
        digest = hashlib.sha256(b"keep me " * 1000).hexdigest()
        protocols = sorted(map(str, victim.host.get_mux().get_protocols()))
        for needed in ("/ipfs/id/push/1.0.0", "/ipfs/kad/1.0.0", "/ipfs/ping/1.0.0", CHAT):
            assert needed in protocols
        assert "/p2p-webapp/1.0.0" in protocols
        assert any(p.startswith("/meshsub/") for p in protocols)
        assert any(p.startswith("/ipfs/bitswap") for p in protocols)
        before = rss_bytes()
        async with hostile_host() as evil:

            async def garbage_identify(stream: INetStream) -> None:
                with trio.move_on_after(2):
                    body = random_protobuf(rng)
                    await stream.write(uvarint(len(body)) + body)
                await stream.close()

            evil.set_stream_handler("/ipfs/id/1.0.0", garbage_identify)
            await dial(evil, victim)
            tried: dict[str, int] = {}
            for protocol in protocols:
                if protocol == "/p2p-webapp/1.0.0":
                    cases = p2p_webapp_cases(rng)
                elif protocol == CHAT:
                    cases = direct_cases(rng)
                else:
                    cases = varint_cases(rng)
                async with trio.open_nursery() as batch:
                    for data in cases:
                        batch.start_soon(send_case, evil, victim.peer_id, protocol, data)
                tried[protocol] = len(cases)
                assert victim.running, f"the peer died on {protocol} (seed {SEED})"
            assert all(n >= CASES for n in tried.values())
            # Once more with the peer's identify of us answered by garbage: reconnect.
            await evil.disconnect(victim.peer_id)
            await dial(evil, victim)
            await trio.sleep(0.5)
            grown = rss_bytes() - before

        assert victim.running, f"seed {SEED}"
        await honest.connect(victim.listen_addrs()[0])
        with trio.fail_after(HONEST_REPLY):  # a ping, by hand (wire: 32 bytes echoed)
            probe = rng.randbytes(32)
            stream = await honest.host.new_stream(victim.peer_id, ["/ipfs/ping/1.0.0"])
            await stream.write(probe)
            echoed = b""
            while len(echoed) < 32:
                echoed += await stream.read(32 - len(echoed))
            assert echoed == probe
            await stream.reset()
        await honest_listing(honest, victim, "keep.bin")
        with trio.fail_after(HONEST_REPLY):
            await honest.send(str(victim.peer_id), CHAT, "still there?")
        await vrec.wait_for(
            lambda: PeerData(str(honest.peer_id), CHAT, "still there?") in vrec.events
        )
        with trio.fail_after(10):
            while str(honest.peer_id) not in victim.list_peers("fuzz-room"):
                await trio.sleep(0.05)
        await honest.publish("fuzz-room", "topics still work")
        await vrec.wait_for(
            lambda: TopicData("fuzz-room", str(honest.peer_id), "topics still work") in vrec.events
        )
        await intact(victim, "keep.bin", digest)
        assert grown < 64 * MiB, f"RSS grew {grown / MiB:.0f} MiB"
        nursery.cancel_scope.cancel()


def _group(tmp_path: Path):
    from tests.conftest import peer_group

    return peer_group(2, config=stores(tmp_path))
