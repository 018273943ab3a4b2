#!/usr/bin/env bash
# Create or update .venv in the repository root with everything the project and its tests need.
#
#   scripts/setup.sh [--ros-wheels | --no-ros-wheels]
#
#   --ros-wheels     also install ROS 2 Kilted from PyPI wheels (rclpy with Fast DDS, the message
#                    packages, the rosidl/ament CMake wheels and colcon) and build our messages
#                    (scripts/build_msgs.sh). Default when no ROS distribution is sourced.
#   --no-ros-wheels  do not; default when $ROS_DISTRO is set. Then the venv is made from the
#                    distro's python3 with --system-site-packages, so the sourced rclpy is used
#                    (never pip-install ros-kilted-* wheels on top of a sourced ROS).
#
# Environment: SCENEDINO_PYTHON overrides the interpreter (default python3.11, or python3 with a
# sourced ROS). Idempotent: each step records a hash of its inputs in .venv/.setup/ and is
# skipped when nothing changed. Full pip output goes to .venv/.setup/pip.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
STAMPS="$VENV/.setup"
PIPLOG="$STAMPS/pip.log"

if [ -n "${ROS_DISTRO:-}" ]; then ROS_WHEELS=0; else ROS_WHEELS=1; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --ros-wheels) ROS_WHEELS=1 ;;
    --no-ros-wheels) ROS_WHEELS=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "setup.sh: ERROR: $*" >&2; exit 1; }

# One setup at a time per checkout (parallel test runs all call this script).
mkdir -p "$ROOT/build"
exec 9>"$ROOT/build/setup.lock"
flock 9
trap 'echo "setup.sh: ERROR: command failed at line $LINENO" >&2' ERR
T0=$(date +%s)
step_start=$T0
step() { step_start=$(date +%s); printf 'setup.sh: %-48s' "$1"; }
done_() { echo "${1:-done} ($(( $(date +%s) - step_start )) s)"; }

if [ "$ROS_WHEELS" = 1 ] && [ -n "${ROS_DISTRO:-}" ]; then
  die "ROS 2 '$ROS_DISTRO' is sourced: the ros-kilted-* wheels must not be installed on top of it. Use --no-ros-wheels (and colcon build), or run from a shell without /opt/ros sourced."
fi

# Python dependencies (torch first: a bare timm would pull another torch build from the index).
BASE_REQS=(
  torch==2.14.1 torchvision==0.29.1 timm
  numpy opencv-python-headless pyyaml scipy tqdm huggingface_hub
  pytest matplotlib rosbags mcap tensorboard foxglove-sdk
)
# ROS 2 Kilted from PyPI, plus what rosidl_generate_interfaces needs to build msg/ with CMake
# (see shared/reference/ros2_notes.md, "Custom messages with CMake from the wheels").
ROS_REQS=(
  'ros-kilted-rclpy[fastrtps]'
  ros-kilted-std-msgs ros-kilted-sensor-msgs ros-kilted-nav-msgs ros-kilted-visualization-msgs
  ros-kilted-geometry-msgs ros-kilted-diagnostic-msgs ros-kilted-std-srvs
  pointcloud2
  ros-kilted-rosidl-default-generators ros-kilted-rosidl-core-generators
  ros-kilted-ament-cmake ros-kilted-ament-package ros-kilted-ament-cmake-python
  ros-kilted-ament-cmake-ros ros-kilted-ament-cmake-ros-core
  ros-kilted-ament-cmake-include-directories ros-kilted-ament-cmake-libraries
  ros-kilted-ament-cmake-export-definitions ros-kilted-ament-cmake-export-include-directories
  ros-kilted-ament-cmake-export-interfaces ros-kilted-ament-cmake-export-libraries
  ros-kilted-ament-cmake-export-link-flags ros-kilted-ament-cmake-export-targets
  ros-kilted-ament-cmake-target-dependencies ros-kilted-ament-cmake-version
  ros-kilted-ament-cmake-gen-version-h
  catkin-pkg colcon-common-extensions colcon-ros
)

hash_of() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
is_done() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark() { echo "$2" >"$STAMPS/$1"; }

# pip with its output in the log; pip's "Location ... is ignored" warnings about the local
# indexes are dropped. On failure, the last lines are shown.
pip_install() {
  local out
  out=$(mktemp)
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input "$@" >"$out" 2>&1; then
    echo "FAILED"
    grep -v ' is ignored: ' "$out" | tail -n 30 >&2
    grep -v ' is ignored: ' "$out" >>"$PIPLOG" || true
    rm -f "$out"
    die "pip install $* failed (log: $PIPLOG)"
  fi
  grep -v ' is ignored: ' "$out" >>"$PIPLOG" || true
  local n
  n=$(sed -n 's/^Successfully installed //p' "$out" | wc -w)
  rm -f "$out"
  INSTALLED="$n packages installed"
}

# 1. the venv -----------------------------------------------------------------------------
VENV_OPTS=()
if [ -n "${SCENEDINO_PYTHON:-}" ]; then
  PYTHON="$SCENEDINO_PYTHON"
elif [ -n "${ROS_DISTRO:-}" ]; then
  PYTHON=python3
else
  PYTHON=python3.11
fi
[ -z "${ROS_DISTRO:-}" ] || [ "$ROS_WHEELS" = 1 ] || VENV_OPTS=(--system-site-packages)

step "venv ($VENV)"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  want=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "?")
  have=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$want" = "?" ] || [ "$want" = "$have" ] \
    || { echo "FAILED"; die "$VENV uses Python $have, expected $want ($PYTHON); remove it (rm -rf .venv) and rerun"; }
  done_ "exists"
else
  if ! command -v "$PYTHON" >/dev/null 2>&1 || ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$PYTHON" = python3.11 ]; then
      # pyenv keeps interpreters outside PATH when its shims are not set up in this shell.
      for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3.11 /usr/local/bin/python3.11 /usr/bin/python3.11; do
        if [ -x "$cand" ] && "$cand" -c 'import venv, ensurepip' >/dev/null 2>&1; then PYTHON="$cand"; break; fi
      done
    fi
    command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 \
      || { echo "FAILED"; die "$PYTHON with venv/ensurepip not found. Install Python 3.11 (e.g. pyenv install 3.11, or apt-get install python3.11-venv) or set SCENEDINO_PYTHON=/path/to/python3.x (3.11-3.13 for the ROS wheels)."; }
  fi
  rm -rf "$VENV"
  "$PYTHON" -m venv "${VENV_OPTS[@]}" "$VENV"
  done_ "created with $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
fi
mkdir -p "$STAMPS"
PYTAG=$("$VENV/bin/python" -c 'import sys; print(sys.version)')

# 2. Python dependencies -----------------------------------------------------------------
step "Python dependencies (torch, timm, ...)"
key=$(hash_of "$PYTAG" "${BASE_REQS[@]}")
if is_done base "$key"; then
  done_ "up to date"
else
  pip_install "${BASE_REQS[@]}"
  mark base "$key"
  done_ "$INSTALLED"
fi

# 3. ROS 2 wheels --------------------------------------------------------------------------
if [ "$ROS_WHEELS" = 1 ]; then
  step "ROS 2 Kilted wheels, rosidl CMake, colcon"
  key=$(hash_of "$PYTAG" "${ROS_REQS[@]}")
  if is_done ros "$key"; then
    done_ "up to date"
  else
    pip_install "${ROS_REQS[@]}"
    mark ros "$key"
    done_ "$INSTALLED"
  fi
fi

# 4. the project (editable) ----------------------------------------------------------------
step "project (pip install -e .)"
key=$(hash_of "$PYTAG" "$(cat "$ROOT/setup.py")" "$ROOT")
if is_done project "$key" && "$VENV/bin/python" -m pip show -q scenedino-ros >/dev/null 2>&1; then
  done_ "up to date"
else
  pip_install -e "$ROOT"
  mark project "$key"
  done_ "$INSTALLED"
fi

# 5. our messages ---------------------------------------------------------------------------
if [ "$ROS_WHEELS" = 1 ]; then
  step "messages + tf2_msgs (scripts/build_msgs.sh)"
  inputs=$(cat "$ROOT"/msg/*.msg "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$ROOT/scripts/build_msgs.sh" \
    "$ROOT"/third_party/tf2_msgs/{package.xml,CMakeLists.txt} "$ROOT"/third_party/tf2_msgs/msg/*.msg)
  key=$(hash_of "$PYTAG" "$(cat "$STAMPS/ros")" "$inputs" "$ROOT")
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if is_done msgs "$key" && [ -f "$site/_scenedino_ros_msgs.pth" ] && [ -d "$ROOT/build/ros_prefix/lib" ]; then
    done_ "up to date"
  else
    echo
    VIRTUAL_ENV="$VENV" "$ROOT/scripts/build_msgs.sh" --venv "$VENV"
    mark msgs "$key"
  fi
fi

echo "setup.sh: ready in $(( $(date +%s) - T0 )) s. Activate with: . .venv/bin/activate; test with: scripts/test.sh"
