#!/usr/bin/env bash
# The main job: set everything up (idempotent), then run SceneDINO end to end on a short synthetic KITTI-360-format
# drive the project makes itself: drive -> rosbag2 (MCAP) -> the node's processing -> MCAP with the outputs,
# pictures (input, depth, semantics, bird's-eye occupancy, 3D voxels) and a summary, all under outputs/first_run/.
# Weights: the committed demo checkpoint (checkpoints/scenedino_synthetic_demo.pt). Arguments go to
# scenedino-first-run, e.g.  bash scripts/demo.sh --viz   (live view: Foxglove WebSocket on 127.0.0.1:8765)
#                            bash scripts/demo.sh --frames 5 --device cuda
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
exec scenedino-first-run "$@"
