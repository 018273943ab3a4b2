"""launch/scenedino.launch.py against stub launch modules (launch/launch_ros are not on PyPI), the installed files it
refers to, the RViz layout, and a launch_testing run where a ROS 2 distribution provides launch_ros."""
import importlib.util
import re
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / 'launch' / 'scenedino.launch.py'


class _Action:
    """Records the arguments an action was built with."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


def _stub_modules():
    launch = types.ModuleType('launch')
    launch.LaunchDescription = type('LaunchDescription', (), {'__init__': lambda self, entities: setattr(
        self, 'entities', list(entities))})
    actions = types.ModuleType('launch.actions')
    actions.DeclareLaunchArgument = type('DeclareLaunchArgument', (_Action,), {})
    actions.LogInfo = type('LogInfo', (_Action,), {})
    actions.OpaqueFunction = type('OpaqueFunction', (_Action,), {})
    actions.EmitEvent = type('EmitEvent', (_Action,), {})
    actions.RegisterEventHandler = type('RegisterEventHandler', (_Action,), {})
    events = types.ModuleType('launch.events')
    events.matches_action = lambda action: ('matches', action)
    substitutions = types.ModuleType('launch.substitutions')
    substitutions.LaunchConfiguration = _LaunchConfiguration
    launch_ros = types.ModuleType('launch_ros')
    ros_actions = types.ModuleType('launch_ros.actions')
    ros_actions.Node = type('Node', (_Action,), {})
    ros_actions.LifecycleNode = type('LifecycleNode', (_Action,), {})
    handlers = types.ModuleType('launch_ros.event_handlers')
    handlers.OnStateTransition = type('OnStateTransition', (_Action,), {})
    ros_events = types.ModuleType('launch_ros.events')
    lifecycle_events = types.ModuleType('launch_ros.events.lifecycle')
    lifecycle_events.ChangeState = type('ChangeState', (_Action,), {})
    launch.actions, launch.substitutions, launch.events = actions, substitutions, events
    launch_ros.actions = ros_actions
    return {'launch': launch, 'launch.actions': actions, 'launch.substitutions': substitutions,
            'launch.events': events, 'launch_ros': launch_ros, 'launch_ros.actions': ros_actions,
            'launch_ros.event_handlers': handlers, 'launch_ros.events': ros_events,
            'launch_ros.events.lifecycle': lifecycle_events}


@pytest.fixture
def launch_module(monkeypatch):
    """The launch file imported against the stubs (sys.modules is restored afterwards)."""
    for name, module in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location('scenedino_launch_under_test', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(module, **arguments):
    """generate_launch_description(), then the OpaqueFunction with the argument defaults + ``arguments``; returns
    (declared arguments, the actions other than log lines)."""
    description = module.generate_launch_description()
    declared = [e for e in description.entities if type(e).__name__ == 'DeclareLaunchArgument']
    values = {e.args[0]: e.kwargs['default_value'] for e in declared}
    values.update(arguments)
    opaque = [e for e in description.entities if type(e).__name__ == 'OpaqueFunction']
    assert len(opaque) == 1
    context = types.SimpleNamespace(launch_configurations=values)
    return declared, [a for a in opaque[0].kwargs['function'](context) if type(a).__name__ != 'LogInfo']


def _log_lines(module, **arguments):
    description = module.generate_launch_description()
    values = {e.args[0]: e.kwargs['default_value'] for e in description.entities
              if type(e).__name__ == 'DeclareLaunchArgument'}
    values.update(arguments)
    opaque = next(e for e in description.entities if type(e).__name__ == 'OpaqueFunction')
    actions = opaque.kwargs['function'](types.SimpleNamespace(launch_configurations=values))
    return [a.kwargs['msg'] for a in actions if type(a).__name__ == 'LogInfo']


def test_arguments(launch_module):
    declared, _ = _run(launch_module)
    names = [e.args[0] for e in declared]
    assert names == ['params_file', 'checkpoint', 'device', 'namespace', 'image', 'camera_info', 'use_rviz',
                     'lifecycle', 'autostart', 'dds_profile']
    assert all(e.kwargs['description'] for e in declared)
    defaults = {e.args[0]: e.kwargs['default_value'] for e in declared}
    assert defaults['image'] == 'image' and defaults['camera_info'] == 'camera_info' and defaults['use_rviz'] == 'false'
    assert defaults['dds_profile'] == 'auto'


def test_default_node(launch_module):
    _, actions = _run(launch_module)
    assert len(actions) == 1
    node = actions[0].kwargs
    assert (node['package'], node['executable'], node['name'], node['namespace']) == (
        'scenedino_ros', 'scenedino_node', 'scenedino', '')
    assert node['remappings'] == [('image', 'image'), ('camera_info', 'camera_info')]
    assert node['parameters'] == [str(REPO / 'config' / 'scenedino.yaml')]
    assert all(Path(p).is_file() for p in node['parameters'])


def test_lifecycle_node_configured_and_activated(launch_module):
    from lifecycle_msgs.msg import Transition
    _, actions = _run(launch_module, lifecycle='true', namespace='robot1')
    node, activate, configure = actions
    assert type(node).__name__ == 'LifecycleNode'
    assert (node.kwargs['executable'], node.kwargs['name'], node.kwargs['namespace']) == (
        'scenedino_lifecycle_node', 'scenedino', 'robot1')
    change = configure.kwargs['event']
    assert change.kwargs['transition_id'] == Transition.TRANSITION_CONFIGURE
    assert change.kwargs['lifecycle_node_matcher'] == ('matches', node)
    handler = activate.args[0]
    assert handler.kwargs['target_lifecycle_node'] is node and handler.kwargs['goal_state'] == 'inactive'
    assert handler.kwargs['entities'][0].kwargs['event'].kwargs['transition_id'] == Transition.TRANSITION_ACTIVATE
    _, manual = _run(launch_module, lifecycle='true', autostart='false')
    assert [type(a).__name__ for a in manual] == ['LifecycleNode']
    _, plain = _run(launch_module, autostart='false')
    assert [type(a).__name__ for a in plain] == ['Node'] and plain[0].kwargs['executable'] == 'scenedino_node'


def test_layering_remaps_and_rviz(launch_module, tmp_path):
    _, actions = _run(launch_module, params_file='kitti360', checkpoint='/data/model.pt', device='cuda:1',
                      namespace='robot1', image='/cam/image_rect', camera_info='/cam/camera_info', use_rviz='true')
    node, rviz = actions[0].kwargs, actions[1].kwargs
    base, spec, extra = node['parameters']
    assert (Path(base).name, Path(spec).name) == ('scenedino.yaml', 'kitti360.yaml')
    assert Path(base).is_file() and Path(spec).is_file()
    assert extra == {'checkpoint': '/data/model.pt', 'device': 'cuda:1'}  # last: wins over the files
    assert node['namespace'] == 'robot1'
    assert node['remappings'] == [('image', '/cam/image_rect'), ('camera_info', '/cam/camera_info')]
    assert rviz['executable'] == 'rviz2' and rviz['arguments'][0] == '-d' and Path(rviz['arguments'][1]).is_file()
    custom = tmp_path / 'robot.yaml'
    custom.write_text('/**:\n  ros__parameters:\n    device: cpu\n')
    _, actions = _run(launch_module, params_file=str(custom))
    assert actions[0].kwargs['parameters'][1] == str(custom)


@pytest.fixture
def fastdds_env(monkeypatch):
    """No Fast DDS profile or RMW choice inherited from the test's environment."""
    monkeypatch.delenv('FASTDDS_DEFAULT_PROFILES_FILE', raising=False)
    monkeypatch.delenv('RMW_IMPLEMENTATION', raising=False)
    return monkeypatch


def test_dds_profile_for_the_node_only_when_it_helps(launch_module, fastdds_env, tmp_path):
    profile = REPO / 'config' / 'fastdds_large_images.xml'
    fastdds_env.setattr(launch_module, 'read_rmem_max', lambda: 4 * 1024 * 1024)
    _, actions = _run(launch_module)
    assert actions[0].kwargs['additional_env'] == {'FASTDDS_DEFAULT_PROFILES_FILE': str(profile)}
    assert profile.is_file()
    assert 'fastdds_large_images.xml' in _log_lines(launch_module)[0]
    # a small socket buffer limit: UDP would lose more than shared memory; keep the defaults and say why
    fastdds_env.setattr(launch_module, 'read_rmem_max', lambda: 212992)
    _, actions = _run(launch_module)
    assert actions[0].kwargs['additional_env'] == {}
    assert re.search(r'net.core.rmem_max is 212992 bytes, below 4194304.*sysctl', _log_lines(launch_module)[0])
    # the user's own profile, another middleware, or dds_profile:=none: untouched
    fastdds_env.setattr(launch_module, 'read_rmem_max', lambda: 4 * 1024 * 1024)
    _, actions = _run(launch_module, dds_profile='none')
    assert actions[0].kwargs['additional_env'] == {}
    fastdds_env.setenv('RMW_IMPLEMENTATION', 'rmw_cyclonedds_cpp')
    _, actions = _run(launch_module)
    assert actions[0].kwargs['additional_env'] == {}
    fastdds_env.delenv('RMW_IMPLEMENTATION')
    fastdds_env.setenv('FASTDDS_DEFAULT_PROFILES_FILE', '/etc/my_profile.xml')
    _, actions = _run(launch_module)
    assert actions[0].kwargs['additional_env'] == {}
    assert '/etc/my_profile.xml' in _log_lines(launch_module)[0]
    # an explicit file
    own = tmp_path / 'own.xml'
    own.write_text('<dds/>')
    _, actions = _run(launch_module, dds_profile=str(own))
    assert actions[0].kwargs['additional_env'] == {'FASTDDS_DEFAULT_PROFILES_FILE': str(own)}
    with pytest.raises(FileNotFoundError, match="dds_profile '/nonexistent.xml'"):
        _run(launch_module, dds_profile='/nonexistent.xml')


def test_rmem_max_reader(tmp_path):
    from scenedino_ros.dds_profile import read_rmem_max

    f = tmp_path / 'rmem_max'
    f.write_text('4194304\n')
    assert read_rmem_max(f) == 4194304
    assert read_rmem_max(tmp_path / 'missing') is None


def test_missing_params_file_is_named(launch_module):
    with pytest.raises(FileNotFoundError, match=r"params_file 'kitti720'.*kitti360"):
        _run(launch_module, params_file='kitti720')


def test_installed_by_cmake():
    """CMakeLists.txt installs what launch_ros needs: the executable in lib/<pkg>, launch/ and config/ in share."""
    cmake = (REPO / 'CMakeLists.txt').read_text()
    assert re.search(r'install\(PROGRAMS "\$\{_launcher\}" DESTINATION lib/\$\{PROJECT_NAME\}\)', cmake)
    assert re.search(r'install\(DIRECTORY launch config\s+DESTINATION share/\$\{PROJECT_NAME\}', cmake)
    assert "'scenedino_node = scenedino_ros.node:main'," in (REPO / 'setup.py').read_text()


def test_rviz_layout_shows_every_output():
    rviz = yaml.safe_load((REPO / 'config' / 'scenedino.rviz').read_text())
    displays = rviz['Visualization Manager']['Displays']
    topics = {d['Topic']['Value']: d['Class'] for d in displays if 'Topic' in d}
    assert topics['/scenedino/occupancy'] == 'rviz_default_plugins/Map'
    assert topics['/scenedino/semantic_points'] == 'rviz_default_plugins/PointCloud2'
    assert topics['/scenedino/voxels'] == 'rviz_default_plugins/MarkerArray'
    assert topics['/scenedino/depth'] == topics['/scenedino/semantics'] == 'rviz_default_plugins/Image'
    assert any(d['Class'] == 'rviz_default_plugins/Grid' for d in displays)
    occupancy = next(d for d in displays if d['Class'] == 'rviz_default_plugins/Map')
    assert occupancy['Topic']['Durability Policy'] == 'Transient Local'


# ----------------------------------------------------------------------------- launch_testing (real ROS 2 only)

def test_launch_file_runs_with_launch_testing(tiny_checkpoint):
    """Includes the real launch file with launch.LaunchService and waits for the outputs (launch_testing_ros)."""
    pytest.importorskip('launch_ros', reason='launch_ros is not on PyPI (the PyPI "launch" is an unrelated '
                        'project): this test runs where a ROS 2 distribution is sourced')
    launch_testing_ros = pytest.importorskip('launch_testing_ros', reason='launch_testing_ros is not installed')
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        get_package_prefix('scenedino_ros')
    except PackageNotFoundError:
        pytest.skip('scenedino_ros is not installed in the ament index: colcon build && source install/setup.bash')
    import numpy as np
    import rclpy
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from nav_msgs.msg import OccupancyGrid
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    import launch
    from scenedino_core.images import synthetic_street_image

    service = launch.LaunchService()
    service.include_launch_description(launch.LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={'checkpoint': str(tiny_checkpoint), 'image': '/lt/image_raw',
                          'camera_info': '/lt/camera_info'}.items())]))
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('launch_test_camera', context=context)
    pub_image = node.create_publisher(Image, '/lt/image_raw', 10)
    pub_info = node.create_publisher(CameraInfo, '/lt/camera_info', 10)
    rgb = synthetic_street_image((240, 320))
    stop = threading.Event()

    def camera():
        while not stop.is_set():
            image = Image(height=240, width=320, encoding='rgb8', step=960, data=rgb.tobytes())
            image.header.stamp, image.header.frame_id = node.get_clock().now().to_msg(), 'camera_optical_frame'
            info = CameraInfo(width=320, height=240, k=np.array([200.0, 0, 160, 0, 200, 120, 0, 0, 1]))
            info.header = image.header
            pub_image.publish(image)
            pub_info.publish(info)
            time.sleep(0.5)

    publisher = threading.Thread(target=camera, daemon=True)
    publisher.start()
    wait = launch_testing_ros.WaitForTopics(
        [('/scenedino/semantic_points', PointCloud2), ('/scenedino/occupancy', OccupancyGrid)], timeout=120.0)
    try:
        assert wait.wait(), f'topics not received: {wait.topics_not_received()}'
    finally:
        wait.shutdown()
        stop.set()
        publisher.join()
        node.destroy_node()
        rclpy.shutdown(context=context)
        service.shutdown()
        runner.join(timeout=30)
