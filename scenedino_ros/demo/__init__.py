"""The first run (``scenedino-first-run``): a synthetic KITTI-360 drive through the node's processing, pictures of the
results and a live Foxglove view."""
