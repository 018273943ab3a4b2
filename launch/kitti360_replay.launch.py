"""Replay a KITTI-360 bag (``scenedino-kitti360-to-bag``) into the SceneDINO node, with RViz, on simulated time.

    ros2 launch scenedino_ros kitti360_replay.launch.py bag:=/data/kitti360_0009 \
        checkpoint:=/data/scenedino.pt rate:=0.5

Starts ``ros2 bag play BAG --clock --rate R`` (``/clock`` from the bag), the node with ``config/scenedino.yaml`` +
``config/kitti360.yaml`` listening to camera 00 of the bag, and RViz with ``config/kitti360_replay.rviz`` (fixed
frame ``map``). Every process runs with ``use_sim_time`` unless ``use_sim_time:=false``. Without ``ros2 bag`` (the
PyPI wheels), play the bag with ``scenedino-replay BAG`` and start the node alone (docs/ros_node.md, "Replaying bags").
"""
from pathlib import Path

from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

#: share/scenedino_ros when installed, the repository root in a source checkout.
SHARE = Path(__file__).resolve().parents[1]
CONFIG = SHARE / 'config'
PARAMETER_FILES = (CONFIG / 'scenedino.yaml', CONFIG / 'kitti360.yaml')
RVIZ_CONFIG = CONFIG / 'kitti360_replay.rviz'
#: Camera 00 of a converted drive (scenedino_ros.bag.kitti360.TOPICS).
IMAGE_TOPIC = '/kitti360/image_00/image_rect'
CAMERA_INFO_TOPIC = '/kitti360/image_00/camera_info'

#: (name, default, description) of every launch argument; a default of None makes the argument required.
ARGUMENTS = (
    ('bag', None, 'rosbag2 folder written by scenedino-kitti360-to-bag (MCAP or SQLite 3)'),
    ('checkpoint', '', 'SceneDINO checkpoint (.pt); empty: the value in the parameter files'),
    ('rate', '1.0', 'Playback speed factor of ros2 bag play (0.5: half speed, for a slow GPU or a CPU)'),
    ('rviz', 'true', 'Also start RViz with config/kitti360_replay.rviz'),
    ('use_sim_time', 'true', 'Run the node and RViz on the bag clock (/clock from ros2 bag play --clock)'),
    ('compressed', 'false', 'The bag has CompressedImage topics (converted with --compressed)'),
)


def is_true(value: str) -> bool:
    """A launch argument as a bool; ``ValueError`` for anything but true/false (1/0, yes/no)."""
    text = value.strip().lower()
    if text in ('true', '1', 'yes'):
        return True
    if text in ('false', '0', 'no'):
        return False
    raise ValueError(f"expected true or false, got '{value}'")


def player_command(bag: str, rate: str) -> list[str]:
    """``ros2 bag play`` with ``/clock`` (its default rate) at speed ``rate``."""
    if not bag:
        raise ValueError('bag:=... is required: the rosbag2 folder to play')
    try:
        positive = float(rate) > 0
    except ValueError:
        positive = False
    if not positive:
        raise ValueError(f"rate must be a number > 0, got '{rate}'")
    return ['ros2', 'bag', 'play', bag, '--clock', '--rate', rate]


def node_parameters(checkpoint: str, use_sim_time: bool, compressed: bool) -> list:
    """Base file, KITTI-360 specialisation, then the launch arguments (last wins)."""
    overrides = {'use_sim_time': use_sim_time}
    if checkpoint:
        overrides['checkpoint'] = checkpoint
    if compressed:
        overrides['input.transport'] = 'compressed'
    return [*(str(p) for p in PARAMETER_FILES), overrides]


def launch_setup(context, *args, **kwargs):
    value = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    sim_time = is_true(value['use_sim_time'])
    actions = [
        ExecuteProcess(cmd=player_command(value['bag'], value['rate']), name='bag_play', output='screen'),
        Node(package='scenedino_ros', executable='scenedino_node', name='scenedino',
             parameters=node_parameters(value['checkpoint'], sim_time, is_true(value['compressed'])),
             remappings=[('image', IMAGE_TOPIC), ('camera_info', CAMERA_INFO_TOPIC)], output='screen',
             emulate_tty=True),
    ]
    if is_true(value['rviz']):
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2', arguments=['-d', str(RVIZ_CONFIG)],
                            parameters=[{'use_sim_time': sim_time}], output='screen'))
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, description=description) if default is None else
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup)])
