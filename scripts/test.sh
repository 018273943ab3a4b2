#!/usr/bin/env bash
# Run the test suite in .venv with ROS 2 (DDS) traffic kept on loopback.
#
#   scripts/test.sh [pytest arguments]      e.g. scripts/test.sh -k custom_msg -x
#
# DDS discovery is limited to this host (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) on a random
# ROS_DOMAIN_ID, and pytest runs in a private network namespace that has only loopback
# (unshare -n; as non-root via a user namespace, unshare -rn), so no packet leaves the machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh >/dev/null || { echo "test.sh: ERROR: scripts/setup.sh failed; run it to see why" >&2; exit 2; }
# shellcheck disable=SC1091
. .venv/bin/activate

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=$((RANDOM % 100 + 1))
ROS_LOG_DIR=$(mktemp -d)
export ROS_LOG_DIR
trap 'rm -rf "$ROS_LOG_DIR"' EXIT

RUN='ip link set lo up && exec python -m pytest -q "$@"'
if unshare -n true 2>/dev/null; then
  NS=(unshare -n)
elif unshare -rn true 2>/dev/null; then
  NS=(unshare -rn)
else
  NS=()
  echo "test.sh: WARNING: cannot create a network namespace (unshare -n and unshare -rn were refused:" \
       "run as root or enable unprivileged user namespaces). Running in the host namespace;" \
       "DDS discovery stays LOCALHOST-only." >&2
  RUN='exec python -m pytest -q "$@"'
fi

echo "test.sh: pytest in ${NS[*]:-the host network namespace}, ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
start=$(date +%s)
rc=0
"${NS[@]}" sh -c "$RUN" sh "$@" || rc=$?
elapsed=$(( $(date +%s) - start ))
if [ "$rc" = 5 ]; then
  echo "test.sh: FAILED: pytest ran no tests (exit 5: none collected or all deselected) in ${elapsed} s" >&2
  exit 1
fi
if [ "$rc" = 0 ]; then
  echo "test.sh: tests passed in ${elapsed} s"
else
  echo "test.sh: FAILED: pytest exit code $rc after ${elapsed} s" >&2
fi
exit "$rc"
