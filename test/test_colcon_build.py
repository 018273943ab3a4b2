"""colcon builds the repository as one ament_cmake package with the standard ROS 2 install layout."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = 'scenedino_ros'


def _colcon():
    exe = Path(sys.executable).parent / 'colcon'
    return str(exe) if exe.is_file() else shutil.which('colcon')


def _build_env():
    """The environment for colcon: a sourced distro as it is, else the venv's ROS wheels.

    Returns None when no prefix provides ament_cmake and rosidl_default_generators.
    """
    env = dict(os.environ)
    prefixes = [p for p in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    if not os.environ.get('ROS_DISTRO'):
        prefixes.insert(0, sys.prefix)
    found = [
        p for p in prefixes
        if (Path(p) / 'share/ament_cmake/cmake').is_dir()
        and (Path(p) / 'share/rosidl_default_generators').is_dir()
    ]
    if not found:
        return None
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(dict.fromkeys(prefixes))
    env['CMAKE_PREFIX_PATH'] = os.pathsep.join(
        dict.fromkeys(prefixes + [p for p in env.get('CMAKE_PREFIX_PATH', '').split(os.pathsep) if p]))
    return env


def _unpatched_wheel_cmake_files():
    """CMake files of the ROS wheels that still name the wheel build box's Python."""
    share = Path(sys.prefix) / 'share'
    if os.environ.get('ROS_DISTRO') or not share.is_dir():
        return []
    return [
        f for f in share.glob('*/cmake/*.cmake')
        if '/opt/python/cp3' in f.read_text(errors='replace')
    ]


@pytest.fixture(scope='module')
def install_dir(tmp_path_factory):
    colcon = _colcon()
    if colcon is None:
        pytest.skip('colcon is not installed (pip install colcon-common-extensions)')
    env = _build_env()
    if env is None:
        pytest.skip('ament_cmake / rosidl_default_generators not found: install the ROS wheels '
                    '(scripts/setup.sh --ros-wheels) or source a ROS 2 distribution')
    if _unpatched_wheel_cmake_files():
        pytest.skip('the ROS wheels\' CMake files still point at /opt/python: run scripts/build_msgs.sh once')

    tmp = tmp_path_factory.mktemp('colcon')
    cmake_args = ['-DBUILD_TESTING=OFF', f'-DPython3_EXECUTABLE={sys.executable}']
    if shutil.which('ninja'):
        cmake_args = ['-G', 'Ninja', *cmake_args]
    cmd = [
        colcon, '--log-base', str(tmp / 'log'), 'build',
        '--base-paths', str(REPO),
        '--build-base', str(tmp / 'build'),
        '--install-base', str(tmp / 'install'),
        '--event-handlers', 'console_direct-', 'desktop_notification-', 'status-',
        '--cmake-args', *cmake_args,
    ]
    proc = subprocess.run(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        logs = sorted((tmp / 'log').glob('latest_build/*/stdout_stderr.log'))
        details = logs[0].read_text(errors='replace')[-4000:] if logs else proc.stderr[-4000:]
        pytest.fail(f'colcon build failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{details}')
    return tmp / 'install'


def test_only_this_package_is_found(install_dir):
    assert sorted(p.name for p in install_dir.iterdir() if p.is_dir()) == [PKG]


def console_scripts() -> dict[str, str]:
    """setup.py's console_scripts: command -> module."""
    text = (REPO / 'setup.py').read_text()
    return dict(re.findall(r"^ *'([a-z0-9_-]+) = ([a-z0-9_.]+):main',$", text, flags=re.M))


def test_every_command_installed(install_dir):
    """Each console script of setup.py is a launcher in lib/<pkg> (ros2 run) and in bin/ (PATH)."""
    commands = console_scripts()
    assert len(commands) >= 12 and 'scenedino_node' in commands and 'scenedino-infer' in commands
    for name, module in commands.items():
        for exe in (install_dir / PKG / 'lib' / PKG / name, install_dir / PKG / 'bin' / name):
            assert exe.is_file(), exe
            assert os.access(exe, os.X_OK), f'{exe} is not executable'
            text = exe.read_text()
            assert text.startswith('#!/usr/bin/env python3') and f'from {module} import main' in text


def _site_packages(install_dir: Path) -> Path:
    return next(install_dir.glob(f'{PKG}/lib/python3*/site-packages'))


def test_installed_commands_run(install_dir):
    """The installed launchers import their modules from the install tree: --help works for each."""
    env = {**os.environ, 'PYTHONPATH': str(_site_packages(install_dir))}
    for name in console_scripts():
        if name.endswith('_node'):
            continue  # ROS nodes take --ros-args, not --help; test_ros_node.py and test_lifecycle_node.py start them
        exe = install_dir / PKG / 'bin' / name
        proc = subprocess.run([sys.executable, str(exe), '--help'], env=env, capture_output=True, text=True,
                              timeout=120, cwd=install_dir)
        assert proc.returncode == 0, f'{name} --help failed:\n{proc.stderr[-2000:]}'
        assert 'usage:' in proc.stdout


def test_share_layout(install_dir):
    share = install_dir / PKG / 'share'
    assert (share / PKG / 'package.xml').is_file()
    assert (share / PKG / 'launch').is_dir()
    assert (share / PKG / 'config').is_dir()
    assert (share / 'ament_index/resource_index/packages' / PKG).is_file()
    assert (share / 'ament_index/resource_index/rosidl_interfaces' / PKG).is_file()
    assert (share / PKG / 'msg/SemanticVoxelGrid.msg').is_file()


def test_python_packages_installed_beside_generated_msg(install_dir):
    generated = list(install_dir.glob(f'{PKG}/lib/python3*/site-packages/{PKG}/msg/_semantic_voxel_grid.py'))
    assert len(generated) == 1, generated
    site = generated[0].parents[2]
    # Our sources land in the same folder as the generated code, with our __init__.py.
    assert (site / PKG / '__init__.py').read_text() == (REPO / PKG / '__init__.py').read_text()
    assert (site / 'scenedino_core' / '__init__.py').is_file()
    assert list(site.glob(f'{PKG}/{PKG}_s__rosidl_typesupport_c*.so'))


def test_installed_message_imports_and_serialises(install_dir, tmp_path):
    """What `source install/setup.bash` provides: the installed scenedino_ros.msg works."""
    site = _site_packages(install_dir)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(site), env.get('PYTHONPATH')]))
    env['LD_LIBRARY_PATH'] = os.pathsep.join(
        filter(None, [str(install_dir / PKG / 'lib'), env.get('LD_LIBRARY_PATH')]))
    code = (
        'import scenedino_ros.msg as m\n'
        'from rclpy.serialization import deserialize_message, serialize_message\n'
        'g = m.SemanticVoxelGrid(size_x=2, size_y=1, size_z=1, labels=[3, m.SemanticVoxelGrid.FREE])\n'
        'assert list(deserialize_message(serialize_message(g), m.SemanticVoxelGrid).labels) == [3, 254]\n'
        'print(m.__file__)\n'
    )
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith(str(site)), proc.stdout
