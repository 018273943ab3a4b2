"""The package layout keeps its promises: the core never imports ROS or the ROS package, the live node never imports
the offline tools (bag/, demo/, cli/), the bag tools never import the demo, and CLIs are imported by nobody."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(REPO).parts[:-1])
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            out.add(prefix)
            out.update(f"{prefix}.{a.name}" for a in node.names)
    return out


def _modules(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


ROS_ROOTS = ("rclpy", "sensor_msgs", "nav_msgs", "std_msgs", "geometry_msgs", "visualization_msgs", "diagnostic_msgs",
             "tf2_ros", "scenedino_ros")


@pytest.mark.parametrize("path", _modules("scenedino_core"), ids=lambda p: str(p.relative_to(REPO)))
def test_core_imports_no_ros(path):
    bad = sorted(m for m in _imports(path) if m.split(".")[0] in ROS_ROOTS)
    assert not bad, f"{path.relative_to(REPO)} imports {bad}"


LIVE_NODE = [p for p in _modules("scenedino_ros") if p.parent == REPO / "scenedino_ros"]


@pytest.mark.parametrize("path", LIVE_NODE, ids=lambda p: p.name)
def test_live_node_imports_no_offline_tools(path):
    bad = sorted(m for m in _imports(path)
                 if m.startswith(("scenedino_ros.bag", "scenedino_ros.demo", "scenedino_ros.cli")))
    assert not bad, f"{path.relative_to(REPO)} imports {bad}"


@pytest.mark.parametrize("path", _modules("scenedino_ros/bag"), ids=lambda p: p.name)
def test_bag_tools_import_no_demo_or_cli(path):
    bad = sorted(m for m in _imports(path) if m.startswith(("scenedino_ros.demo", "scenedino_ros.cli")))
    assert not bad, f"{path.relative_to(REPO)} imports {bad}"


@pytest.mark.parametrize("path", [p for p in _modules("scenedino_ros") + _modules("scenedino_core")
                                  if "cli" not in p.parts], ids=lambda p: str(p.relative_to(REPO)))
def test_libraries_import_no_cli(path):
    bad = sorted(m for m in _imports(path) if ".cli." in f".{m}." and not m.endswith("cli._args"))
    assert not bad, f"{path.relative_to(REPO)} imports the command-line module(s) {bad}"
