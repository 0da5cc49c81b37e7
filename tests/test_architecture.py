"""The layering, checked on the source: desktop → client → peer → libp2p.

Only ``gui/bridge.py`` may reach the peer (trio, py-libp2p, core objects); every other gui
module gets a ``PeerClient`` and sees the core only through pure data modules. Imports inside
functions count too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GUI_MAY_IMPORT = {
    "core.events": "the closed union of events the client delivers",
    "core.snapshots": "the frozen answers of the client",
    "core.profile.settings": "the settings dataclass the Settings dialog edits (TOML, no network)",
    "core.profile.history": "the desktop's own conversation store (SQLite, no network)",
    "core.profile.location": "where the profile folder is (platformdirs, no network)",
}
CROSSING = "gui/bridge.py"
"""The one module that implements the client over the real peer."""
ENTRY_POINT = {"gui/cli.py": {"core.__version__", "core.server.serve", "core.libp2p_compat"}}
"""The command line picks the desktop or the headless server; the server is not the desktop,
so the command line may start it (and read the version)."""
FORBIDDEN_ROOTS = ("trio", "libp2p", "multiaddr", "trio_websocket", "qasync_trio")


def imports(path: Path, rel: str) -> set[str]:
    """Every module the file imports, at any depth, as absolute names (``rel``: where it is
    in the repository, for relative imports)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(Path(rel).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            if module in ("core", "gui"):  # `from core import events` imports core.events
                found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def violations(path: Path, rel: str) -> list[str]:
    allowed = set(GUI_MAY_IMPORT) | ENTRY_POINT.get(rel, set())
    names = imports(path, rel)
    bad = []
    for name in sorted(names):
        root = name.split(".")[0]
        if root in FORBIDDEN_ROOTS:
            bad.append(name)
        elif root == "core" and name not in allowed:
            # `from core import events` adds both "core" and "core.events": the package
            # itself is fine when every name taken from it is allowed.
            if name == "core" and any(n.startswith("core.") for n in names):
                continue
            bad.append(name)
    return bad


def test_only_the_bridge_reaches_the_peer() -> None:
    modules = sorted((ROOT / "gui").glob("*.py"))
    assert (ROOT / CROSSING) in modules
    found = {}
    for path in modules:
        rel = path.relative_to(ROOT).as_posix()
        if rel != CROSSING and (bad := violations(path, rel)):
            found[rel] = bad
    assert found == {}, f"gui modules reaching past the client: {found}"


def test_the_rule_sees_lazy_relative_and_from_imports(tmp_path: Path) -> None:
    """The checker itself: each way of importing the core is caught."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from core import events, peer\n"
        "def f():\n"
        "    import trio\n"
        "    from core.runtime import CoreRuntime\n"
        "    from .bridge import CoreBridge\n"
    )
    assert violations(probe, "gui/probe.py") == ["core.peer", "core.runtime", "trio"]
    assert violations(probe, "gui/cli.py") == ["core.peer", "core.runtime", "trio"]
    probe.write_text("from core import events, snapshots\nfrom . import client\n")
    assert violations(probe, "gui/probe.py") == []


def test_snapshots_are_pure() -> None:
    """The client's answers are plain data: no Qt, no trio, no libp2p, no other core module."""
    names = imports(ROOT / "core" / "snapshots.py", "core/snapshots.py")
    assert not {n for n in names if n.split(".")[0] in (*FORBIDDEN_ROOTS, "PySide6", "core")}
