#!/usr/bin/env bash
# The main job: set everything up (idempotent) and run SceneDINO on a sample image the project makes itself.
# Uses a downloaded release (scenedino-download ssc-kitti-360-dino) when one is present, otherwise randomly
# initialised weights, which the output announces loudly. Outputs go to outputs/demo/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
CKPT=$(python -c "from scenedino_core.download import find_downloaded_checkpoint as f; print(f() or '')")
if [ -n "$CKPT" ]; then
  WEIGHTS=(--checkpoint "$CKPT")
  echo "demo.sh: using the downloaded checkpoint $CKPT"
else
  WEIGHTS=(--random-weights)
  echo "demo.sh: no downloaded checkpoint found (scenedino-download ssc-kitti-360-dino fetches one):" \
       "running with RANDOM weights"
fi
scenedino-infer --sample-image "${WEIGHTS[@]}" --render --grid --out outputs/demo/result.npz "$@"
echo "demo.sh: pictures: outputs/demo/result_overview.png (input | depth | semantics | features)," \
     "outputs/demo/result_bev.png (bird's-eye SSC grid)"
