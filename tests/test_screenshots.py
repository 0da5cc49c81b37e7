"""packaging/screenshots.py leaves no /tmp/peerdesk-shots-* folder behind: not after a scene,
not after one that failed. The full run (three Xvfb screens) is not run here."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "packaging" / "screenshots.py"


def load_screenshots():
    spec = importlib.util.spec_from_file_location("peerdesk_screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob("peerdesk-shots-*"))


def test_the_scene_folder_is_removed_after_use_and_after_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shots = load_screenshots()
    monkeypatch.setattr(shots.tempfile, "tempdir", str(tmp_path))
    with shots.shots_dir() as folder:
        (folder / "me").mkdir()
        (folder / "video.mp4").write_bytes(b"x" * 1000)
        assert leftovers(tmp_path) == [folder]
    assert leftovers(tmp_path) == []
    with pytest.raises(RuntimeError), shots.shots_dir() as folder:
        (folder / "Downloads").mkdir()
        raise RuntimeError("the scene failed")
    assert leftovers(tmp_path) == []
    # a folder the parent made for its --here child: removed too
    given = tmp_path / "peerdesk-shots-given"
    given.mkdir()
    with shots.shots_dir(given) as folder:
        assert folder == given
    assert leftovers(tmp_path) == []


def test_a_scene_that_fails_leaves_no_folder(tmp_path: Path) -> None:
    """The real scene (the app, two more peers on loopback, a 24 MiB import) on an offscreen
    Qt: ImageMagick's ``import`` finds no X screen and the scene fails at its first shot."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env |= {"TMPDIR": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--here", "1280x800", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "could not take the screen" in done.stderr, done.stderr[-2000:]
    assert leftovers(tmp_path) == []
