"""Launch the SceneDINO node (and optionally RViz).

    ros2 launch scenedino_ros scenedino.launch.py checkpoint:=/data/scenedino.pt \
        image:=/camera/image_rect camera_info:=/camera/camera_info params_file:=kitti360 use_rviz:=true

With ``lifecycle:=true`` the managed node (``scenedino_lifecycle_node``) starts instead; ``autostart`` (default true)
then configures and activates it, ``autostart:=false`` leaves it unconfigured for a lifecycle manager or
``ros2 lifecycle set``.

Parameters are layered like nvblox's base + specialisation files: ``config/scenedino.yaml``, then ``params_file``
(a path, or the name of a file in ``config/`` such as ``kitti360``), then the ``checkpoint`` / ``device`` arguments.
Later entries win.

The node alone gets ``FASTDDS_DEFAULT_PROFILES_FILE`` = ``config/fastdds_large_images.xml`` (``dds_profile:=auto``,
the default) when that profile can help: Fast DDS is the middleware, no profile is set already, and
``net.core.rmem_max`` is at least 4 MiB (``scenedino_ros.dds_profile``); the launch log says which and why.
"""
import os
from pathlib import Path

from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription
from scenedino_ros.dds_profile import PROFILE_ENV, choose_profile, read_rmem_max

#: share/scenedino_ros when installed, the repository root in a source checkout.
SHARE = Path(__file__).resolve().parents[1]
CONFIG = SHARE / 'config'
BASE_PARAMS = CONFIG / 'scenedino.yaml'
RVIZ_CONFIG = CONFIG / 'scenedino.rviz'

#: (name, default, description) of every launch argument.
ARGUMENTS = (
    ('params_file', '', 'Specialisation layered over config/scenedino.yaml: a YAML path or the name of a file in '
                        'config/ (e.g. kitti360); empty: the base file only'),
    ('checkpoint', '', 'SceneDINO checkpoint (.pt); empty: the value in the parameter files'),
    ('device', '', 'Torch device (cpu, cuda, cuda:N); empty: the value in the parameter files'),
    ('namespace', '', 'Namespace of the node (outputs become <namespace>/scenedino/...)'),
    ('image', 'image', 'Input image topic (sensor_msgs/Image; <image>/compressed with input.transport: compressed)'),
    ('camera_info', 'camera_info', 'CameraInfo topic of the images'),
    ('use_rviz', 'false', 'Also start RViz with config/scenedino.rviz'),
    ('lifecycle', 'false', 'Start the managed (lifecycle) node scenedino_lifecycle_node instead of scenedino_node'),
    ('autostart', 'true', 'With lifecycle:=true: configure and activate the node at launch'),
    ('dds_profile', 'auto', 'Fast DDS profile of the node: auto (config/fastdds_large_images.xml when it helps: '
                            'large images from best-effort publishers), none, or an XML file'),
)


def _true(value: str) -> bool:
    return value.lower() in ('true', '1', 'yes')


def lifecycle_actions(node) -> list:
    """Configure ``node`` at launch, and activate it once it is inactive."""
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state='inactive',
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    return [activate, configure]


def parameter_files(params_file: str) -> list[Path]:
    """The base parameter file, then the specialisation (``FileNotFoundError`` naming it if missing)."""
    if not params_file:
        return [BASE_PARAMS]
    path = Path(params_file)
    if path.suffix not in ('.yaml', '.yml') and '/' not in params_file:
        path = CONFIG / f'{params_file}.yaml'
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG.glob('*.yaml'))
        raise FileNotFoundError(f"params_file '{params_file}': {path} does not exist (files in config/: {known})")
    return [BASE_PARAMS, path]


def remappings(image: str, camera_info: str) -> list[tuple[str, str]]:
    return [('image', image), ('camera_info', camera_info)]


def overrides(checkpoint: str, device: str) -> dict:
    """Parameters given as launch arguments; they win over the files."""
    return {k: v for k, v in (('checkpoint', checkpoint), ('device', device)) if v}


def dds_environment(dds_profile: str) -> tuple[dict, str]:
    """Extra environment of the node for the ``dds_profile`` argument, and the reason for the log."""
    profile, reason = choose_profile(dds_profile, os.environ, read_rmem_max(), CONFIG)
    return ({PROFILE_ENV: str(profile)} if profile else {}), reason


def launch_setup(context, *args, **kwargs):
    value = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    parameters = [str(p) for p in parameter_files(value['params_file'])]
    extra = overrides(value['checkpoint'], value['device'])
    if extra:
        parameters.append(extra)
    managed = _true(value['lifecycle'])
    env, reason = dds_environment(value['dds_profile'])
    node = (LifecycleNode if managed else Node)(
        package='scenedino_ros', executable='scenedino_lifecycle_node' if managed else 'scenedino_node',
        name='scenedino', namespace=value['namespace'], parameters=parameters,
        remappings=remappings(value['image'], value['camera_info']), output='screen', emulate_tty=True,
        additional_env=env)
    actions = [LogInfo(msg=f'scenedino: {reason}'), node]
    if managed and _true(value['autostart']):
        actions += lifecycle_actions(node)
    if _true(value['use_rviz']):
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2', arguments=['-d', str(RVIZ_CONFIG)],
                            output='screen'))
    return actions


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(name, default_value=default, description=description)
                              for name, default, description in ARGUMENTS] + [OpaqueFunction(function=launch_setup)])
