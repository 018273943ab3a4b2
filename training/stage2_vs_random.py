"""Hungarian-matched cluster mIoU of a stage-2 checkpoint against the same semantic head with random weights.

    python training/stage2_vs_random.py runs/synthetic_stage2/best.pt training/synthetic_stage2.yaml \
        [--items 16] [--seeds 0 1 2] [--stride 4]

The items are the recipe's validation items (for the synthetic recipes: an unseen street). Every head, trained or
random, gets its own best one-to-one cluster -> class matching on those items (``validate.hungarian_miou``), so
the comparison measures how well the clusters separate the classes, not how the assignment was chosen. Prints a
Markdown table.
"""
from __future__ import annotations

import argparse
import copy

import torch

from scenedino_core.checkpoint import load_model
from scenedino_core.semantics import SemanticHead
from scenedino_core.train.config import load_train_config
from scenedino_core.train.data import make_datasets
from scenedino_core.train.validate import semantic_metrics


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("recipe", help="the training recipe (for its validation items)")
    p.add_argument("--items", type=int, default=16, help="validation items to score")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the random heads")
    p.add_argument("--stride", type=int, default=4, help="score every n-th pixel")
    args = p.parse_args(argv)

    trained = load_model(args.checkpoint)
    h, w = trained.config.image_size  # stage-2 recipes take the model from their init checkpoint
    cfg = load_train_config(args.recipe, [f"data.num_val_items={args.items}", f"model.image_size=[{h},{w}]"])
    val = make_datasets(cfg, "val")
    items = [val[i] for i in range(len(val))]
    rows = [("trained", semantic_metrics(trained, items, args.stride, write_assignment=False))]
    for seed in args.seeds:
        model = copy.deepcopy(trained)
        torch.manual_seed(seed)
        model.head = SemanticHead(model.backbone.embed_dim, model.config.semantic)
        rows.append((f"random, seed {seed}", semantic_metrics(model.eval(), items, args.stride,
                                                             write_assignment=False)))
    print(f"| head ({len(items)} items of {args.recipe}) | stego k-means mIoU | direct k-means mIoU |")
    print("|---|---|---|")
    for name, m in rows:
        print(f"| {name} | {100 * m['val/stego_kmeans_miou']:.1f} % | {100 * m['val/direct_kmeans_miou']:.1f} % |")


if __name__ == "__main__":
    main()
