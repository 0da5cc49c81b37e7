"""The packaged app (issue 5): the PyInstaller one-folder build, started the way a user's desktop
starts it, with no Python, venv or PYTHONPATH around; the desktop file, icons, install.sh and
uninstall.sh.

The build takes ~30 s, so a plain test run does not make one. Tests of the built binary use
dist/peerdesk (``bash packaging/build.sh --onedir``) when it exists and is newer than the
sources; with PEERDESK_BUILD=1 they build it first (CI does that). Otherwise they skip. The
desktop file, icon and install/uninstall tests need no build.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import trio
from trio_websocket import open_websocket_url

from core import __version__

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
APP_ID = "io.github.peerdesk.Peerdesk"
DESKTOP_FILE = PACKAGING / f"{APP_ID}.desktop"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ONEDIR = ROOT / "dist" / "peerdesk"
ONEFILE = ROOT / "dist" / f"peerdesk-{__version__}-linux-{os.uname().machine}"
SOURCES = ("core", "gui", "packaging", "resources")
START_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux packaging")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """What a desktop session gives a program, and nothing of this test run's Python."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def newest_source() -> float:
    return max(
        p.stat().st_mtime
        for d in SOURCES
        for p in (ROOT / d).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


@pytest.fixture(scope="session")
def onedir() -> Path:
    """The one-folder build's executable."""
    exe = ONEDIR / "peerdesk"
    if os.environ.get("PEERDESK_BUILD") == "1":
        subprocess.run(
            ["bash", str(PACKAGING / "build.sh"), "--onedir"], cwd=ROOT, check=True, timeout=1200
        )
    elif not exe.exists():
        pytest.skip(
            "no build in dist/peerdesk: run 'bash packaging/build.sh --onedir' "
            "or set PEERDESK_BUILD=1"
        )
    elif exe.stat().st_mtime < newest_source():
        pytest.skip(
            "dist/peerdesk is older than the sources: rebuild it "
            "('bash packaging/build.sh --onedir') or set PEERDESK_BUILD=1"
        )
    return exe


class Running:
    """A started binary: stdout lines arrive on a queue, stderr goes to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._stderr = log.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def event(self, name: str, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """The next JSON line with ``"event": name``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.proc.wait(5)
                pytest.fail(f"exited {self.proc.returncode} before {name!r}:\n{self.stderr()}")
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("event") == name:
                return msg
        pytest.fail(f"no {name!r} line within {timeout} s:\n{self.stderr()}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def run_binary(tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(argv: list[str], **extra: str) -> Running:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        running = Running(argv, clean_env(home, **extra), tmp_path / f"stderr-{len(started)}")
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


def quiet_profile(path: Path) -> Path:
    """A profile that dials nobody: loopback only, no bootstrap peers, no mDNS."""
    from core.profile.folder import Profile
    from core.profile.settings import Settings

    Profile.open(path).save_settings(
        Settings(listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], mdns=False)
    )
    return path


# ---- the built binary -------------------------------------------------------------------------


def test_version(onedir: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(onedir), "--version"],
        env=clean_env(tmp_path),
        timeout=60,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"peerdesk {__version__}"


async def _peer_request(url: str) -> dict[str, Any]:
    with trio.fail_after(30):
        async with open_websocket_url(url) as ws:
            await ws.send_message(
                json.dumps({"requestid": 0, "method": "peer", "params": {}, "isresponse": False})
            )
            while True:
                msg = json.loads(await ws.get_message())
                if msg.get("isresponse") and msg.get("requestid") == 0:
                    return msg


def mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6}


def test_serve_from_binary(onedir: Path, run_binary: Any, tmp_path: Path) -> None:
    """`peerdesk serve` from the build: ready line, a peer over the WebSocket API, exit 0 on
    SIGTERM; no file of this test run's Python is loaded."""
    serve = run_binary(
        [
            str(onedir),
            "serve",
            "--ws-port",
            "0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-bootstrap",
            "--no-mdns",
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    ready = serve.event("ready")
    print(f"serve ready after {time.monotonic() - serve.started:.2f} s")
    assert ready["version"] == __version__
    assert ready["ws"].startswith("ws://127.0.0.1:")

    python_dirs = {sys.prefix, sys.base_prefix, str(ROOT / ".venv")}
    leaked = sorted(
        f
        for f in mapped_files(serve.proc.pid)
        if f.startswith("/") and any(f.startswith(d + "/") for d in python_dirs)
    )
    assert not leaked, f"the build loaded files of the build machine's Python: {leaked}"

    response = trio.run(_peer_request, ready["ws"])
    assert "error" not in response, response
    assert response["result"]["peerid"].startswith("12D3KooW")
    assert response["result"]["version"] == __version__

    assert serve.stop(signal.SIGTERM) == 0, serve.stderr()
    assert "Traceback" not in serve.stderr()


def test_desktop_app_from_binary(onedir: Path, run_binary: Any, tmp_path: Path) -> None:
    """The window app from the build, offscreen: it comes online and says its peer id."""
    data = quiet_profile(tmp_path / "data")
    app = run_binary([str(onedir), "--data-dir", str(data)], QT_QPA_PLATFORM="offscreen")
    online = app.event("online")
    print(f"app online after {time.monotonic() - app.started:.2f} s")
    assert online["peerid"].startswith("12D3KooW")
    assert app.stop(signal.SIGTERM) == 0, app.stderr()
    log = app.stderr()
    assert "Traceback" not in log
    assert "Could not load the Qt platform plugin" not in log


@pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xwininfo") and shutil.which("xprop")),
    reason="needs Xvfb and x11-utils (xwininfo, xprop)",
)
def test_window_class_and_icon_on_x11(onedir: Path, run_binary: Any, tmp_path: Path) -> None:
    """On a real X server (Xvfb): Qt's xcb plugin and its bundled libraries load, WM_CLASS
    matches the desktop file's StartupWMClass, and the window has its icon."""
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            display = f":{pipe.readline().strip()}"
        app = run_binary(
            [str(onedir), "--data-dir", str(quiet_profile(tmp_path / "data"))], DISPLAY=display
        )
        app.event("online")
        env = {**os.environ, "DISPLAY": display}
        wm_class = next(
            line.split("=", 1)[1]
            for line in DESKTOP_FILE.read_text().splitlines()
            if line.startswith("StartupWMClass=")
        )
        deadline = time.monotonic() + 20
        window = None
        while window is None and time.monotonic() < deadline:
            tree = subprocess.run(
                ["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True, timeout=10
            ).stdout
            window = next(
                (line.split()[0] for line in tree.splitlines() if f'"{wm_class}")' in line), None
            )
            time.sleep(0.2)
        assert window, f"no window of class {wm_class!r}:\n{tree}\n{app.stderr()}"
        props = subprocess.run(
            ["xprop", "-id", window, "WM_CLASS", "_NET_WM_ICON"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        assert f'WM_CLASS(STRING) = "peerdesk", "{wm_class}"' in props
        assert "_NET_WM_ICON(CARDINAL) = " in props, "the window has no icon"
        app.stop()
        assert "Could not load the Qt platform plugin" not in app.stderr()
    finally:
        xvfb.terminate()
        xvfb.wait(10)


def test_bundled_libraries_resolve(onedir: Path) -> None:
    """Every bundled shared library finds what it links against (in the bundle or the base
    system), as packaging/build.sh checks too."""
    if not shutil.which("ldd"):
        pytest.skip("no ldd")
    internal = onedir.parent / "_internal"
    libs = [str(p) for p in internal.rglob("*.so*") if p.is_file() and not p.is_symlink()]
    assert len(libs) > 50
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(internal)}
    missing = {}
    for start in range(0, len(libs), 50):
        out = subprocess.run(
            ["ldd", *libs[start : start + 50]], env=env, capture_output=True, text=True, timeout=120
        ).stdout
        current = ""
        for line in out.splitlines():
            if not line.startswith("\t"):
                current = line.rstrip(":")
            elif "not found" in line:
                missing.setdefault(current, []).append(line.split()[0])
    assert not missing


def test_onefile(run_binary: Any, tmp_path: Path) -> None:
    """The one-file build, when packaging/build.sh made one: it unpacks itself, serves, and
    passes SIGTERM on to the app."""
    if not ONEFILE.exists() or ONEFILE.stat().st_mtime < newest_source():
        pytest.skip(f"no current {ONEFILE.relative_to(ROOT)} (bash packaging/build.sh --onefile)")
    out = subprocess.run(
        [str(ONEFILE), "--version"],
        env=clean_env(tmp_path),
        timeout=120,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"peerdesk {__version__}"
    serve = run_binary(
        [
            str(ONEFILE),
            "serve",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-bootstrap",
            "--no-mdns",
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    assert serve.event("ready")["version"] == __version__
    assert serve.stop(signal.SIGTERM) == 0, serve.stderr()


def test_installed_build_runs(onedir: Path, tmp_path: Path) -> None:
    """install.sh with the real build into a prefix; the bin/peerdesk symlink starts it."""
    prefix = tmp_path / "prefix"
    env = clean_env(tmp_path)
    subprocess.run(
        [
            "bash",
            str(PACKAGING / "install.sh"),
            "--prefix",
            str(prefix),
            "--source",
            str(onedir.parent),
        ],
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    out = subprocess.run(
        [str(prefix / "bin" / "peerdesk"), "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == f"peerdesk {__version__}"
    subprocess.run(
        ["bash", str(prefix / "opt" / "peerdesk" / "uninstall.sh"), "--prefix", str(prefix)],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    assert not any(prefix.iterdir())


# ---- desktop file, icons, install.sh / uninstall.sh (no build needed) -------------------------


def desktop_entry(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    assert lines[0] == "[Desktop Entry]"
    return dict(line.split("=", 1) for line in lines[1:] if "=" in line)


def validate(path: Path) -> None:
    if not shutil.which("desktop-file-validate"):
        pytest.skip("no desktop-file-validate (Debian: desktop-file-utils)")
    result = subprocess.run(
        ["desktop-file-validate", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_desktop_file() -> None:
    entry = desktop_entry(DESKTOP_FILE)
    assert entry["Exec"] == "peerdesk %u"
    assert entry["Icon"] == APP_ID
    assert entry["StartupWMClass"] == "Peerdesk"  # the application name gui/app.py sets
    assert entry["MimeType"] == "x-scheme-handler/ipfs;x-scheme-handler/ipns;"
    validate(DESKTOP_FILE)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def icons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("icons")
    subprocess.run(
        [sys.executable, str(PACKAGING / "make_icons.py"), str(out)],
        check=True,
        timeout=120,
        capture_output=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    return out


def test_icons(icons: Path) -> None:
    for size in ICON_SIZES:
        assert png_size(icons / f"hicolor/{size}x{size}/apps/{APP_ID}.png") == (size, size)
    scalable = icons / f"hicolor/scalable/apps/{APP_ID}.svg"
    assert scalable.read_bytes() == (ROOT / "resources" / "peerdesk.svg").read_bytes()


@pytest.fixture
def fake_build(tmp_path: Path, icons: Path) -> Path:
    """A one-folder build's layout with a stand-in program (it writes its argv to a file),
    as build.sh lays it out."""
    build = tmp_path / "build" / "peerdesk"
    (build / "_internal").mkdir(parents=True)
    (build / "peerdesk").write_text(
        f'#!/bin/sh\nprintf \'%s|%s\' "$0" "$*" > \'{tmp_path}/argv\'\necho "peerdesk $*"\n'
    )
    (build / "peerdesk").chmod(0o755)
    (build / "share" / "applications").mkdir(parents=True)
    shutil.copy(DESKTOP_FILE, build / "share" / "applications")
    shutil.copytree(icons / "hicolor", build / "share" / "icons" / "hicolor")
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy(PACKAGING / script, build)
    return build


def tree(root: Path) -> set[str]:
    return {
        str(p.relative_to(root)) + ("/" if p.is_dir() and not p.is_symlink() else "")
        for p in root.rglob("*")
    }


def sh(*argv: str | Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", *map(str, argv)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_install_per_user(fake_build: Path, tmp_path: Path) -> None:
    """The default per-user install (~/.local) in a stand-in home; twice, then uninstalled
    from the installed copy, leaving only the standard folders."""
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    sh(fake_build / "install.sh", env=env)
    sh(fake_build / "install.sh", env=env)  # idempotent

    appdir = home / ".local" / "opt" / "peerdesk"
    link = home / ".local" / "bin" / "peerdesk"
    share = home / ".local" / "share"
    assert link.is_symlink() and link.resolve() == (appdir / "peerdesk").resolve()
    assert (
        subprocess.run([str(link), "ipfs://x"], capture_output=True, text=True, timeout=10).stdout
        == "peerdesk ipfs://x\n"
    )
    desktop = share / "applications" / f"{APP_ID}.desktop"
    assert desktop_entry(desktop)["Exec"] == f"{appdir}/peerdesk %u"
    validate(desktop)
    for size in ICON_SIZES:
        assert (share / f"icons/hicolor/{size}x{size}/apps/{APP_ID}.png").is_file()
    assert (share / f"icons/hicolor/scalable/apps/{APP_ID}.svg").is_file()
    if shutil.which("update-desktop-database"):
        cache = (share / "applications" / "mimeinfo.cache").read_text()
        assert f"x-scheme-handler/ipfs={APP_ID}.desktop;" in cache
    if shutil.which("xdg-mime"):
        query = subprocess.run(
            ["xdg-mime", "query", "default", "x-scheme-handler/ipfs"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert query.stdout.strip() == f"{APP_ID}.desktop"

    sh(appdir / "uninstall.sh", env=env)
    sh(fake_build / "uninstall.sh", env=env)  # idempotent
    assert tree(home) <= {
        ".local/",
        ".local/bin/",
        ".local/share/",
        ".local/share/applications/",
        ".local/share/icons/",
        ".local/share/icons/hicolor/",
        ".config/",
    }


def test_install_prefix_with_odd_characters(fake_build: Path, tmp_path: Path) -> None:
    """PREFIX with spaces and shell/quoting characters: the desktop file validates and (where
    GLib's gio is at hand) really starts the program with the link; uninstall empties the
    prefix and leaves other files there alone."""
    prefix = tmp_path / "odd $dir 'with' \"quotes\" & `ticks` \\back"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "other-tool").write_text("keep me")
    env = clean_env(tmp_path / "home", PREFIX=str(prefix))
    before = tree(prefix)
    sh(fake_build / "install.sh", "--source", fake_build, env=env)

    desktop = prefix / "share" / "applications" / f"{APP_ID}.desktop"
    validate(desktop)
    program = prefix / "opt" / "peerdesk" / "peerdesk"
    assert (prefix / "bin" / "peerdesk").resolve() == program.resolve()
    assert not (tmp_path / "home" / ".config").exists(), "a prefix install registered links"
    if shutil.which("gio"):
        subprocess.run(
            ["gio", "launch", str(desktop), "ipfs://bafyexample"],
            env=env,
            check=True,
            timeout=30,
            capture_output=True,
        )
        argv = tmp_path / "argv"
        deadline = time.monotonic() + 10
        while not argv.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        assert argv.read_text() == f"{program}|ipfs://bafyexample"

    sh(PACKAGING / "uninstall.sh", env=env)
    assert tree(prefix) == before


def test_install_refuses_percent_in_path(fake_build: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(fake_build / "install.sh"), "--prefix", str(tmp_path / "100%")],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "'%'" in result.stderr
    assert not any((tmp_path / "100%").iterdir())


def test_install_refuses_foreign_files(fake_build: Path, tmp_path: Path) -> None:
    """A peerdesk command that is not ours (a file, or a pipx-style symlink) stays."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    command = prefix / "bin" / "peerdesk"
    for make in (
        lambda: command.write_text("someone else's"),
        lambda: command.symlink_to(tmp_path / "venv" / "bin" / "peerdesk"),
    ):
        make()
        result = subprocess.run(
            ["bash", str(fake_build / "install.sh"), "--prefix", str(prefix)],
            env=clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and "not our symlink" in result.stderr
        assert not (prefix / "opt").exists()
        command.unlink()
