"""The peer's Ed25519 identity: stored in the profile, and exchanged in p2p-webapp's key format.

go-libp2p marshals an Ed25519 private key as protobuf ``PrivateKey{Type=1, Data=seed ‖ pubkey}``
(64 bytes) and p2p-webapp shows it as padded standard base64 (``CAESQ…``); py-libp2p writes only
the 32-byte seed and refuses the 64-byte form. We convert at this edge so a key moves between
the two programs and keeps its peer id.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.crypto.pb import crypto_pb2
from libp2p.peer.id import ID

SEED_LEN = 32


class IdentityError(ValueError):
    pass


def generate() -> KeyPair:
    private = Ed25519PrivateKey.new()
    return KeyPair(private, private.get_public_key())


def from_seed(seed: bytes) -> KeyPair:
    if len(seed) != SEED_LEN:
        raise IdentityError(f"an Ed25519 seed has {SEED_LEN} bytes, not {len(seed)}")
    private = Ed25519PrivateKey.from_bytes(seed)
    return KeyPair(private, private.get_public_key())


def peer_id(key_pair: KeyPair) -> ID:
    return ID.from_pubkey(key_pair.public_key)


def _seed(key_pair: KeyPair) -> bytes:
    return key_pair.private_key.to_bytes()[:SEED_LEN]


def export_key(key_pair: KeyPair) -> str:
    """The key as p2p-webapp prints it: base64 of the go-libp2p protobuf, seed ‖ public key."""
    msg = crypto_pb2.PrivateKey(
        key_type=crypto_pb2.KeyType.Ed25519,
        data=_seed(key_pair) + key_pair.public_key.to_bytes(),
    )
    return base64.b64encode(msg.SerializeToString()).decode()


def import_key(text: str) -> KeyPair:
    """Accept p2p-webapp's format (64-byte data) and py-libp2p's own (32-byte seed)."""
    text = text.strip()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IdentityError("the key is not base64") from exc
    msg = crypto_pb2.PrivateKey()
    try:
        msg.ParseFromString(raw)
    except Exception as exc:  # protobuf's DecodeError
        raise IdentityError("the key is not a libp2p private key") from exc
    if msg.key_type != KeyType.Ed25519.value:
        raise IdentityError("only Ed25519 keys are supported")
    if len(msg.data) not in (SEED_LEN, 2 * SEED_LEN):
        raise IdentityError(f"an Ed25519 key has 32 or 64 bytes, not {len(msg.data)}")
    key_pair = from_seed(msg.data[:SEED_LEN])
    if len(msg.data) == 2 * SEED_LEN and msg.data[SEED_LEN:] != key_pair.public_key.to_bytes():
        raise IdentityError("the key's public half does not match its seed")
    return key_pair


def save(key_pair: KeyPair, path: Path) -> None:
    """Write atomically with mode 0600 from the first byte: the key is the user's identity."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (export_key(key_pair) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_or_create(path: Path) -> KeyPair:
    if path.exists():
        return import_key(path.read_text())
    key_pair = generate()
    save(key_pair, path)
    return key_pair


def parse_peer_id(text: str) -> ID:
    """A peer id is a base58 multihash (identity for Ed25519 keys, sha2-256 for RSA); base58
    alone accepts words like ``nope``, so check the multihash inside too."""
    if not isinstance(text, str) or not 8 <= len(text) <= 128:
        raise ValueError(f"{text!r} is not a valid peer id")
    try:
        peer = ID.from_base58(text)
        raw = peer.to_bytes()
    except Exception as exc:
        raise ValueError(f"{text!r} is not a valid peer id") from exc
    if len(raw) < 2 or raw[0] not in (0x00, 0x12) or raw[1] != len(raw) - 2:
        raise ValueError(f"{text!r} is not a valid peer id")
    return peer
