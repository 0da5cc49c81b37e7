"""Bitswap on the wire: varint-framed messages, CID prefixes, bounded reads.

A bitswap stream carries a sequence of messages, each an unsigned-varint length and a
protobuf ``Message`` (schema from py-libp2p, see ``libp2p_compat/bitswap.py``). Nothing a
remote sends can make us allocate more than ``MAX_MESSAGE`` for one message.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError
from libp2p.abc import INetStream

from core.ipfs.dagpb import (
    IDENTITY,
    SHA2_256,
    DagPBError,
    cid_parts,
    decode_varint,
    encode_varint,
    hash_digest,
)
from core.libp2p_compat import BitswapMessage

MAX_MESSAGE = 4 * 1024 * 1024 + 64 * 1024
"""go and js send at most 4 MiB per message; a little slack for their framing."""

READ_CHUNK = 256 * 1024


class WireError(Exception):
    """The remote sent something that is not a bitswap message stream; drop the stream."""


class StreamGone(WireError):
    """End of stream or reset (py-libp2p cannot tell them apart)."""


def prefix(cid: bytes) -> bytes:
    """The CID prefix go and js put before each block: version, codec, hash code, length.

    A CIDv0 gets ``00 70 12 20`` (py-libp2p sends an empty prefix, which Helia rejects)."""
    parts = cid_parts(cid)
    return b"".join(
        encode_varint(v) for v in (parts.version, parts.codec, parts.hash_code, len(parts.digest))
    )


def multihash_key(cid: bytes) -> bytes:
    """What names a block's bytes regardless of CID version and codec: hash code + digest."""
    parts = cid_parts(cid)
    return encode_varint(parts.hash_code) + parts.digest


def block_key(data: bytes, hash_code: int = SHA2_256) -> bytes:
    """``multihash_key`` of a block's data under the hash its prefix names, for matching an
    arriving block against our wants (hashing is the verification). DagPBError for a hash we
    cannot compute (identity CIDs never travel)."""
    return encode_varint(hash_code) + hash_digest(hash_code, data)


def prefix_hash_code(prefix: bytes) -> int:
    """The multihash code a block prefix names (version, codec, hash code, length); an empty
    prefix is a bitswap 1.0.0 block, a CIDv0: sha2-256. DagPBError for garbage."""
    if not prefix:
        return SHA2_256
    pos = 0
    for _ in range(2):  # version, codec
        _, pos = decode_varint(prefix, pos)
    code, _ = decode_varint(prefix, pos)
    return code


def is_identity(cid: bytes) -> bool:
    try:
        return cid_parts(cid).hash_code == IDENTITY
    except DagPBError:
        return False


def encode(message: BitswapMessage) -> bytes:
    body = message.SerializeToString()
    return encode_varint(len(body)) + body


def decode(body: bytes) -> BitswapMessage:
    message = BitswapMessage()
    try:
        message.ParseFromString(body)
    except (DecodeError, ValueError) as exc:
        raise WireError(f"not a bitswap message: {exc}") from exc
    return message


class MessageReader:
    """Reads varint-framed messages from a stream, buffering what arrives past one message."""

    def __init__(self, stream: INetStream, limit: int = MAX_MESSAGE) -> None:
        self.stream = stream
        self.limit = limit
        self._buf = bytearray()

    async def _fill(self) -> None:
        try:
            chunk = await self.stream.read(READ_CHUNK)
        except Exception as exc:  # StreamEOF, StreamReset, a closed muxer: all mean gone
            raise StreamGone(str(exc) or type(exc).__name__) from exc
        if not chunk:
            raise StreamGone("end of stream")
        self._buf += chunk

    async def next(self) -> bytes:
        """The next message body; raises StreamGone at the end, WireError on garbage."""
        length, start = await self._length()
        if length > self.limit:
            raise WireError(f"message of {length} bytes is over the {self.limit} limit")
        while len(self._buf) < start + length:
            await self._fill()
        body = bytes(self._buf[start : start + length])
        del self._buf[: start + length]
        return body

    async def _length(self) -> tuple[int, int]:
        while True:
            value, shift = 0, 0
            for i, byte in enumerate(self._buf[:10]):
                value |= (byte & 0x7F) << shift
                if byte < 0x80:
                    return value, i + 1
                shift += 7
            if len(self._buf) >= 10:
                raise WireError("message length varint longer than 10 bytes")
            await self._fill()
