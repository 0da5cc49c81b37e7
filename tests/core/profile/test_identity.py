"""Identity: p2p-webapp's key format both ways, and the profile's key file."""

from __future__ import annotations

import base64
import stat

import base58
import pytest

from core.profile import identity
from core.profile.folder import Profile


def test_export_is_go_format_and_round_trips() -> None:
    kp = identity.generate()
    text = identity.export_key(kp)
    assert text.startswith("CAESQ")  # Type=Ed25519, Data of 64 bytes
    raw = base64.b64decode(text)
    assert raw[:4] == b"\x08\x01\x12\x40" and len(raw) == 68
    assert raw[4 + 32 :] == kp.public_key.to_bytes()
    again = identity.import_key(text)
    assert identity.peer_id(again) == identity.peer_id(kp)
    assert identity.export_key(again) == text


def test_go_key_gives_the_peer_id_go_derives() -> None:
    """Derive the expected id independently of py-libp2p: the public key from the
    ``cryptography`` package, the id as go does it — base58 of the identity multihash of the
    protobuf ``PublicKey{Type=Ed25519, Data=pub}``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    seed = bytes(range(32))
    pub = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    go_text = base64.b64encode(b"\x08\x01\x12\x40" + seed + pub).decode()
    expected = base58.b58encode(b"\x00\x24\x08\x01\x12\x20" + pub).decode()
    assert str(identity.peer_id(identity.import_key(go_text))) == expected
    assert expected.startswith("12D3KooW")


def test_py_libp2p_seed_only_form_is_accepted() -> None:
    kp = identity.generate()
    seed = kp.private_key.to_bytes()[:32]
    text = base64.b64encode(b"\x08\x01\x12\x20" + seed).decode()
    assert identity.peer_id(identity.import_key(text)) == identity.peer_id(kp)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "!!!",
        base64.b64encode(b"junk").decode(),
        base64.b64encode(b"\x08\x00\x12\x20" + b"a" * 32).decode(),
        base64.b64encode(b"\x08\x01\x12\x05abcde").decode(),
    ],
)
def test_bad_keys_are_refused_clearly(bad: str) -> None:
    with pytest.raises(identity.IdentityError):
        identity.import_key(bad)


def test_mismatched_public_half_is_refused() -> None:
    a, b = identity.generate(), identity.generate()
    raw = b"\x08\x01\x12\x40" + a.private_key.to_bytes()[:32] + b.public_key.to_bytes()
    with pytest.raises(identity.IdentityError, match="does not match"):
        identity.import_key(base64.b64encode(raw).decode())


def test_profile_key_is_private_and_stable(tmp_path) -> None:
    profile = Profile.open(tmp_path / "p")
    first = profile.key_pair()
    assert stat.S_IMODE(profile.key_path.stat().st_mode) == 0o600
    assert identity.peer_id(Profile.open(tmp_path / "p").key_pair()) == identity.peer_id(first)
    other = identity.generate()
    profile.replace_identity(other)
    assert identity.peer_id(profile.key_pair()) == identity.peer_id(other)
    assert stat.S_IMODE(profile.key_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("text", ["nope", "", "12D3KooW", "Qm" + "1" * 44])
def test_parse_peer_id_refuses_non_ids(text: str) -> None:
    with pytest.raises(ValueError):
        identity.parse_peer_id(text)


def test_parse_peer_id_accepts_ed25519_and_rsa_forms() -> None:
    for text in [
        "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
        "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    ]:
        assert str(identity.parse_peer_id(text)) == text
