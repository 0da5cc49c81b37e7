"""dag-pb blocks and the CIDs that name them, byte-compatible with Go (go-codec-dagpb/boxo).

Peerdesk's files and directories must hash to exactly the CIDs Go peers compute, so the
encoder writes what go-codec-dagpb writes: all Links (field 2) before Data (field 1), and
every link carries Hash, Name (even "") and Tsize. The decoder accepts what Go's decoder
accepts and turns every malformation into `DagPBError` (a ValueError), because blocks arrive
from untrusted peers.

CIDs are handled in binary form throughout (CIDv0 = the sha2-256 multihash itself,
CIDv1 = version, codec, multihash); `cid_str`/`parse_cid` convert at the edges. This is the
one CID implementation of Peerdesk (the DHT's rendezvous keys too): binary parsing is a few
lines with fast paths for the two shapes every block has, while the text encodings come from
libraries (`base58` for CIDv0, the standard library's base32/base16 for multibase).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import base58

DAG_PB = 0x70
RAW = 0x55
SHA2_256 = 0x12
IDENTITY = 0x00

_SHA256_LEN = 32
_MAX_CID_TEXT = 512  # far above any real CID; bounds the base58 big-int work on garbage input


HASHERS: dict[int, Callable[[bytes], Any]] = {
    SHA2_256: hashlib.sha256,
    0x13: hashlib.sha512,  # sha2-512
    0x16: hashlib.sha3_256,
    0x14: hashlib.sha3_512,
    0xB220: lambda data: hashlib.blake2b(data, digest_size=32),  # blake2b-256
}
"""Multihash functions we can check, by multicodec code. Peerdesk writes sha2-256 (the IPFS
default); the others are what kubo (`--hash`) and Helia (`hasher`) can be asked to use, and
blocks named by them are fetched and served like any other."""


class DagPBError(ValueError):
    """A block or CID is malformed (raised for any bad input, never another exception type)."""


# --- protobuf varints -------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, as protobuf and multiformats use."""
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Read a varint at `pos`; returns (value, next position).

    At most 10 bytes and values below 2**64, like Go's protowire, so garbage can neither
    loop long nor build huge integers.
    """
    if pos < len(buf) and buf[pos] < 0x80:  # fast path: tags and small lengths
        return buf[pos], pos + 1
    value = 0
    shift = 0
    end = len(buf)
    for i in range(10):
        if pos + i >= end:
            raise DagPBError("truncated varint")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >= 1 << 64:
                raise DagPBError("varint overflows 64 bits")
            return value, pos + i + 1
        shift += 7
    raise DagPBError("varint longer than 10 bytes")


def _decode_minimal_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Varint that must be minimally encoded, as go-cid requires inside CIDs and multihashes."""
    value, end = decode_varint(buf, pos)
    if end - pos > 1 and buf[end - 1] == 0:
        raise DagPBError("varint not minimally encoded")
    return value, end


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    """A length-delimited field body; the length is checked before anything is copied."""
    length, pos = decode_varint(buf, pos)
    end = pos + length
    if end > len(buf):
        raise DagPBError("length-delimited field runs past the end of the block")
    return buf[pos:end], end


def _append_field(parts: list[bytes], field_number: int, payload: bytes) -> None:
    """A length-delimited field, appended as pieces so the caller joins everything once."""
    parts += (encode_varint(field_number << 3 | 2), encode_varint(len(payload)), payload)


# --- CIDs -------------------------------------------------------------------------------------


class CidParts(NamedTuple):
    """The fields of a binary CID; a CIDv0 reports version 0 and codec dag-pb."""

    version: int
    codec: int
    hash_code: int
    digest: bytes


def cid_parts(cid: bytes) -> CidParts:
    """Split a binary CID, validating it the way go-cid does (raises DagPBError)."""
    if not isinstance(cid, bytes | bytearray):
        raise DagPBError(f"CID must be bytes, not {type(cid).__name__}")
    cid = bytes(cid)
    if len(cid) == 34 and cid[0] == SHA2_256 and cid[1] == _SHA256_LEN:
        return CidParts(0, DAG_PB, SHA2_256, cid[2:])
    if len(cid) == 36 and cid[0] == 1 and cid[1] < 0x80 and cid[2:4] == b"\x12\x20":
        return CidParts(1, cid[1], SHA2_256, cid[4:])  # fast path: CIDv1 sha2-256
    version, pos = _decode_minimal_varint(cid, 0)
    if version != 1:
        raise DagPBError(f"unsupported CID version {version}")
    codec, pos = _decode_minimal_varint(cid, pos)
    hash_code, pos = _decode_minimal_varint(cid, pos)
    length, pos = _decode_minimal_varint(cid, pos)
    if len(cid) - pos != length:
        raise DagPBError("multihash length does not match its digest")
    return CidParts(1, codec, hash_code, cid[pos:])


def _sha256_multihash(data: bytes) -> bytes:
    return bytes((SHA2_256, _SHA256_LEN)) + hashlib.sha256(data).digest()


def cid_v0(data: bytes) -> bytes:
    """Binary CIDv0 of a dag-pb block: just its sha2-256 multihash."""
    return _sha256_multihash(data)


def cid_v1_dagpb(data: bytes) -> bytes:
    """Binary CIDv1 (dag-pb, sha2-256) of a block."""
    return bytes((1, DAG_PB)) + _sha256_multihash(data)


def cid_v1_raw(data: bytes) -> bytes:
    """Binary CIDv1 (raw, sha2-256) of some bytes."""
    return bytes((1, RAW)) + _sha256_multihash(data)


def verify(cid: bytes, data: bytes) -> bool:
    """True if `data` is the block `cid` names; works for any codec (dag-pb, raw, ...).

    Supports identity and the ``HASHERS`` multihashes. Raises DagPBError (a ValueError) for
    a malformed CID or another hash function, so "cannot check" is never mistaken for
    "corrupt".
    """
    parts = cid_parts(cid)
    if parts.hash_code == IDENTITY:
        return parts.digest == bytes(data)
    return hash_digest(parts.hash_code, data) == parts.digest


def hash_digest(hash_code: int, data: bytes) -> bytes:
    """The digest of ``data`` under a multihash function (DagPBError if we have none)."""
    hasher = HASHERS.get(hash_code)
    if hasher is None:
        raise DagPBError(f"unsupported multihash function 0x{hash_code:x}")
    digest: bytes = hasher(data).digest()
    return digest


def _b58decode(text: str) -> bytes:
    try:
        return base58.b58decode(text)
    except ValueError as exc:
        raise DagPBError(f"invalid base58: {exc}") from None


def _b32decode(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except binascii.Error as exc:
        raise DagPBError(f"invalid base32: {exc}") from None


def _b16decode(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise DagPBError("invalid base16") from None


_MULTIBASE_DECODERS = {
    "b": _b32decode,
    "B": _b32decode,
    "z": _b58decode,
    "f": _b16decode,
    "F": _b16decode,
}


def cid_str(cid: bytes) -> str:
    """Canonical text form: base58btc `Qm…` for CIDv0, base32 `b…` (bafy…) for CIDv1."""
    parts = cid_parts(cid)
    if parts.version == 0:
        return base58.b58encode(bytes(cid)).decode("ascii")
    return "b" + base64.b32encode(bytes(cid)).decode("ascii").rstrip("=").lower()


def parse_cid(value: str | bytes) -> bytes:
    """Binary CID from text (Qm…, or multibase b/B/z/f/F) or from binary; validates either.

    Raises DagPBError (a ValueError) with a message saying what is wrong.
    """
    if isinstance(value, bytes | bytearray):
        cid = bytes(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise DagPBError("empty CID")
        if len(text) > _MAX_CID_TEXT:
            raise DagPBError("CID text too long")
        if len(text) == 46 and text.startswith("Qm"):
            cid = _b58decode(text)
        elif text[0] in _MULTIBASE_DECODERS:
            cid = _MULTIBASE_DECODERS[text[0]](text[1:])
        else:
            raise DagPBError(f"not a CID (unsupported multibase prefix {text[0]!r}): {text!r}")
    else:
        raise DagPBError(f"CID must be str or bytes, not {type(value).__name__}")
    cid_parts(cid)
    return cid


# --- PBNode -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """A named, sized reference; `tsize` is the cumulative size of the linked DAG."""

    name: str
    cid: bytes
    tsize: int


@dataclass(slots=True)
class PBNode:
    """A dag-pb node: ordered links and optional opaque data (UnixFS puts its protobuf here)."""

    links: list[Link] = field(default_factory=list)
    data: bytes | None = None

    def encode(self) -> bytes:
        """Bytes exactly as go-codec-dagpb writes them (one join, so a 256 KiB leaf's data
        is copied once)."""
        parts: list[bytes] = []
        for link in self.links:
            _append_field(parts, 2, _encode_link(link))
        if self.data is not None:
            _append_field(parts, 1, self.data)
        return b"".join(parts)

    @classmethod
    def decode(cls, block: bytes) -> PBNode:
        """Parse a block with go-codec-dagpb's rules; any malformation raises DagPBError."""
        block = bytes(block)
        links: list[Link] = []
        data: bytes | None = None
        links_closed = False  # Go accepts Data before Links, but not Links split around Data
        pos = 0
        while pos < len(block):
            tag, pos = decode_varint(block, pos)
            field_number, wire_type = tag >> 3, tag & 7
            if wire_type != 2:
                raise DagPBError(f"PBNode: wire type {wire_type}, expected 2")
            body, pos = _read_bytes(block, pos)
            if field_number == 1:
                if data is not None:
                    raise DagPBError("PBNode: duplicate Data section")
                data = body
                links_closed = bool(links)
            elif field_number == 2:
                if links_closed:
                    raise DagPBError("PBNode: duplicate Links section")
                links.append(_decode_link(body))
            else:
                raise DagPBError(f"PBNode: invalid field number {field_number}")
        return cls(links, data)


def _encode_link(link: Link) -> bytes:
    parts: list[bytes] = []
    _append_field(parts, 1, link.cid)
    _append_field(parts, 2, link.name.encode("utf-8", "surrogateescape"))
    parts += (encode_varint(3 << 3), encode_varint(link.tsize))
    return b"".join(parts)


def _decode_link(body: bytes) -> Link:
    """PBLink with fields Hash(1), Name(2), Tsize(3) in that order, each at most once."""
    cid: bytes | None = None
    name = ""
    tsize = 0
    last_field = 0
    pos = 0
    while pos < len(body):
        tag, pos = decode_varint(body, pos)
        field_number, wire_type = tag >> 3, tag & 7
        if field_number not in (1, 2, 3):
            raise DagPBError(f"PBLink: invalid field number {field_number}")
        if field_number <= last_field:
            raise DagPBError("PBLink: fields duplicated or out of order")
        last_field = field_number
        if field_number == 3:
            if wire_type != 0:
                raise DagPBError("PBLink: Tsize must be a varint")
            tsize, pos = decode_varint(body, pos)
            continue
        if wire_type != 2:
            raise DagPBError("PBLink: Hash and Name must be length-delimited")
        value, pos = _read_bytes(body, pos)
        if field_number == 1:
            cid_parts(value)
            cid = value
        else:
            # Names are bytes on the wire; surrogateescape round-trips any of them exactly.
            name = value.decode("utf-8", "surrogateescape")
    if cid is None:
        raise DagPBError("PBLink: missing Hash")
    return Link(name, cid, tsize)
