#!/usr/bin/env bash
# Generate the scenedino_ros messages (msg/*.msg) with CMake from the PyPI ROS 2 wheels and
# make `import scenedino_ros.msg` work in the venv; also tf2_msgs/TFMessage where it is missing.
#
#   scripts/build_msgs.sh [--prefix DIR] [--venv DIR] [--clean]
#
# Builds CMakeLists.txt with SCENEDINO_INTERFACES_ONLY=ON in build/msgs and installs into
# DIR (default build/ros_prefix). It then writes <venv>/site-packages/_scenedino_ros_msgs.pth,
# which puts DIR's site-packages on sys.path and DIR/lib on LD_LIBRARY_PATH (the type support
# libraries are loaded by name, so the loader must see that folder when Python starts; the
# .pth sorts before ros_wheels_bootstrapper.pth, which re-executes Python with the environment).
# scenedino_ros/__init__.py extends its __path__ with pkgutil, so the editable sources in the
# repository and the generated scenedino_ros.msg in DIR form one package.
#
# The PyPI wheels have no tf2_msgs, so /tf and /tf_static (of bags, for scenedino-replay) could
# not be published. Without a ROS 2 distribution ($ROS_DISTRO unset) and without an importable
# tf2_msgs elsewhere, the minimal package third_party/tf2_msgs (TFMessage only, same type hash
# and CDR layout as the real one) is built in build/tf2_msgs into the same DIR. It is skipped when
# its inputs are unchanged (hash stamp in DIR/share/tf2_msgs) and never built over a sourced distro.
#
# With a sourced ROS 2 distribution, use colcon instead (see README); this script then only
# prepends the venv to AMENT_PREFIX_PATH/CMAKE_PREFIX_PATH and builds against the distro.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX="$ROOT/build/ros_prefix"
VENV="${VIRTUAL_ENV:-$ROOT/.venv}"
CLEAN=0

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --prefix=*) PREFIX="${1#*=}"; shift ;;
    --venv) VENV="$2"; shift 2 ;;
    --venv=*) VENV="${1#*=}"; shift ;;
    --clean) CLEAN=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "build_msgs.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

die() { echo "build_msgs.sh: ERROR: $*" >&2; exit 1; }
log() { echo "build_msgs.sh: $*"; }
trap 'echo "build_msgs.sh: ERROR: command failed at line $LINENO" >&2' ERR

mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
[ -x "$VENV/bin/python" ] || die "no Python at $VENV/bin/python; run scripts/setup.sh first (or pass --venv)"
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# Tools: cmake and a generator (ninja preferred, make as fallback), a C/C++ compiler.
CMAKE=$(command -v cmake || true)
[ -n "$CMAKE" ] || [ ! -x "$VENV/bin/cmake" ] || CMAKE="$VENV/bin/cmake"
if [ -z "$CMAKE" ]; then
  log "cmake not found; installing the PyPI cmake wheel into the venv"
  "$PY" -m pip install -q cmake 2>&1 | grep -v ' is ignored: ' >&2 || true
  [ -x "$VENV/bin/cmake" ] || die "cmake is missing (apt-get install -y cmake ninja-build)"
  CMAKE="$VENV/bin/cmake"
fi
if command -v ninja >/dev/null 2>&1 || [ -x "$VENV/bin/ninja" ]; then
  GENERATOR=Ninja
  command -v ninja >/dev/null 2>&1 || export PATH="$VENV/bin:$PATH"
elif command -v make >/dev/null 2>&1; then
  GENERATOR="Unix Makefiles"
else
  die "neither ninja nor make found (apt-get install -y ninja-build)"
fi
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
  || die "no C++ compiler: rosidl compiles type support libraries (apt-get install -y g++)"

"$PY" -c 'import rosidl_generator_py, catkin_pkg, ament_package' 2>/dev/null \
  || die "the ROS 2 generator wheels are not in $VENV; run scripts/setup.sh --ros-wheels"

# The wheels' exported CMake files name the Python of the machine that built them
# (/opt/python/cpXY-cpXY/...); point them at this venv's interpreter and numpy. Idempotent.
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
stale=$(grep -rlE --include='*.cmake' '/opt/python/cp3[0-9]+-cp3[0-9]+' "$VENV/share" 2>/dev/null || true)
if [ -n "$stale" ]; then
  log "pointing $(echo "$stale" | wc -l) CMake files of the wheels at $PY"
  echo "$stale" | xargs sed -i -E \
    "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$NPINC#g; s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$PYINC#g"
fi

export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"

# cmake_install SRC BUILD LOG [CMAKE ARGS...]: configure SRC in BUILD and install into PREFIX,
# output in LOG. A cache from another checkout, prefix or generator cannot be reused.
cmake_install() {
  local src=$1 build=$2 blog=$3
  shift 3
  if [ -f "$build/CMakeCache.txt" ]; then
    local cached_src cached_prefix cached_gen
    cached_src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
    cached_prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
    cached_gen=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$build/CMakeCache.txt")
    if [ "$CLEAN" = 1 ] || [ "$cached_src" != "$src" ] || [ "$cached_prefix" != "$PREFIX" ] \
       || [ "$cached_gen" != "$GENERATOR" ]; then
      rm -rf "$build"
    fi
  fi
  mkdir -p "$build"
  if ! { "$CMAKE" -S "$src" -B "$build" -G "$GENERATOR" \
           -DCMAKE_INSTALL_PREFIX="$PREFIX" \
           -DCMAKE_BUILD_TYPE=Release \
           -DBUILD_TESTING=OFF \
           -DPython3_EXECUTABLE="$PY" \
           "$@" \
         && "$CMAKE" --build "$build" --target install -- -j"$(nproc)"; } >"$blog" 2>&1; then
    tail -n 40 "$blog" >&2
    die "CMake build of $src failed (full log: $blog)"
  fi
}

start=$(date +%s)
log "building msg/*.msg into $PREFIX ($GENERATOR)"
cmake_install "$ROOT" "$ROOT/build/msgs" "$ROOT/build/msgs.log" -DSCENEDINO_INTERFACES_ONLY=ON

# ament_cmake_python writes an egg-info for the generated package; pip would take it for a
# second scenedino-ros distribution beside the pip-installed one.
rm -rf "$PREFIX/lib/python$PYVER/site-packages/"scenedino_ros-*.egg-info

PTH="$SITE/_scenedino_ros_msgs.pth"
{
  echo "$PREFIX/lib/python$PYVER/site-packages"
  printf '%s\n' "import os; (lambda p, v: p in v.split(os.pathsep) or os.environ.__setitem__('LD_LIBRARY_PATH', p + os.pathsep + v if v else p))('$PREFIX/lib', os.environ.get('LD_LIBRARY_PATH', ''))"
} >"$PTH"

# Check from a neutral folder: the generated message round-trips, and the package still
# reaches this repository's sources (an editable install must put the repository on sys.path).
check='
import numpy as np
import scenedino_ros
from scenedino_ros.msg import SemanticVoxelGrid
from rclpy.serialization import deserialize_message, serialize_message
m = SemanticVoxelGrid(size_x=2, size_y=1, size_z=1, labels=np.array([1, 255], np.uint8))
assert list(deserialize_message(serialize_message(m), SemanticVoxelGrid).labels) == [1, 255]
print(" ".join(scenedino_ros.__path__))
'
if ! paths=$(cd / && "$PY" -c "$check" 2>&1); then
  echo "$paths" >&2
  die "scenedino_ros.msg does not import in $VENV (see above)"
fi
if "$PY" -m pip show -q scenedino-ros >/dev/null 2>&1 && [[ " $paths " != *" $ROOT/scenedino_ros "* ]] \
   && [[ " $paths " != *" $SITE/scenedino_ros "* ]]; then
  die "scenedino_ros resolves to [$paths] only; reinstall the project with 'pip install -e .' from $ROOT"
fi
log "scenedino_ros.msg importable (package path: $paths)"

# tf2_msgs (TFMessage only) where neither a ROS 2 distribution nor another install provides it.
TF2_SRC="$ROOT/third_party/tf2_msgs"
TF2_STAMP="$PREFIX/share/tf2_msgs/scenedino_build.stamp"
remove_own_tf2() {
  local site="$PREFIX/lib/python$PYVER/site-packages"
  rm -rf "$site/tf2_msgs" "$site/"tf2_msgs-*.egg-info "$PREFIX/include/tf2_msgs" "$PREFIX/share/tf2_msgs" \
    "$PREFIX/share/ament_index/resource_index/"*/tf2_msgs "$PREFIX/lib/"libtf2_msgs__*
}
tf2_file=$(cd / && "$PY" -c 'import tf2_msgs.msg; print(tf2_msgs.__file__)' 2>/dev/null || true)
if [ -n "${ROS_DISTRO:-}" ]; then
  remove_own_tf2
  log "ROS 2 '$ROS_DISTRO' is sourced: tf2_msgs comes from the distribution; not building ours"
elif [ -n "$tf2_file" ] && [[ "$tf2_file" != "$PREFIX/"* ]]; then
  remove_own_tf2
  log "tf2_msgs is provided by $tf2_file; not building ours"
else
  # inputs: the package, this interpreter, the prefix and the versions of the wheels it is generated with
  versions=$("$PY" -c 'from importlib.metadata import version as v
print(*(v(p) for p in ("ros-kilted-geometry-msgs", "ros-kilted-rosidl-default-generators")))' 2>/dev/null || true)
  key=$(cat "$TF2_SRC/package.xml" "$TF2_SRC/CMakeLists.txt" "$TF2_SRC"/msg/*.msg \
          <(echo "$PYVER $PREFIX $versions") | sha256sum | cut -c1-16)
  if [ -n "$tf2_file" ] && [ -f "$TF2_STAMP" ] && [ "$(cat "$TF2_STAMP")" = "$key" ]; then
    log "tf2_msgs (TFMessage only) up to date in $PREFIX"
  else
    log "building tf2_msgs (TFMessage only; the wheels have none) into $PREFIX"
    remove_own_tf2
    cmake_install "$TF2_SRC" "$ROOT/build/tf2_msgs" "$ROOT/build/tf2_msgs.log"
    rm -rf "$PREFIX/lib/python$PYVER/site-packages/"tf2_msgs-*.egg-info
    # Type hash and CDR bytes must equal rosbags' Kilted TFMessage (bags written by rosbags replay unchanged).
    check='
import json, sys
from geometry_msgs.msg import TransformStamped
from rclpy.serialization import deserialize_message, serialize_message
from tf2_msgs.msg import TFMessage
t = TransformStamped(child_frame_id="camera")
t.header.frame_id, t.header.stamp.sec, t.transform.translation.x, t.transform.rotation.w = "map", 7, 1.5, 1.0
data = serialize_message(TFMessage(transforms=[t, t]))
assert deserialize_message(data, TFMessage).transforms[1].transform.translation.x == 1.5
try:
    from rosbags.typesys import Stores, get_typestore
except ImportError:
    raise SystemExit(0)
ts = get_typestore(Stores.ROS2_KILTED)
assert bytes(ts.serialize_cdr(ts.deserialize_cdr(data, "tf2_msgs/msg/TFMessage"), "tf2_msgs/msg/TFMessage")) == data
hashes = {h["type_name"]: h["hash_string"] for h in json.load(open(sys.argv[1]))["type_hashes"]}
assert hashes["tf2_msgs/msg/TFMessage"] == ts.hash_rihs01("tf2_msgs/msg/TFMessage"), hashes
'
    if ! out=$(cd / && "$PY" -c "$check" "$PREFIX/share/tf2_msgs/msg/TFMessage.json" 2>&1); then
      echo "$out" >&2
      die "the generated tf2_msgs does not import or does not match rosbags' TFMessage (see above)"
    fi
    echo "$key" >"$TF2_STAMP"
  fi
fi
log "done in $(( $(date +%s) - start )) s"
