"""pip installation of scenedino_core and scenedino_ros.

ROS 2 users build this repository with colcon instead: package.xml declares an ament_cmake
package, so colcon runs CMakeLists.txt (which also generates scenedino_ros.msg) and never this file.
"""
from setuptools import find_packages, setup

ROS_WHEELS = [
    'ros-kilted-rclpy[fastrtps]',
    'ros-kilted-std-msgs',
    'ros-kilted-sensor-msgs',
    'ros-kilted-nav-msgs',
    'ros-kilted-visualization-msgs',
    'ros-kilted-geometry-msgs',
    'ros-kilted-diagnostic-msgs',
    'ros-kilted-std-srvs',
]

setup(
    name='scenedino-ros',
    version='0.1.0',
    description='SceneDINO unsupervised semantic scene completion: PyTorch core and ROS 2 node',
    license='Apache-2.0',
    packages=find_packages(
        include=['scenedino_core', 'scenedino_core.*', 'scenedino_ros', 'scenedino_ros.*'],
        exclude=['test', 'test.*'],
    ),
    # Explicit flat layout: an editable install then adds the repository root to sys.path (a
    # plain .pth) instead of an import hook, so scenedino_ros/__init__.py (pkgutil.extend_path)
    # also finds the generated scenedino_ros.msg that scripts/build_msgs.sh installs elsewhere.
    package_dir={'': '.'},
    python_requires='>=3.10',
    install_requires=[
        'numpy',
        'pyyaml',
        'opencv-python-headless',
        'scipy',
        'tqdm',
        'huggingface_hub',
        'matplotlib',
        'rosbags',
        'torch>=2.1',
        'timm>=1.0',
    ],
    extras_require={
        # Only without a sourced ROS 2 distribution: never pip-install these over /opt/ros.
        'ros': ROS_WHEELS,
        'test': ['pytest'],
        # Live view of the first run and of bag processing (scenedino-first-run --viz).
        'viz': ['foxglove-sdk'],
    },
    # The one list of commands: CMakeLists.txt installs a launcher for each of these too (colcon builds).
    entry_points={
        'console_scripts': [
            'scenedino-infer = scenedino_core.cli.infer:main',
            'scenedino-download = scenedino_core.cli.download:main',
            'scenedino-eval-sscbench = scenedino_core.cli.eval_sscbench:main',
            'scenedino-eval-2d = scenedino_core.cli.eval_2d:main',
            'scenedino-preprocess-kitti360 = scenedino_core.cli.preprocess_kitti360:main',
            'scenedino-train = scenedino_core.cli.train:main',
            'scenedino-kitti360-to-bag = scenedino_ros.cli.kitti360_to_bag:main',
            'scenedino-process-bag = scenedino_ros.cli.process_bag:main',
            'scenedino-replay = scenedino_ros.cli.replay:main',
            'scenedino_replay = scenedino_ros.cli.replay:main',
            'scenedino-first-run = scenedino_ros.cli.first_run:main',
            'scenedino_node = scenedino_ros.node:main',
            'scenedino_lifecycle_node = scenedino_ros.lifecycle_node:main',
        ],
    },
)
