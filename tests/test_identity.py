"""Identity: p2p-webapp's key format both ways, and the profile's key file."""

from __future__ import annotations

import base64
import stat

import pytest

from core import identity
from core.profile import Profile


def test_export_is_go_format_and_round_trips() -> None:
    kp = identity.generate()
    text = identity.export_key(kp)
    assert text.startswith("CAESQ")  # Type=Ed25519, Data of 64 bytes
    raw = base64.b64decode(text)
    assert raw[:4] == b"\x08\x01\x12\x40" and len(raw) == 68
    assert raw[4 + 32:] == kp.public_key.to_bytes()
    again = identity.import_key(text)
    assert identity.peer_id(again) == identity.peer_id(kp)
    assert identity.export_key(again) == text


def test_go_key_vector_gives_the_go_peer_id() -> None:
    # seed = 32 × 0x01; go-libp2p: crypto.UnmarshalEd25519PrivateKey(seed‖pub) → peer id.
    seed = bytes([1]) * 32
    kp = identity.from_seed(seed)
    go_text = base64.b64encode(b"\x08\x01\x12\x40" + seed + kp.public_key.to_bytes()).decode()
    assert str(identity.peer_id(identity.import_key(go_text))) == str(identity.peer_id(kp))
    assert str(identity.peer_id(kp)).startswith("12D3KooW")


def test_py_libp2p_seed_only_form_is_accepted() -> None:
    kp = identity.generate()
    seed = kp.private_key.to_bytes()[:32]
    text = base64.b64encode(b"\x08\x01\x12\x20" + seed).decode()
    assert identity.peer_id(identity.import_key(text)) == identity.peer_id(kp)


@pytest.mark.parametrize("bad", ["", "!!!", base64.b64encode(b"junk").decode(),
                                 base64.b64encode(b"\x08\x00\x12\x20" + b"a" * 32).decode(),
                                 base64.b64encode(b"\x08\x01\x12\x05abcde").decode()])
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
