"""Command-line value parsers shared by the ``scenedino-*`` commands.

Two frame notations, with distinct names because they mean different things:

* ``frame_range("A:B")``: a half-open range of frame ids (B excluded; either side may be empty), for commands that
  walk a sequence (``scenedino-preprocess-kitti360``, ``scenedino-kitti360-to-bag``);
* ``frame_list(["5", "10-12", "20,21"])``: an explicit set of frame ids with *inclusive* ranges, for commands that
  evaluate chosen frames (``scenedino-eval-sscbench``, ``scenedino-eval-2d``).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def frame_range(text: str) -> tuple[int, int]:
    """"100:200" -> (100, 200): frame ids 100..199; ":200" -> (0, 200); "100:" -> (100, sys.maxsize).

    Raises ``argparse.ArgumentTypeError`` (shown by argparse as a usage error) for anything else.
    """
    try:
        a, b = text.split(":")
        return int(a) if a else 0, int(b) if b else sys.maxsize
    except ValueError:
        raise argparse.ArgumentTypeError(f"frames must look like A:B, got {text!r}") from None


def frame_list(tokens: Sequence[str] | None) -> tuple[int, ...] | None:
    """["5", "10-12", "20,21"] -> (5, 10, 11, 12, 20, 21), sorted and without repeats; None or [] -> None.

    Raises ``ValueError`` naming the bad token, or the negative ids.
    """
    if not tokens:
        return None
    out: list[int] = []
    for token in tokens:
        for part in str(token).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    a, b = part.split("-", 1)
                    lo, hi = int(a), int(b)
                    if hi < lo:
                        raise ValueError
                    out.extend(range(lo, hi + 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise ValueError(f"bad frame spec {part!r}: use integers or inclusive ranges like 100-200") from None
    if any(f < 0 for f in out):
        raise ValueError(f"frame ids must be >= 0, got {sorted(f for f in out if f < 0)[:5]}")
    return tuple(sorted(set(out)))


__all__ = ["frame_list", "frame_range"]
