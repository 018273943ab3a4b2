"""An output bag that survives its writer being stopped or killed: the work folder ``OUT.partial``.

``scenedino-process-bag`` and ``scenedino-kitti360-to-bag`` write their output bag OUT inside a work folder::

    OUT.partial/journal.jsonl   the run's settings and connections, then one line per commit
    OUT.partial/OUT/            the bag being written (OUT.partial/resumed/OUT/ after an odd number of resumes)

After every frame the tool commits (``PartialBag.commit``): the MCAP writer closes its chunk (sqlite3 commits its
transaction), the file is flushed, and a journal line records the file position reached, the number of messages in
the bag and what the frame changed in the tool's state. When the run completes, the bag folder is renamed to OUT and
the work folder removed: OUT only ever appears complete.

* Stopped (SIGINT, SIGTERM): the tool finishes the current frame, commits and closes the bag: the bag folder in
  ``OUT.partial`` is a complete bag (``metadata.yaml``) of the frames done.
* Killed (SIGKILL, the out-of-memory killer, a crash of the interpreter): the bag folder holds every committed frame,
  but its MCAP file has no summary and there is no ``metadata.yaml``. ``SalvagingReader`` (so
  ``scenedino-replay`` and ``scenedino-process-bag``) reads it as it is; ``recover`` (``scenedino-bag-recover``)
  closes it into a complete bag.
* Resumed: the committed messages are copied into a new bag in the other bag folder (messages written after the
  last commit are left behind, so none is written twice), the journal is switched to the new bag in one atomic
  write, the old bag is deleted, and the tool continues with the first frame not done. The copy costs about as
  much as reading the bag once.

A journal whose last commit is not entirely in the bag file (the file was cut after the journal line reached the
disk: a power cut, not a killed process) is an error; the run then has to start over.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rosbags.rosbag2 import Writer
from rosbags.rosbag2.metadata import dump_qos_v9, parse_qos

from scenedino_core.files import atomic_write_text

from .io import bag_writer, commit
from .salvage import McapScan

_logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
JOURNAL = "journal.jsonl"
JOURNAL_VERSION = 1
#: The two places of the bag folder inside the work folder; a resume writes to the one not in use.
BAG_HOMES = ("", "resumed")


class PartialBagError(RuntimeError):
    """The work folder cannot be used: it belongs to another run or tool, or its journal and bag disagree."""


def partial_path(out: str | Path) -> Path:
    """``OUT`` -> ``OUT.partial``."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def _describe_connections(writer: Writer) -> list[dict[str, Any]]:
    return [{"topic": c.topic, "type": c.msgtype, "msgdef": c.msgdef.data, "digest": c.digest,
             "format": c.ext.serialization_format, "qos": dump_qos_v9(list(c.ext.offered_qos_profiles))}
            for c in writer.connections]


@dataclass(frozen=True)
class Journal:
    """A work folder's journal: its header and its commits (``{"mark", "messages", "delta"}``), oldest first."""

    header: dict[str, Any]
    commits: tuple[dict[str, Any], ...]

    @property
    def mark(self) -> int:
        """File position of the last commit (0: none)."""
        return int(self.commits[-1]["mark"]) if self.commits else 0

    @property
    def messages(self) -> int:
        """Messages in the bag at the last commit."""
        return int(self.commits[-1]["messages"]) if self.commits else 0

    @property
    def deltas(self) -> list[dict[str, Any]]:
        return [c["delta"] for c in self.commits]


def read_journal(work: Path) -> Journal:
    """The journal of work folder ``work``; a last line cut short by a kill is ignored.

    Raises:
        PartialBagError: no journal, or one that is not this format.
    """
    path = work / JOURNAL
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PartialBagError(f"{path}: no journal of an interrupted run ({exc.strerror or exc})") from exc
    try:
        header = json.loads(lines[0])
        if header.get("journal") != JOURNAL_VERSION:
            raise ValueError(f"journal version {header.get('journal')!r}, expected {JOURNAL_VERSION}")
    except (IndexError, ValueError, AttributeError) as exc:
        raise PartialBagError(f"{path}: not a journal of scenedino-ros bag tools ({exc})") from exc
    commits = []
    for i, line in enumerate(lines[1:], start=2):
        try:
            commits.append(json.loads(line))
        except ValueError as exc:
            if i < len(lines):
                raise PartialBagError(f"{path}:{i}: unreadable journal line ({exc})") from exc
            _logger.info("%s: ignoring the last journal line, cut short when the run was stopped", path)
    return Journal(header, tuple(commits))


def _committed_messages(bag: Path, storage: str, journal: Journal) -> Iterator[tuple[int, int, bytes]]:
    """(connection id, time, data) of the messages of ``bag`` up to the journal's last commit."""
    if storage == "mcap":
        scan = McapScan(bag / f"{bag.name}.mcap", limit=journal.mark)
        yield from scan.messages()
        if not scan.complete or scan.damage:
            raise PartialBagError(f"{bag}: the last commit of the journal is not entirely in the bag file "
                                  f"({'; '.join(d.problem for d in scan.damage)}); start over without --resume")
        return
    con = sqlite3.connect(bag / f"{bag.name}.db3")  # read-write: the journal of a killed writer is rolled back
    try:
        yield from con.execute("SELECT topic_id, timestamp, data FROM messages WHERE id <= ? ORDER BY id",
                               (journal.mark,))
    finally:
        con.close()


class PartialBag:
    """The work folder of one run that writes the bag ``out`` (see the module docstring).

    Use: ``start`` (fresh or resuming), ``open_writer``, add the connections, ``begin`` (returns the restored
    deltas), ``commit`` after each frame, then ``finish`` (complete), ``close_interrupted`` (stopped) or ``abandon``
    (an error).
    """

    def __init__(self, out: str | Path, tool: str, storage: str):
        self.out = Path(out)
        self.work = partial_path(self.out)
        self.tool, self.storage = tool, storage
        self.settings: dict[str, Any] = {}
        self.previous: Journal | None = None
        """The journal of the run being resumed."""
        self.home = BAG_HOMES[0]
        self._journal: IO[str] | None = None
        self.commits = 0
        """Commits made by this run."""

    @property
    def bag(self) -> Path:
        """The bag folder being written."""
        return self.work / self.home / self.out.name

    @property
    def resuming(self) -> bool:
        return self.previous is not None

    @classmethod
    def start(cls, out: str | Path, tool: str, storage: str, settings: dict[str, Any], *, resume: bool = False,
              overwrite: bool = False) -> PartialBag:
        """The work folder for a run with ``settings`` (compared with the interrupted run's on ``resume``).

        Raises:
            FileExistsError: ``out`` exists (and not ``overwrite``).
            PartialBagError: an interrupted run is in the way (without ``resume``), or it was another tool's, storage
                or settings.
        """
        self = cls(out, tool, storage)
        self.settings = json.loads(json.dumps(settings))  # what the journal will hold (tuples become lists)
        if (self.out.exists() or self.out.is_symlink()) and not overwrite:
            raise FileExistsError(f"output exists: {self.out}" + (" (the run is complete)" if resume else ""))
        if self.work.exists() and self._nothing_committed():
            _logger.info("removing %s: the run that left it committed no frame", self.work)
            shutil.rmtree(self.work)
        if self.work.exists():
            if overwrite and not resume:
                shutil.rmtree(self.work)
            elif not resume:
                raise PartialBagError(f"{self.work} holds an interrupted run: continue it with --resume, close it as "
                                      f"a bag with scenedino-bag-recover {self.out}, or remove it")
            else:
                self._load_previous()
        elif resume:
            _logger.info("nothing to resume (no %s): starting from the beginning", self.work)
        self.work.mkdir(parents=True, exist_ok=True)
        return self

    def _nothing_committed(self) -> bool:
        try:
            return not read_journal(self.work).commits
        except PartialBagError:
            return not (self.work / JOURNAL).exists()  # stopped before its journal was written

    def _load_previous(self) -> None:
        journal = read_journal(self.work)
        h = journal.header
        for key, mine in (("tool", self.tool), ("storage", self.storage)):
            if h.get(key) != mine:
                raise PartialBagError(f"{self.work} was written by a run with {key} {h.get(key)!r}, not {mine!r}; "
                                      "remove it to start over")
        differ = sorted(k for k in set(h.get("settings", {})) | set(self.settings)
                        if h.get("settings", {}).get(k) != self.settings.get(k))
        if differ:
            details = ", ".join(f"{k}: {h['settings'].get(k)!r} then, {self.settings.get(k)!r} now" for k in differ)
            raise PartialBagError(f"{self.work} was written with other settings ({details}); resume with the same "
                                  "ones, or remove it to start over")
        old_bag = self.work / h.get("home", "") / self.out.name
        if not old_bag.is_dir():
            raise PartialBagError(f"{self.work}: the bag of the interrupted run ({old_bag}) is missing")
        self.previous = journal
        self.home = BAG_HOMES[1] if h.get("home", "") == BAG_HOMES[0] else BAG_HOMES[0]

    def open_writer(self) -> Writer:
        """An open rosbags writer for ``bag`` (a stale copy from an earlier resume that was stopped is removed)."""
        if self.bag.exists():
            shutil.rmtree(self.bag)
        self.bag.parent.mkdir(parents=True, exist_ok=True)
        writer = bag_writer(self.bag, self.storage)
        writer.open()
        return writer

    def begin(self, writer: Writer, info: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Start the journal for ``writer``'s connections; when resuming, first copy the committed messages of the
        interrupted run into ``writer`` and switch the journal to it. ``info`` is kept in the journal (not compared
        on resume). Returns the deltas committed before (empty for a fresh run).

        Raises:
            PartialBagError: the connections differ from the interrupted run's, or its bag lacks committed data.
        """
        conns = _describe_connections(writer)
        header = {"journal": JOURNAL_VERSION, "tool": self.tool, "storage": self.storage, "home": self.home,
                  "settings": self.settings, "info": info or {}, "connections": conns}
        lines = [json.dumps(header)]
        deltas: list[dict[str, Any]] = []
        if self.previous is not None:
            old = self.previous
            before = [(c["topic"], c["type"]) for c in old.header.get("connections", [])]
            if before != [(c["topic"], c["type"]) for c in conns]:
                raise PartialBagError(f"{self.work}: the interrupted run wrote other topics ({before}); remove it to "
                                      "start over")
            old_bag = self.work / old.header.get("home", "") / self.out.name
            copied = 0
            for cid, t, data in _committed_messages(old_bag, self.storage, old):
                writer.write(writer.connections[cid - 1], t, data)
                copied += 1
            if copied != old.messages:
                raise PartialBagError(f"{old_bag} holds {copied} messages up to the last commit, the journal says "
                                      f"{old.messages}; start over without --resume")
            mark = commit(writer)
            deltas = old.deltas
            lines += [json.dumps({"mark": mark, "messages": copied, "delta": d}) for d in deltas]
            atomic_write_text(self.work / JOURNAL, "\n".join(lines) + "\n")  # the switch to the new bag
            shutil.rmtree(old_bag.parent if old.header.get("home") else old_bag)
            _logger.info("resuming %s: %d messages of %d commits copied from the interrupted run", self.out, copied,
                         len(deltas))
        else:
            atomic_write_text(self.work / JOURNAL, lines[0] + "\n")
        self._journal = (self.work / JOURNAL).open("a")
        return deltas

    def commit(self, writer: Writer, delta: dict[str, Any]) -> None:
        """Make everything written so far durable and record ``delta`` (JSON-ready) with it."""
        mark = commit(writer)
        assert self._journal is not None, "begin() first"
        self._journal.write(json.dumps({"mark": mark, "messages": sum(writer.counts.values()), "delta": delta},
                                       separators=(",", ":")) + "\n")
        self._journal.flush()
        self.commits += 1

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _write_files(self, files: dict[str, str] | None) -> None:
        for name, text in (files or {}).items():
            atomic_write_text(self.bag / name, text)

    def finish(self, writer: Writer, files: dict[str, str] | None = None, overwrite: bool = False) -> Path:
        """Close the bag, add ``files`` (name -> text) to it, rename it to ``out`` and remove the work folder.

        Raises:
            FileExistsError: ``out`` appeared meanwhile (and not ``overwrite``); the work folder is kept.
        """
        writer.close()
        self._write_files(files)
        self._close_journal()
        if self.out.exists() or self.out.is_symlink():
            if not overwrite:
                raise FileExistsError(f"output {self.out} appeared while writing; the result is not moved over it")
            os.replace(self.out, self.work / ".replaced")
        os.replace(self.bag, self.out)
        shutil.rmtree(self.work, ignore_errors=True)
        return self.out

    def close_interrupted(self, writer: Writer, files: dict[str, str] | None = None) -> Path:
        """Close the bag (the caller committed the last frame) and add ``files``; the work folder stays for a
        resume. Returns the bag folder."""
        writer.close()
        self._write_files(files)
        self._close_journal()
        return self.bag

    def abandon(self, writer: Writer | None, keep: bool) -> None:
        """After an error: stop writing; remove the work folder unless ``keep`` (then it is left as after a kill)."""
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # the writer may be broken already
                pass
        self._close_journal()
        if not keep:
            shutil.rmtree(self.work, ignore_errors=True)


def recover(path: str | Path) -> tuple[Path, Journal]:
    """Close the bag of an interrupted run (``OUT`` or ``OUT.partial``) as a complete bag, in its work folder.

    A bag that a stopped run closed already is left as it is. Returns the bag folder and the (new) journal.

    Raises:
        PartialBagError: no interrupted run there, or its journal and bag disagree.
    """
    path = Path(path)
    work = path if path.name.endswith(PARTIAL_SUFFIX) else partial_path(path)
    journal = read_journal(work)
    h = journal.header
    out = work.with_name(work.name[:-len(PARTIAL_SUFFIX)])
    bag = work / h.get("home", "") / out.name
    if (bag / "metadata.yaml").is_file():
        return bag, journal
    pb = PartialBag(out, h["tool"], h["storage"])
    pb.settings = h.get("settings", {})
    pb.previous = journal
    pb.home = BAG_HOMES[1] if h.get("home", "") == BAG_HOMES[0] else BAG_HOMES[0]
    writer = pb.open_writer()
    try:
        for c in h["connections"]:
            writer.add_connection(c["topic"], c["type"], msgdef=c["msgdef"], rihs01=c["digest"],
                                  serialization_format=c["format"], offered_qos_profiles=parse_qos(c["qos"]))
        pb.begin(writer, h.get("info"))
    except BaseException:
        pb.abandon(writer, keep=True)
        shutil.rmtree(pb.bag, ignore_errors=True)
        raise
    bag = pb.close_interrupted(writer)
    return bag, read_journal(work)
