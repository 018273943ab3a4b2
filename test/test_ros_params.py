"""scenedino_ros.params: one table declares and reads the parameters; bad values name the parameter."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from scenedino_ros import outputs, params
from scenedino_ros.params import NodeParams, ParameterError, from_values

REPO = Path(__file__).resolve().parents[1]


def _flatten(tree, prefix=''):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


def _yaml_params(name):
    data = yaml.safe_load((REPO / 'config' / name).read_text())
    assert list(data) == ['/**'] and list(data['/**']) == ['ros__parameters']
    return _flatten(data['/**']['ros__parameters'])


def test_table_is_complete():
    specs = params.specs()
    names = [s.name for _, s, _ in specs]
    assert len(names) == len(set(names)) == len(dataclasses.fields(NodeParams))
    assert all(s.description for _, s, _ in specs)
    assert from_values({}) == NodeParams()


def test_base_yaml_lists_every_parameter_with_its_default():
    values = _yaml_params('scenedino.yaml')
    empty_arrays = {s.name for _, s, d in params.specs() if d == ()}
    assert set(values) == set(params.names()) - empty_arrays
    assert from_values(values) == NodeParams()


def test_kitti360_specialisation():
    base = _yaml_params('scenedino.yaml')
    spec = _yaml_params('kitti360.yaml')
    assert set(spec) <= set(params.names())
    p = from_values({**base, **spec})
    assert p.grid_dims == (256, 256, 32)  # the SSCBench grid
    assert p.rectified
    pose = outputs.static_camera_pose(p)
    assert pose[2, 3] == pytest.approx(1.553)
    optical_axis = pose[:3, 2]
    assert np.degrees(np.arcsin(-optical_axis[2])) == pytest.approx(5.04, abs=0.01)  # pitched down


@pytest.mark.parametrize('values, name, match', [
    ({'grid.voxel_size_m': 0.0}, 'grid.voxel_size_m', r'outside \[0.01, 10.0\]'),
    ({'grid.voxel_size_m': 'big'}, 'grid.voxel_size_m', 'expected float'),
    ({'grid.min_m': [0.0, 1.0]}, 'grid.min_m', 'needs 3 values'),
    ({'grid.max_m': [25.5, 12.8, 3.6]}, 'grid.max_m', 'not a multiple of grid.voxel_size_m'),
    ({'grid.max_m': [0.0, 12.8, 3.6]}, 'grid.max_m', 'must exceed min'),
    ({'grid.voxel_size_m': 0.01, 'grid.max_m': [100.0, 12.8, 3.6]}, 'grid.max_m', 'exceeds'),
    ({'precision': 'fp16'}, 'precision', r"'fp16' is not one of \['fp32', 'tf32', 'bf16'\]"),
    ({'prediction_mode': 'magic'}, 'prediction_mode', 'is not one of'),
    ({'device': 'gpu0'}, 'device', 'not cpu, cuda or cuda:N'),
    ({'occupancy.min_height_m': 5.0, 'occupancy.max_height_m': 6.0}, 'occupancy.min_height_m', 'no voxel centre'),
    ({'occupancy.max_height_m': 0.0}, 'occupancy.max_height_m', 'below'),
    ({'occupancy.ground_classes': ['road', 'lava']}, 'occupancy.ground_classes', "unknown class 'lava'"),
    ({'class_colors_rgb': [1, 2, 3]}, 'class_colors_rgb', 'needs 0 or 48 values'),
    ({'class_colors_rgb': [300] * 48}, 'class_colors_rgb', '0..255'),
    ({'camera_pose.matrix': [1.0] * 16}, 'camera_pose.matrix', 'not a rigid transform'),
    ({'render.stride_px': 0}, 'render.stride_px', 'outside'),
    ({'allow_random_weights': 'yes'}, 'allow_random_weights', 'expected bool'),
    ({'no_such_thing': 1}, 'no_such_thing', 'unknown parameter'),
])
def test_invalid_values_name_the_parameter(values, name, match):
    with pytest.raises(ParameterError, match=match) as info:
        from_values(values)
    assert str(info.value).startswith(f"parameter '{name}")


def test_derived_settings():
    p = from_values({'grid.voxel_size_m': 0.5, 'grid.min_m': [0.0, -4.0, -1.0], 'grid.max_m': [8.0, 4.0, 3.0],
                     'occupancy.ground_classes': ['road'], 'camera_pose.matrix': np.eye(4).ravel().tolist()})
    cfg = outputs.pipeline_config(p)
    assert cfg.grid.dims == (16, 16, 8) and cfg.grid.origin == (0.0, -4.0, -1.0)
    assert cfg.ground_labels == (7,)
    np.testing.assert_array_equal(outputs.static_camera_pose(p), np.eye(4))


# ----------------------------------------------------------------------------- with rclpy (ros_context: conftest)

def _node(context, overrides):
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    return Node('params_test', context=context,
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


def test_declared_with_descriptors_and_read_back(ros_context):
    node = _node(ros_context, {'grid.voxel_size_m': 0.4, 'grid.max_m': [25.6, 12.8, 3.6],
                               'camera_pose.matrix': np.eye(4).ravel().tolist(), 'device': 'cuda:1'})
    try:
        params.declare(node)
        p = params.read(node)
        assert p.voxel_size_m == 0.4 and p.device == 'cuda:1' and p.camera_matrix == tuple(np.eye(4).ravel())
        assert p.class_colors_rgb == ()  # empty array parameter without an override
        d = node.describe_parameter('grid.voxel_size_m')
        assert d.read_only and 'Voxel edge' in d.description
        assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (0.01, 10.0)
        assert node.describe_parameter('render.stride_px').integer_range[0].from_value == 1
        assert 'fp32, tf32, bf16' in node.describe_parameter('precision').additional_constraints
        from rclpy.parameter import Parameter
        result = node.set_parameters([Parameter('grid.voxel_size_m', value=0.3)])[0]
        assert not result.successful and 'read-only' in result.reason
    finally:
        node.destroy_node()


def test_out_of_range_override_fails_at_declaration_naming_it(ros_context):
    node = _node(ros_context, {'grid.voxel_size_m': 50.0})
    try:
        with pytest.raises(ParameterError, match=r"^parameter 'grid.voxel_size_m': .*out of range"):
            params.declare(node)
    finally:
        node.destroy_node()


def test_wrong_type_override_fails_naming_it(ros_context):
    node = _node(ros_context, {'render.stride_px': 2.5})
    try:
        with pytest.raises(ParameterError, match=r"^parameter 'render.stride_px'"):
            params.declare(node)
    finally:
        node.destroy_node()


def test_docs_list_every_parameter_and_topic():
    doc = (REPO / 'docs' / 'ros_node.md').read_text()
    missing = [name for name in params.names() if f'| `{name}` |' not in doc]
    assert not missing, f'docs/ros_node.md lacks parameters {missing}'
    for topic in ('image', 'camera_info', '~/occupancy', '~/semantic_points', '~/voxels', '~/depth', '~/semantics',
                  '~/voxel_grid', '/diagnostics'):
        assert f'| `{topic}` |' in doc, topic
    assert (REPO / 'docs' / 'images' / 'ros_outputs.png').is_file()
