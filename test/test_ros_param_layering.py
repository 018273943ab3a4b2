"""Parameter layering with rcl's own parsing: two params files and `-p` overrides on the command line, as users run
the node (`scenedino_node --ros-args --params-file ... --params-file ... -p name:=value`).

rcl (Kilted wheels) parses every file and `-p` into one table per node key; a nested key (`grid: {voxel_size_m:}`)
is appended as a new entry even when an earlier file set the same name, while a flat key (`grid.voxel_size_m:`) and
`-p` update the first entry of that name; the last entry wins. The shipped specialisation files are therefore
written flat under `/**`, so `-p` after them wins. Each case initialises its own rclpy context with those arguments.
"""
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (scripts/setup.sh installs the ROS 2 wheels)')

from scenedino_ros import params  # noqa: E402
from scenedino_ros.params_file import load_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / 'config' / 'scenedino.yaml'
KITTI = REPO / 'config' / 'kitti360.yaml'


def node_params(args: list[str], node_name: str = 'scenedino') -> params.NodeParams:
    """What the node reads when started with ``--ros-args *args``."""
    from rclpy.node import Node

    context = rclpy.Context()
    rclpy.init(context=context, args=['scenedino_node', '--ros-args', *args])
    try:
        node = Node(node_name, context=context)
        try:
            params.declare(node)
            return params.read(node)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def files(*paths: Path) -> list[str]:
    return [a for p in paths for a in ('--params-file', str(p))]


def test_command_line_overrides_win_over_both_shipped_files():
    p = node_params(files(BASE, KITTI) + ['-p', 'grid.voxel_size_m:=0.4', '-p', 'render.stride_px:=8',
                                          '-p', 'device:=cuda:1'])
    assert p.voxel_size_m == 0.4  # set by both files; the case
    assert p.render_stride_px == 8 and p.device == 'cuda:1'
    # the rest of the layering holds: kitti360 over the base, base over the defaults
    assert p.grid_min_m == (0.0, -25.6, -0.27) and p.rectified
    assert p.occupancy_ground_classes == ('road', 'sidewalk', 'terrain')


def test_files_layer_in_order_and_agree_with_the_offline_reader():
    p = node_params(files(BASE, KITTI))
    assert p == load_params([BASE, KITTI])
    assert p.grid_dims == (256, 256, 32)
    overrides = ['grid.voxel_size_m:=0.4', 'camera_pose.xyz_m:=[0.0, 0.0, 2.0]']
    assert node_params(files(BASE, KITTI) + [a for o in overrides for a in ('-p', o)]) == \
        load_params([BASE, KITTI], overrides)


def test_one_file_and_node_name_keys(tmp_path):
    assert node_params(files(BASE) + ['-p', 'grid.voxel_size_m:=0.4']).voxel_size_m == 0.4
    own = tmp_path / 'robot.yaml'  # a user's specialisation keyed by the node name, flat
    own.write_text('scenedino:\n  ros__parameters:\n    grid.voxel_size_m: 0.4\n    device: cuda\n')
    p = node_params(files(BASE, own))
    assert (p.voxel_size_m, p.device) == (0.4, 'cuda')


def test_rcl_rule_nested_keys_in_a_later_file_beat_command_line_overrides(tmp_path):
    """Documents rcl's behaviour that the flat specialisation files work around (docs/ros_node.md): if this starts
    failing, rcl changed and the docs' "Parameter layering" can be simplified."""
    nested = tmp_path / 'nested.yaml'
    nested.write_text('/**:\n  ros__parameters:\n    grid:\n      voxel_size_m: 0.4\n    device: cuda\n')
    p = node_params(files(BASE, nested) + ['-p', 'grid.voxel_size_m:=0.8', '-p', 'device:=cuda:1'])
    assert p.voxel_size_m == 0.4  # the nested key of the later file, not -p
    assert p.device == 'cuda:1'  # a top-level key: -p wins
    flat = tmp_path / 'flat.yaml'
    flat.write_text('/**:\n  ros__parameters:\n    grid.voxel_size_m: 0.4\n')
    assert node_params(files(BASE, flat) + ['-p', 'grid.voxel_size_m:=0.8']).voxel_size_m == 0.8
