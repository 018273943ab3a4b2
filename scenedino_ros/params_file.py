"""The node's parameter files without ROS: YAML files and ``name:=value`` overrides -> ``NodeParams``.

``load_params(files, overrides)`` reads the same files the node takes with ``--params-file`` (``/**:
ros__parameters:`` or ``<node name>: ros__parameters:``; nested keys are dotted names) and ``name:=value``
overrides, in order, into the ``NodeParams`` the node would get. Offline tools (``scenedino-process-bag``, the first
run) use it; ``default_params_files`` finds the shipped ``config/`` files in a checkout or an install.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .params import NodeParams, ParameterError, check_value, from_values


class ParamsFileError(ValueError):
    """A parameters file cannot be read or has no ``ros__parameters`` for the node."""


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _node_pattern(key: str) -> re.Pattern[str]:
    """A params-file node key (``/**``, ``scenedino``, ``/ns/*``, ...) as a regex over fully qualified names."""
    key = "/" + key.strip("/")
    return re.compile(re.escape(key).replace(r"\*\*", ".*").replace(r"\*", "[^/]*"))


def _entries(tree: Any, path: str, prefix: str = "") -> list[tuple[str, Mapping[str, Any]]]:
    """(node key, ros__parameters mapping) of every entry in a params file, in file order; namespaces may nest."""
    if not isinstance(tree, Mapping):
        raise ParamsFileError(f"{path}: expected a mapping of node names to 'ros__parameters', got {tree!r:.80}")
    entries = []
    for key, value in tree.items():
        if key == "ros__parameters":
            if not isinstance(value, Mapping):
                raise ParamsFileError(f"{path}: 'ros__parameters' of {prefix or '/'} is not a mapping")
            entries.append((prefix or "/", value))
        else:
            entries += _entries(value, path, f"{prefix}/{str(key).strip('/')}")
    return entries


def read_params_file(path: str | Path, node_name: str = "scenedino") -> dict[str, Any]:
    """The parameters a ROS 2 params file gives the node ``/<node_name>`` (what ``--params-file`` would set).

    Entries are ``<node key>: ros__parameters: {...}`` with node keys such as ``/**``, ``scenedino``,
    ``/scenedino`` or wildcard patterns (``*`` one name, ``**`` any); entries of other nodes are ignored, later
    matching entries override earlier ones. Nested maps are flattened to dotted names as ROS does
    (``grid: {voxel_size_m: 0.2}`` -> ``grid.voxel_size_m``). Values are checked one by one (type, range, choices,
    length) but not combined: ``load_params`` validates the result.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsFileError: not YAML, or no ``ros__parameters`` entry for the node.
        ParameterError: an unknown parameter or a bad value; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameters file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ParamsFileError(f"{path}: not a readable YAML file ({exc})") from None
    entries = _entries(tree or {}, str(path))
    fq_name = "/" + node_name.strip("/")
    matching = [params for key, params in entries if _node_pattern(key).fullmatch(fq_name)]
    if not matching:
        found = ", ".join(key for key, _ in entries) or "none"
        raise ParamsFileError(f"{path}: no 'ros__parameters' for node {fq_name} (entries: {found}); use '/**:' or "
                              f"'{node_name}:' as the top-level key")
    values: dict[str, Any] = {}
    for params in matching:
        for name, value in _flatten(params).items():
            try:
                values[name] = check_value(name, value)
            except ParameterError as exc:
                raise ParameterError(name, f"{exc.problem} (in {path})") from None
    return values


def parse_override(text: str) -> tuple[str, Any]:
    """``name:=value`` (as ``ros2 run ... -p``) -> (name, value); the value is parsed as YAML (``[1.0, 2.0]``,
    ``true``, ``0.5``, ``text``). ``ValueError`` without ``:=``."""
    name, sep, raw = text.partition(":=")
    if not sep or not name.strip():
        raise ValueError(f"parameter override {text!r} is not of the form name:=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"parameter override {text!r}: the value is not valid YAML ({exc})") from None
    return name.strip(), value


def load_params(files: Sequence[str | Path] = (), overrides: Sequence[str] = (),
                node_name: str = "scenedino") -> NodeParams:
    """``NodeParams`` from params files layered in order, then ``name:=value`` overrides; what the node started with
    ``--ros-args --params-file f1 --params-file f2 -p name:=value`` would read.

    Raises:
        FileNotFoundError, ParamsFileError: a file cannot be used.
        ParameterError: an unknown parameter or bad value (naming the file or the override) or an inconsistent
            combination.
        ValueError: a malformed override.
    """
    values: dict[str, Any] = {}
    for f in files:
        values.update(read_params_file(f, node_name))
    for text in overrides:
        name, value = parse_override(text)
        try:
            values[name] = check_value(name, value)
        except ParameterError as exc:
            raise ParameterError(name, f"{exc.problem} (in override {text!r})") from None
    return from_values(values)


def default_params_files() -> list[Path]:
    """``scenedino.yaml`` + ``kitti360.yaml`` from the repository's ``config/`` or an install's
    ``share/scenedino_ros/config``; ``FileNotFoundError`` naming the places looked at."""
    here = Path(__file__).resolve()
    folders = [here.parents[1] / "config"] + [parent / "share" / "scenedino_ros" / "config"
                                               for parent in here.parents[1:5]]
    for folder in folders:
        files = [folder / "scenedino.yaml", folder / "kitti360.yaml"]
        if all(f.is_file() for f in files):
            return files
    raise FileNotFoundError("default parameter files scenedino.yaml + kitti360.yaml not found in "
                            f"{', '.join(map(str, folders))}; pass --params")
