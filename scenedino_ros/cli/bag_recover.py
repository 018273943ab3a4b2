"""``scenedino-bag-recover``: close the output of a killed ``scenedino-process-bag`` or ``scenedino-kitti360-to-bag``
run as a complete bag, without running any more of it.

    scenedino-bag-recover OUT        (or OUT.partial)

A killed run leaves ``OUT.partial/``: its bag holds every frame committed before the kill, but the MCAP file has no
summary and there is no ``metadata.yaml``, which ``ros2 bag`` and most tools need. This copies the committed messages
into a closed bag in the same work folder (what a run stopped with Ctrl-C leaves) and prints its path; for
``scenedino-process-bag`` it also writes ``summary.json`` and ``summary.md`` from the journal. ``--resume`` of the
tool still continues afterwards. How the work folder works: ``scenedino_ros.bag.partial``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..bag.partial import PartialBagError, recover

PROG = "scenedino-bag-recover"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("output", type=Path, help="OUT of the interrupted run (or its work folder OUT.partial)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        bag, journal = recover(args.output)
        if journal.header.get("tool") == "scenedino-process-bag" and not (bag / "summary.json").is_file():
            from scenedino_core.files import atomic_write_text

            from ..bag.process import summary_files, summary_from_journal  # rclpy: only for process-bag journals

            for name, text in summary_files(summary_from_journal(journal, bag)).items():
                atomic_write_text(bag / name, text)
    except (PartialBagError, OSError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{bag}: a complete bag of the {journal.messages} messages committed by the interrupted "
          f"{journal.header.get('tool')} run; use it as it is, or continue the run with --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
