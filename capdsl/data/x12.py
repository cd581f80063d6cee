"""ASC X12 5010 834 (benefit enrollment) and 820 (premium payment) files → capdsl tables.

pyx12 does the X12: it splits the interchange into segments, walks them
through its 005010X220A1 (834) and 005010X218 (820) maps to find the loop
each segment belongs to, and validates elements, code values and the
envelopes (ST/SE, GS/GE and ISA/IEA counts and control numbers). This module
only maps the loops pyx12 hands over to rows, and reports every record it
cannot use as a `Rejection(position, reason)`: nothing is dropped without one.

A position reads `segment N (loop 2000, line L)`: N counts the segments of
the transaction set from ST = 1, as a 999 acknowledgement does (IK3); L
counts the file's segments from ISA = 1, which is the line number when each
segment ends a line (as in the sample files in examples/x12/).

pyx12's walk is nearly all of a reading's time, so a large file of several
transaction sets is walked by several processes, whole sets each (`jobs`,
see _parts): the rows, the rejections and their positions are the ones one
process finds. A file of one transaction set is walked by one process.

834 → members (one row per member, the capdsl members columns):

* member_id: REF*0F for a subscriber (INS01 = Y); for a dependent its own
  NM1*IL NM109 (NM108 = ZZ) or REF*23, as REF*0F names its subscriber;
* practice_id: the primary care provider, NM1*P3 NM109 in loop 2310 (an NPI,
  NM108 = XX, becomes a practice id through the practices table's `npi`
  column when one is given);
* birth_date, sex: DMG02, DMG03 in loop 2100A (U → empty);
* enrolled_from / enrolled_to: DTP*348 / DTP*349 of the coverage (loop 2300)
  holding that provider, else DTP*356 / DTP*357 of loop 2000; a death date
  (INS12) ends the enrolment too;
* INS03 maintenance: 021 addition, 030 audit and 001 change give the member
  as the loop describes it; 024 (cancellation or termination) needs an end
  date, which becomes enrolled_to; 025 reinstatement reopens it. A member in
  several loops is merged in file order (a later loop's values win).

820 → remittance (one row per amount): RMR04 of each loop 2300A/2300B, and
every ADX as its own row with line `adjustment:<ADX02>`; the practice is the
payee (N1*PE N104) unless the detail names one (REF*LU), the member the
individual (NM1 NM109 in loop 2100B, else ENT04), the month the coverage
period (DTM*582 of the detail, else of the header), the line a REF*ZZ of
the detail.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

from capdsl.data.read import (Problems, RawTable, ReadOptions, detect_format, fetch_all, plural, read_table, redact_id,
                              split_sheet, store_raw)
from capdsl.errors import CapError, InputError, Note, UsageError, error, warning
from capdsl.outputs import atomic_path, output_format

MEMBER_COLUMNS = ("member_id", "practice_id", "birth_date", "sex", "enrolled_from", "enrolled_to")
REMITTANCE_COLUMNS = ("practice_id", "member_id", "month", "line", "amount", "reference")

# (GS01 functional identifier, GS08 implementation guide) each reader accepts
_GUIDES = {"834": ("BE", "005010X220A1"), "820": ("RA", "005010X218")}
_OTHER_COMMAND = {"834": "capdsl panel from-834", "820": "capdsl panel from-820"}
MAINTENANCE = {"001": "change", "021": "addition", "024": "cancellation or termination",
               "025": "reinstatement", "030": "audit or compare"}
# loops that only group others: a position names the innermost loop that is not one of them
_WRAPPERS = {"ISA_LOOP", "GS_LOOP", "ST_LOOP", "HEADER", "DETAIL", "TABLE2AREA2", "TABLE2AREA3", "FOOTER"}
# values that identify a person: pyx12 quotes them in its messages, which hide them without show_ids
_PERSONAL_ELEMENTS = {"INS12", "REF02", "NM103", "NM104", "NM105", "NM109", "DMG02", "ENT04", "N301", "N302",
                      "N401", "N403", "PER04", "PER06", "PER08"}
_PERSONAL_SEGMENTS = {"REF", "NM1", "N3", "N4", "PER", "DMG", "ENT"}
HIDDEN = "(value hidden; --show-ids shows it)"
_ENVELOPE = {"ISA", "IEA", "GS", "GE"}
LIMIT = 20  # rejections listed in an error, then "… and N more"


class Rejection(NamedTuple):
    """A record (or segment) that was not read: where it is, and why."""

    position: str
    reason: str


@dataclass(frozen=True)
class Reading:
    """What a reader got from one file: the rows, and everything it could not use.

    `members` (834) or `remittance` (820) hold the rows; `rejected` every record
    left out and every segment pyx12 found invalid, with its position.
    """

    kind: str  # "834" | "820"
    path: str
    members: list[dict[str, str]] = field(default_factory=list)
    remittance: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    transactions: int = 0  # ST/SE transaction sets
    records: int = 0  # member loops (834) or individual/organisation loops (820) met
    maintenance: dict[str, int] = field(default_factory=dict)  # 834: INS03 code -> loops
    # 834: birth dates a loop 2100B (incorrect member demographics) corrects
    corrections: list[dict[str, str]] = field(default_factory=list)
    payees: list[str] = field(default_factory=list)  # 820: N1*PE identifiers, in file order
    output: str | None = None
    show_ids: bool = False  # whether the report (to_dict, lines) may show member ids and birth dates

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.members if self.kind == "834" else self.remittance

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rejected"] = [{"position": r.position, "reason": r.reason} for r in self.rejected]
        d["rows"] = len(self.rows)
        del d["members"], d["remittance"], d["show_ids"]
        if self.kind == "834":
            del d["payees"]
            if not self.show_ids:
                d["corrections"] = [{**c, "member_id": redact_id(c["member_id"]), "old": "(hidden)",
                                     "new": "(hidden)"} for c in self.corrections]
        else:
            del d["maintenance"], d["corrections"]
            d["total"] = str(sum((r["amount"] for r in self.remittance), Decimal(0)))
        return d

    def lines(self) -> list[str]:
        out = []
        if self.kind == "834":
            out.append(f"read {self.path}: X12 5010 834, {plural(self.transactions, 'transaction set')}, "
                       f"{plural(self.records, 'member loop')}")
            dest = f" -> {self.output}" if self.output else ""
            out.append(f"members written: {len(self.members):,}{dest}")
            if self.maintenance:
                out.append("maintenance (INS03): " + ", ".join(
                    f"{code} {MAINTENANCE.get(code, '?')} {n}" for code, n in sorted(self.maintenance.items())))
            if self.corrections:
                out.append(f"birth dates corrected (loop 2100B): {len(self.corrections)}")
        else:
            total = sum((r["amount"] for r in self.remittance), Decimal(0))
            payees = f" (payees {', '.join(self.payees)})" if self.payees else ""
            out.append(f"read {self.path}: X12 5010 820, {plural(self.transactions, 'transaction set')}"
                       f"{payees}, {plural(self.records, 'remittance loop')}")
            dest = f" -> {self.output}" if self.output else ""
            out.append(f"remittance rows written: {len(self.remittance):,} (total {total}){dest}")
        out.append(f"rejected: {len(self.rejected)}")
        out += [f"  {r.position}: {r.reason}" for r in self.rejected]
        out += [f"warning: {w}" for w in self.warnings]
        return out


# ───────────────────────────── pyx12 ─────────────────────────────

def _pyx12():
    """The pyx12 modules used here, or E0741 naming the extra to install."""
    try:
        import pyx12
        import pyx12.error_handler
        import pyx12.errors
        import pyx12.params
        import pyx12.path
        import pyx12.x12context
        import pyx12.x12file
    except ImportError:
        raise UsageError(error("E0741", "reading X12 files needs pyx12, which is not installed",
                               hint="pip install 'capdsl[x12]'")) from None
    major = str(getattr(pyx12, "__version__", "0")).split(".")[0]
    if not major.isdigit() or int(major) < 4:
        # before 4.0 the context reader validated no elements and reported to no caller's handler
        raise UsageError(error("E0741", f"reading X12 files needs pyx12 4 or later, not {pyx12.__version__}",
                               hint="pip install 'capdsl[x12]'"))
    return pyx12


@functools.cache
def _recorder_class():
    """An error handler for pyx12 that keeps every problem it is told about, with the map node it is about.

    The problems are collected per segment: `drain()` after each segment pyx12
    hands over returns those found while reading it.
    """

    class Recorder(_pyx12().error_handler.errh_null):
        def __init__(self, show_ids: bool) -> None:
            super().__init__()
            self.show_ids = show_ids
            self.node: Any = None  # the map node of the segment being validated
            self.pending: list[_Issue] = []

        def add_seg(self, map_node, seg, seg_count, cur_line, ls_id) -> None:
            self.node = map_node

        def _add(self, text: str, value: Any, node: Any = None, personal: bool = False) -> None:
            node = node if node is not None else self.node
            if value and personal and not self.show_ids:
                text = text.replace(f"({value})", HIDDEN).replace(str(value), "…")
            self.pending.append(_Issue(text, node))

        def seg_error(self, err_cde, err_str, err_value=None, src_line=None) -> None:
            self._add(err_str, err_value, personal=getattr(self.node, "id", None) in _PERSONAL_SEGMENTS)

        def ele_error(self, err_cde, err_str, bad_value, refdes=None) -> None:
            self._add(err_str, bad_value, personal=refdes in _PERSONAL_ELEMENTS)

        def isa_error(self, err_cde, err_str) -> None:
            self._add(err_str, None, _NO_NODE)

        gs_error = st_error = isa_error

        def handle_errors(self, err_list) -> None:
            for kind, _code, text, value, _line in err_list:
                self._add(text, value, None if kind == "seg" else _NO_NODE)

        def drain(self) -> list[_Issue]:
            out, self.pending = self.pending, []
            return out

    return Recorder


class _NoNode:
    id = None
    x12path = None


_NO_NODE = _NoNode()


@dataclass(frozen=True, slots=True)
class Where:
    """A segment's place in the file."""

    seg_id: str
    count: int  # position in the transaction set, ST = 1
    line: int  # position in the file, ISA = 1
    loops: tuple[str, ...]
    loop: str | None  # the innermost loop that is not a wrapper ("header" in the header), see _inner_loop

    @property
    def short(self) -> str:
        return f"segment {self.count}, line {self.line}"

    def __str__(self) -> str:
        if self.seg_id in _ENVELOPE or self.count == 0:
            return f"{self.seg_id} segment (line {self.line})"
        loop = self.loop
        if loop is None:
            return f"segment {self.count} ({self.seg_id}, line {self.line})"
        if loop == "header":
            return f"segment {self.count} (header, line {self.line})"
        return f"segment {self.count} (loop {loop}, line {self.line})"


@dataclass(frozen=True, slots=True)
class _Issue:
    text: str
    node: Any  # the pyx12 map node it is about (for a missing segment, that segment's node)


@dataclass(slots=True)
class _Seg:
    where: Where
    data: Any  # pyx12.segment.Segment
    node: Any  # its pyx12 map node
    issues: list[_Issue]

    def v(self, ref: str) -> str:
        """The element's value, as pyx12's `Segment.get_value` gives it (stripped; "" when absent).

        The reference designator is parsed once per name (by pyx12's X12Path), not at every call:
        the mapping asks a few dozen names millions of times in a large file.
        """
        seg_id, ele, sub = _refdes(ref)
        data = self.data
        if seg_id is not None and seg_id != data.seg_id:
            value = data.get_value(ref)  # pyx12 raises its own error for a designator of another segment
        elif ele >= len(data.elements):
            return ""
        elif sub is None:
            value = data.elements[ele].format()
        else:
            comp = data.elements[ele]
            value = comp[sub].format() if sub < len(comp) else None
        return value.strip() if isinstance(value, str) else ""


@functools.cache
def _refdes(ref: str) -> tuple[str | None, int, int | None]:
    """(segment id, element index, sub-element index) of a reference designator, counted from 0."""
    xp = _pyx12().path.X12Path(ref)
    if xp.ele_idx is None:
        raise IndexError(f"{ref} is not a valid element index")
    return xp.seg_id, xp.ele_idx - 1, (xp.subele_idx - 1 if xp.subele_idx is not None else None)


def _loops_of(node) -> tuple[str, ...]:
    path = getattr(node, "x12path", None)
    return tuple(getattr(path, "loop_list", ()) or ())


def _inner_loop(loops: tuple[str, ...]) -> str | None:
    inner = [x for x in loops if x not in _WRAPPERS]
    return inner[-1] if inner else ("header" if "HEADER" in loops else None)


class _Walk:
    """The file's segments, as pyx12 walks them, each with the problems pyx12 found in it.

    After the iteration, `tail` holds the problems found at the end of the
    file (missing trailers, a segment cut off).

    `text` reads a part of the file instead (see _chunks): an interchange of
    some of its transaction sets whose first ST is line `offset` + 3 of the
    file, so that every position names the file's line. `envelope_issues`
    then tells whether pyx12 reported anything at the part's own envelope
    (ISA, GS, GE, IEA), whose positions are not the file's.
    """

    def __init__(self, path: Path, kind: str, show_ids: bool, text: str | None = None, offset: int = 0) -> None:
        self.path, self.kind, self.show_ids = path, kind, show_ids
        self.text, self.offset = text, offset
        self.tail: list[Rejection] = []
        self.transactions = 0
        self.last: Where | None = None
        self.envelope_issues = False

    def _fail(self, message: str, hint: str | None = None, code: str = "E0724") -> InputError:
        return InputError(error(code, message, path=str(self.path), hint=hint))

    def __iter__(self) -> Iterator[_Seg]:
        x12 = _pyx12()
        if self.text is None:
            _check_file(self.path)
        recorder = _recorder_class()(self.show_ids)
        fic, guide = _GUIDES[self.kind]
        offset = self.offset
        # id(map node) -> (the node, kept alive so that its id is not reused; its loops; the inner loop)
        places: dict[int, tuple[Any, tuple[str, ...], str | None]] = {}
        with (open(self.path, encoding="utf-8-sig") if self.text is None else io.StringIO(self.text)) as fh:
            try:
                reader = x12.x12context.X12ContextReader(x12.params.ParamsBase(), recorder, fh)
            except x12.errors.X12Error as exc:
                raise self._fail(f"not an X12 interchange pyx12 can read: {exc}".rstrip(),
                                 hint="an X12 file starts with the 106-character ISA segment "
                                      "(ISA*00*…*00501*…~)") from None
            except UnicodeDecodeError as exc:
                raise self._not_utf8(exc) from None
            try:
                for node in reader.iter_segments():
                    seg = node.seg_data
                    sid = seg.get_seg_id() or ""
                    if sid == "GS":
                        got = (seg.get_value("GS01") or "", seg.get_value("GS08") or "")
                        if got != (fic, guide):
                            raise self._wrong_guide(got, node.cur_line_number)
                    elif sid == "ST":
                        self.transactions += 1
                    count = (node.seg_count or 0) + (sid == "SE")  # pyx12 has not counted the SE yet
                    map_node = node.x12_map_node
                    place = places.get(id(map_node))
                    if place is None:
                        loops = _loops_of(map_node)
                        place = places[id(map_node)] = (map_node, loops, _inner_loop(loops))
                    where = Where(sid, count, (node.cur_line_number or 0) + offset, place[1], place[2])
                    self.last = where
                    issues = recorder.drain()
                    if issues and sid in _ENVELOPE:
                        self.envelope_issues = True
                    yield _Seg(where, seg, map_node, issues)
                reader.src.cleanup()
                recorder.handle_errors(reader.src.pop_errors())
                rest = (reader.src.raw.buffer + fh.read()).strip()
            except UnicodeDecodeError as exc:
                raise self._not_utf8(exc) from None
            except CapError:
                raise
            except Exception as exc:  # noqa: BLE001 - pyx12 fails on some malformed files instead of reporting
                text = str(exc).splitlines()[0][:200] if str(exc) else ""
                if isinstance(exc, x12.errors.EngineError) and text.startswith("Map not found"):
                    raise self._fail(f"pyx12 has no map for this functional group ({text}): "
                                     f"the file is not an X12 5010 {self.kind}",
                                     hint=f"{self.kind} files are GS01 {fic}, GS08 {guide}") from None
                # what was read before stays; the segment pyx12 stopped at, and all after it, are reported
                src = reader.src
                unread = (src.raw.buffer + fh.read()).count(src.seg_term or "~")
                where = f"segment {src.get_seg_count()} (line {src.get_cur_line()})"
                self.tail += [Rejection(where, issue.text) for issue in recorder.drain()]
                self.tail.append(Rejection(where, f"pyx12 cannot go on from this segment ({type(exc).__name__}: "
                                                  f"{text}); it and the {plural(unread, 'segment')} after it "
                                                  "are not read"))
                return
        end = (self.last.line if self.last else 0) + 1
        count = (self.last.count if self.last else 0) + 1
        for issue in recorder.drain():
            self.tail.append(Rejection(f"end of file (line {end})", issue.text))
        if rest:
            # pyx12 stops without a word at a segment cut off by the end of the file, and at an empty
            # segment (two terminators in a row): what it left unread is reported here
            terminator = reader.src.seg_term or "~"
            unread = rest.count(terminator) + (not rest.endswith(terminator))
            if unread == 1 and not rest.endswith(terminator):
                snippet = rest.splitlines()[0][:20]
                if not self.show_ids:
                    snippet = snippet.split(reader.src.ele_term or "*")[0] + "…"
                why = f"the file ends inside a segment ('{snippet}', no segment terminator): it is truncated"
            else:
                why = (f"an empty segment (two segment terminators in a row) stops the reading: the "
                       f"{plural(unread, 'segment')} after it {'is' if unread == 1 else 'are'} not read")
            self.tail.append(Rejection(f"segment {count} (line {end})", why))

    def _not_utf8(self, exc: UnicodeDecodeError) -> InputError:
        data = self.path.read_bytes()
        try:
            data.decode("utf-8-sig")
            where = ""
        except UnicodeDecodeError as whole:
            term = data[105:106] if data.startswith(b"ISA") else b"~"  # the ISA's last character
            line = data.count(term or b"~", 0, whole.start) + 1
            where = f": byte 0x{data[whole.start]:02x} at offset {whole.start} (line {line})"
        return self._fail(f"the file is not valid UTF-8{where}", hint="save the file as UTF-8 (or ASCII)",
                          code="E0710")

    def _wrong_guide(self, got: tuple[str, str], line: int | None) -> InputError:
        other = next((k for k, v in _GUIDES.items() if v == got), None)
        fic, guide = _GUIDES[self.kind]
        if other:
            return self._fail(f"line {line}: this is an X12 {other} (GS01 {got[0]}, GS08 {got[1]}), not an "
                              f"{self.kind}", hint=f"read it with {_OTHER_COMMAND[other]}")
        return self._fail(f"line {line}: the functional group is GS01 {got[0] or '(empty)'}, GS08 "
                          f"{got[1] or '(empty)'}: not an X12 5010 {self.kind}",
                          hint=f"{self.kind} files are GS01 {fic}, GS08 {guide} (the 5010 implementation guide)")


def _check_file(path: Path) -> None:
    p = str(path)
    if not path.exists():
        raise InputError(error("E0701", f"no such file: {path}", path=p))
    if path.is_dir():
        raise InputError(error("E0701", f"{path} is a folder, not a file", path=p))
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise InputError(error("E0701", f"cannot read {path}: {exc.strerror or exc}", path=p)) from None
    if not head.strip():
        raise InputError(error("E0702", "the file is empty", path=p))


# ───────────────────────────── transaction sets in parallel ─────────────────────────────

# A part is at least this big: each part's reader loads pyx12's maps again (tens of milliseconds),
# which must stay small beside the walk of its sets (about a second for this size).
MIN_PART_BYTES = 200_000
# Below this size (two parts) a file is read in this process.
PARALLEL_MIN_BYTES = 2 * MIN_PART_BYTES
_PARTS_PER_JOB = 8  # so that a process finishing early takes another part
# elsewhere (macOS, Windows) forking is unsafe or absent, and files are read in one process
_FORK = sys.platform.startswith("linux")


def _default_jobs() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


class _Serial(Exception):
    """The file is not one clean interchange of several transaction sets: it is read in one process."""


class _Tap:
    """pyx12's raw segment iterator, remembering the text of the segment it handed over last."""

    def __init__(self, raw) -> None:
        self.raw, self.last = raw, ""

    def __iter__(self):
        for line in self.raw:
            self.last = line
            yield line


def _chunks(path: Path, kind: str, target: int) -> Iterator[tuple[str, int]]:
    """The file cut at transaction-set boundaries: (interchange text, line offset), in file order.

    pyx12's own reader (pyx12.x12file.X12Reader, which the context reader
    reads through) tokenizes the file and checks its envelope: the ISA/IEA,
    GS/GE and ST/SE counts and control numbers, their uniqueness, and the
    segment terminators. Each part is a complete interchange — the file's
    ISA and GS, whole ST…SE sets of about `target` characters, a GE and an
    IEA counting them — so that pyx12 walks and validates each set as in the
    whole file. Raises _Serial as soon as the file is anything else than one
    ISA, one GS of the reader's guide and ST…SE sets, all without an error
    from that reader: such a file is read whole, so that every problem is
    reported as the serial reading reports it.
    """
    x12 = _pyx12()
    fic, guide = _GUIDES[kind]
    with open(path, encoding="utf-8-sig") as fh:
        try:
            src = x12.x12file.X12Reader(fh)
            tap = src.raw = _Tap(src.raw)
            term, ele = src.seg_term, src.ele_term
            sep = term + "\n"
            head: list[str] = []
            body: list[str] = []
            size, sets, first_line, set_start, state = 0, 0, 0, 0, "ISA"
            for seg in src:
                if src.pop_errors():
                    raise _Serial
                sid = seg.get_seg_id()
                raw = tap.last
                if state == "SET":
                    if sid in _ENVELOPE or sid == "ST":
                        raise _Serial
                    body.append(raw)
                    size += len(raw) + 2
                    if sid == "SE":
                        state, sets = "SETS", sets + 1
                        if size + (size - set_start) / 2 >= target:  # the nearest set boundary to the target
                            yield sep.join(head + body + [f"GE{ele}{sets}{ele}{gs06}", f"IEA{ele}1{ele}{isa13}"]) \
                                + sep, first_line - 3
                            body, size, sets = [], 0, 0
                elif state == "ISA" and sid == "ISA":
                    head, state, isa13 = [raw], "GS", seg.get_value("ISA13")
                elif state == "GS" and sid == "GS":
                    if (seg.get_value("GS01"), seg.get_value("GS08")) != (fic, guide):
                        raise _Serial
                    head.append(raw)
                    state, gs06 = "SETS", seg.get_value("GS06")
                elif state == "SETS" and sid == "ST":
                    if not body:
                        first_line = src.get_cur_line()
                    set_start = size
                    body.append(raw)
                    size += len(raw) + 2
                    state = "SET"
                elif state == "SETS" and sid == "GE":
                    state = "IEA"
                elif state == "IEA" and sid == "IEA":
                    state = "END"
                else:
                    raise _Serial
            src.cleanup()
            if state != "END" or src.pop_errors() or (tap.raw.buffer + fh.read()).strip():
                raise _Serial
            if body:
                yield sep.join(head + body + [f"GE{ele}{sets}{ele}{gs06}", f"IEA{ele}1{ele}{isa13}"]) + sep, \
                    first_line - 3
        except _Serial:
            raise
        except Exception:  # noqa: BLE001 - whatever stops pyx12 here, the serial reading reports
            raise _Serial from None


def _read_part(kind: str, path: str, text: str, offset: int, show_ids: bool):
    """One part's scan (in a worker process); None when it cannot stand for the same sets in the file."""
    walk = _Walk(Path(path), kind, show_ids, text=text, offset=offset)
    try:
        part = (_scan_834 if kind == "834" else _scan_820)(walk)
    except CapError:
        return None
    if walk.envelope_issues or part.tail:
        return None
    return part


def _parts(path: Path, kind: str, show_ids: bool, jobs: int | None) -> list:
    """The file's scan (_Part834 / _Part820), as one part or as several in file order.

    pyx12's walk is nearly all the time a reading takes and runs in one
    Python thread; the transaction sets of a file are independent, so a file
    of several sets, of PARALLEL_MIN_BYTES or more, is read by `jobs`
    processes, each walking whole sets (see _chunks). The parts' positions
    are the file's, and joined in file order they are what one walk over the
    file finds; any part that cannot promise that (pyx12 reports something at
    its own envelope, or fails) makes the whole file read in this process.
    A file of one transaction set is always read in one process.

    The workers are forked (Linux only, see _FORK): a spawned worker imports
    the caller's main script again, which runs it again when it has no
    `if __name__ == "__main__"` guard; a forked one starts with pyx12 loaded
    and runs only pyx12 and this module, none of the libraries (DuckDB)
    whose threads the fork does not copy.
    """
    jobs = _default_jobs() if jobs is None else jobs
    if jobs > 1 and _FORK and path.is_file() and path.stat().st_size >= PARALLEL_MIN_BYTES:
        parts = _parallel_parts(path, kind, show_ids, jobs)
        if parts is not None:
            return parts
    return [(_scan_834 if kind == "834" else _scan_820)(_Walk(path, kind, show_ids))]


def _parallel_parts(path: Path, kind: str, show_ids: bool, jobs: int) -> list | None:
    import concurrent.futures
    import multiprocessing

    size = path.stat().st_size
    target = size // max(1, min(jobs * _PARTS_PER_JOB, size // max(1, MIN_PART_BYTES)))
    chunks = _chunks(path, kind, target)
    pool = None
    try:
        first = next(chunks, None)
        second = next(chunks, None)
        if second is None:
            return None
        pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"))
        futures = [pool.submit(_read_part, kind, str(path), text, offset, show_ids)
                   for text, offset in (first, second)]
        del first, second
        for text, offset in chunks:
            futures.append(pool.submit(_read_part, kind, str(path), text, offset, show_ids))
        parts = [f.result() for f in futures]
    except (_Serial, OSError, concurrent.futures.process.BrokenProcessPool):
        return None
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return None if any(p is None for p in parts) else parts


# ───────────────────────────── values ─────────────────────────────

def _d8(text: str) -> str | None:
    """CCYYMMDD → ISO date text, or None."""
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
    except ValueError:
        return None


def _period(fmt: str, text: str) -> tuple[str | None, str | None] | None:
    """A D8 date or an RD8 range → (first, last) ISO dates; None when it does not parse."""
    if fmt == "D8":
        d = _d8(text)
        return (d, d) if d else None
    if fmt == "RD8" and text.count("-") == 1:
        a, b = (_d8(x) for x in text.split("-"))
        return (a, b) if a and b and a <= b else None
    return None


def _amount(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _attribute(seg: _Seg, starts: bool, member_loops: set[str], current, previous, file_level: list) -> None:
    """Hand each problem pyx12 reported at this segment to the record it belongs to.

    A missing mandatory segment is noticed at the next segment; when that one
    opens a new record (or ends the transaction set), the gap belongs to the
    record before it.
    """
    for issue in seg.issues:
        inside = bool(member_loops & set(_loops_of(issue.node)))
        about_this = issue.node is seg.node
        if starts:
            target = previous if (inside and not about_this and previous is not None) else current
        elif current is not None and (inside or bool(member_loops & set(seg.where.loops))):
            target = current
        else:
            target = None
        (target.issues if target is not None else file_level).append(Rejection(str(seg.where), issue.text))


# ───────────────────────────── 834 ─────────────────────────────

@dataclass(slots=True)
class _Provider:
    """An NM1*P3 (loop 2310): the primary care provider of a coverage."""

    qualifier: str
    ident: str
    where: Where
    since: str | None = None  # PLA03: the provider's effective date


@dataclass(slots=True)
class _Coverage:
    """One HD (loop 2300) with its dates and providers."""

    maintenance: str
    where: Where
    begin: str | None = None
    end: str | None = None
    providers: list[_Provider] = field(default_factory=list)


@dataclass(slots=True)
class _Member:
    """What one loop 2000 says, as its segments are read (None or "": it does not say)."""

    start: Where
    subscriber: bool = True
    maintenance: str = ""
    death: str | None = None
    ref_0f: str = ""
    ref_23: str = ""
    nm108: str = ""
    nm109: str = ""
    eligible_from: str | None = None
    eligible_to: str | None = None
    has_dmg: bool = False
    birth: str | None = None
    sex: str = ""
    incorrect_birth: str | None = None
    coverages: list[_Coverage] = field(default_factory=list)
    issues: list[Rejection] = field(default_factory=list)
    complete: bool = False

    def ident(self) -> str | None:
        if self.subscriber and self.ref_0f:
            return self.ref_0f
        if self.nm108 == "ZZ" and self.nm109:
            return self.nm109
        if self.ref_23:
            return self.ref_23
        return None


def _date_issue(m: _Member, seg: _Seg, ref: str) -> None:
    if not seg.issues:  # pyx12 has not said so already
        m.issues.append(Rejection(str(seg.where), f"{ref} is not a valid date (CCYYMMDD)"))


def _read_member_segment(m: _Member, seg: _Seg) -> None:
    sid, loop = seg.where.seg_id, seg.where.loop
    if loop == "2000":
        if sid == "INS":
            m.subscriber = seg.v("INS01") != "N"
            m.maintenance = seg.v("INS03")
            if seg.v("INS12"):
                m.death = _d8(seg.v("INS12"))
                if m.death is None:
                    _date_issue(m, seg, "INS12 (death date)")
        elif sid == "REF":
            if seg.v("REF01") == "0F":
                m.ref_0f = seg.v("REF02")
            elif seg.v("REF01") == "23":
                m.ref_23 = seg.v("REF02")
        elif sid == "DTP" and seg.v("DTP01") in ("356", "357"):
            span = _period(seg.v("DTP02"), seg.v("DTP03"))
            if span is None:
                _date_issue(m, seg, f"DTP*{seg.v('DTP01')}")
            elif seg.v("DTP01") == "356":
                m.eligible_from = span[0]
            else:
                m.eligible_to = span[1]
    elif loop == "2100A":
        if sid == "NM1":
            m.nm108, m.nm109 = seg.v("NM108"), seg.v("NM109")
        elif sid == "DMG":
            m.has_dmg = True
            m.birth = _d8(seg.v("DMG02")) if seg.v("DMG01") == "D8" else None
            if m.birth is None:
                _date_issue(m, seg, "DMG02 (birth date)")
            m.sex = seg.v("DMG03") if seg.v("DMG03") in ("M", "F") else ""
    elif loop == "2100B" and sid == "DMG":
        m.incorrect_birth = _d8(seg.v("DMG02"))
    elif loop == "2300":
        if sid == "HD":
            m.coverages.append(_Coverage(seg.v("HD01"), seg.where))
        elif sid == "DTP" and m.coverages and seg.v("DTP01") in ("348", "349"):
            cov = m.coverages[-1]
            span = _period(seg.v("DTP02"), seg.v("DTP03"))
            if span is None:
                _date_issue(m, seg, f"DTP*{seg.v('DTP01')}")
            elif seg.v("DTP01") == "348":
                cov.begin = span[0]
                if seg.v("DTP02") == "RD8" and cov.end is None:
                    cov.end = span[1]
            else:
                cov.end = span[1]
    elif loop == "2310" and m.coverages:
        cov = m.coverages[-1]
        if sid == "NM1" and seg.v("NM101") == "P3":
            cov.providers.append(_Provider(seg.v("NM108"), seg.v("NM109"), seg.where))
        elif sid == "PLA" and cov.providers:
            cov.providers[-1].since = _d8(seg.v("PLA03"))


@dataclass(slots=True)
class _Facts:
    """What one member loop says, in members-table terms (None: the loop does not say)."""

    practice: str | None
    coverage: _Coverage | None
    enrolled_from: str | None
    enrolled_to: str | None
    terminates: bool
    problem: str | None = None


def _facts(m: _Member, label: str, practices: _Practices | None) -> _Facts:
    found = [(p, c) for c in m.coverages for p in c.providers]
    practice, coverage, problem = None, None, None
    blank = next((p for p, _ in found if not p.ident), None)
    if blank is not None:
        problem = f"member {label}: the primary care provider at {blank.where} has no identifier (NM108/NM109)"
    elif found:
        distinct = {_practice_of(p, practices) or p.ident for p, _ in found}
        if len(distinct) == 1:
            chosen, coverage = found[0]
        elif all(p.since for p, _ in found):
            chosen, coverage = max(found, key=lambda pc: pc[0].since)
        else:
            problem = (f"member {label} names {len(distinct)} primary care providers "
                       f"({', '.join(sorted(distinct))}) and no PLA effective date tells which one is current")
        if problem is None:
            practice = _practice_of(chosen, practices)
            if practice is None:
                problem = (f"member {label}: practice {chosen.ident!r} (NM1*P3 at {chosen.where.short}) is not in "
                           f"{practices.name}")
    terminates = m.maintenance == "024" or (coverage is not None and coverage.maintenance == "024")
    begin = coverage.begin if coverage and coverage.begin else m.eligible_from
    end = coverage.end if coverage and coverage.end else m.eligible_to
    if m.death and (end is None or m.death < end):
        end = m.death
    return _Facts(practice, coverage, begin, end, terminates, problem)


def _practice_of(p: _Provider, practices: _Practices | None) -> str | None:
    """The practice id a provider identifier stands for (itself without a practices table; None: unknown)."""
    return p.ident if practices is None else practices.practice(p)


@dataclass(slots=True)
class _Part834:
    """What the segments of a file (or of some of its transaction sets) say, before members are merged."""

    loops: list[_Member] = field(default_factory=list)
    file_level: list[Rejection] = field(default_factory=list)
    change_file: bool = False
    transactions: int = 0
    tail: list[Rejection] = field(default_factory=list)


def _scan_834(walk: _Walk) -> _Part834:
    part = _Part834()
    loops, file_level = part.loops, part.file_level
    current: _Member | None = None
    for seg in walk:
        sid = seg.where.seg_id
        in_member = "2000" in seg.where.loops
        starts = in_member and (sid == "INS" or current is None)
        if starts:
            previous = current
            if previous is not None:
                previous.complete = True
            current = _Member(seg.where)
            loops.append(current)
            _attribute(seg, True, {"2000"}, current, previous, file_level)
        else:
            _attribute(seg, False, {"2000"}, current, None, file_level)
        if in_member:
            _read_member_segment(current, seg)
        elif sid == "SE" and current is not None:
            current.complete = True
            current = None
        elif sid == "BGN" and seg.v("BGN08") == "2":
            part.change_file = True
    part.transactions, part.tail = walk.transactions, walk.tail
    return part


def read_834(path: str | os.PathLike, *, practices: Any = None, show_ids: bool = False,
             jobs: int | None = None) -> Reading:
    """The members of a 5010 834 file (see the module docstring), and every member loop that was not read.

    `practices`: a practices table (a file, or ids, or a mapping from the
    file's provider identifiers to practice ids); members whose primary care
    provider it does not know are rejected. `show_ids` puts member ids in
    the reasons (by default `id:3f9a2c`, as in all of capdsl's messages).
    `jobs`: processes for a large file of several transaction sets (see
    `_parts`; default: the CPUs available, 1 reads in this process).
    """
    known = _practice_lookup(practices)
    parts = _parts(Path(path), "834", show_ids, jobs)
    loops = [m for part in parts for m in part.loops]
    file_level = [r for part in parts for r in part.file_level]
    change_file = any(part.change_file for part in parts)
    tail = [r for part in parts for r in part.tail]
    transactions = sum(part.transactions for part in parts)
    rejected = list(file_level)
    by_id: dict[str, list[_Member]] = {}
    for m in loops:
        ident = m.ident()
        if not m.complete:
            m.issues.append(Rejection(str(m.start), "the file ends inside this member loop (no SE after it): "
                                                    "the record may be incomplete"))
        if ident is None:
            what = ("a subscriber (INS01 Y) needs REF*0F" if m.subscriber else
                    "a dependent (INS01 N) needs its own NM1*IL NM109 (NM108 ZZ) or REF*23 (REF*0F names its "
                    "subscriber)")
            rejected += m.issues
            rejected.append(Rejection(str(m.start), f"the member has no identifier: {what}"))
            continue
        by_id.setdefault(ident, []).append(m)
    members, corrections, maintenance = [], [], Counter()
    for ident, group in by_id.items():
        who = redact_id(ident, show_ids)
        issues = [r for m in group for r in m.issues]
        for m in group:
            maintenance[m.maintenance or "?"] += 1
        if issues:
            starts = " and ".join(m.start.short for m in group)
            loop = "its loop 2000 starts" if len(group) == 1 else "its loops 2000 start"
            rejected += [Rejection(r.position, f"{r.reason}; member {who} ({loop} at {starts}) is not read")
                         for r in issues]
            continue
        row, why, last = _merge(group, who, known)
        if why:
            rejected.append(Rejection(str(last.start), why))
            continue
        members.append(row)
        for m in group:
            if m.incorrect_birth and m.birth and m.incorrect_birth != m.birth:
                corrections.append({"member_id": ident, "field": "birth_date", "old": m.incorrect_birth,
                                    "new": m.birth, "position": str(m.start)})
    warnings = []
    if change_file:
        warnings.append("this is a change file (BGN08 2): the members table holds only the members it changes, "
                        "not the whole panel")
    merged = sum(1 for g in by_id.values() if len(g) > 1)
    if merged:
        warnings.append(f"{plural(merged, 'member')} appear in more than one loop 2000; their loops are merged "
                        "in file order (a later loop's values win)")
    rejected += tail
    return Reading("834", str(path), members=members, rejected=_in_file_order(rejected), warnings=warnings,
                   transactions=transactions, records=len(loops), maintenance=dict(maintenance),
                   corrections=corrections, show_ids=show_ids)


def _merge(group: list[_Member], who: str, practices: _Practices | None):
    """One member's loops, in file order → (row, None) or (None, why it is rejected, the loop to name)."""
    state: dict[str, Any] = {"practice": None, "birth": None, "sex": "", "from": None, "to": None}
    last = group[-1]
    for m in group:
        f = _facts(m, who, practices)
        if f.problem:
            return None, f.problem, m
        if m.has_dmg:
            state["birth"], state["sex"] = m.birth, m.sex
        if f.practice is not None:
            state["practice"] = f.practice
        if f.enrolled_from is not None:
            state["from"] = f.enrolled_from
        if f.terminates:
            if f.enrolled_to is None:
                return None, (f"member {who}: a cancellation or termination (INS03 024) without an end date "
                              "(DTP*349 in loop 2300, DTP*357 in loop 2000 or a death date in INS12)"), m
            state["to"] = f.enrolled_to
        elif f.coverage is not None or f.enrolled_to is not None or m.maintenance == "025":
            state["to"] = f.enrolled_to
        last = m
    if state["birth"] is None:
        return None, f"member {who} has no birth date (DMG in loop 2100A)", last
    if state["practice"] is None:
        return None, (f"member {who} has no primary care provider (NM1*P3 in loop 2310): capdsl registers "
                      "each member with a practice"), last
    if state["from"] and state["to"] and state["to"] < state["from"]:
        return None, (f"member {who} is cancelled: the coverage ends ({state['to']}) before it begins "
                      f"({state['from']}), so the member is never enrolled"), last
    row = {"member_id": group[0].ident(), "practice_id": state["practice"], "birth_date": state["birth"],
           "sex": state["sex"], "enrolled_from": state["from"] or "", "enrolled_to": state["to"] or ""}
    return row, None, last


@dataclass(frozen=True, slots=True)
class _Practices:
    """The practices a file's providers may name: by practice id, and by NPI (NM108 XX)."""

    ids: dict[str, str]  # identifier in the file -> practice_id
    npis: dict[str, str]
    name: str  # for messages

    def practice(self, p: _Provider) -> str | None:
        if p.qualifier == "XX" and p.ident in self.npis:
            return self.npis[p.ident]
        return self.ids.get(p.ident)


def _practice_lookup(practices: Any) -> _Practices | None:
    """The practices to check providers against: a practices file, a mapping or some ids (None: no check)."""
    if practices is None:
        return None
    if isinstance(practices, (str, os.PathLike)):
        return _read_practices(Path(practices))
    if isinstance(practices, Mapping):
        return _Practices({str(k): str(v) for k, v in practices.items()}, {}, "the practices table")
    return _Practices({str(p): str(p) for p in practices}, {}, "the practices table")


def _read_practices(path: Path) -> _Practices:
    """A practices file's practice_id column (and its npi column, when it has one)."""
    import duckdb

    file, sheet = split_sheet(path)
    probs = Problems()
    con = duckdb.connect(":memory:")
    try:
        raw = read_table(con, "practices", file, detect_format(file), probs, ReadOptions(sheet=sheet))
        if raw is None or probs.errors:
            raise InputError(probs.errors)
        if "practice_id" not in raw.columns:
            raise InputError(error("E0703", "the practices file has no column 'practice_id'", path=str(path)))
        npi = raw.columns.get("npi", "NULL")
        rows = fetch_all(con, f"SELECT trim({raw.columns['practice_id']}), trim({npi}) FROM raw_practices")
    finally:
        con.close()
    ids = {p: p for p, _ in rows if p}
    npis = {n: p for p, n in reversed(rows) if p and n}  # an NPI listed twice names its first practice
    return _Practices(ids, npis, str(path))


def _in_file_order(rejected: Iterable[Rejection]) -> list[Rejection]:
    def key(r: Rejection):
        text = r.position
        i = text.find("line ")
        digits = "".join(ch for ch in text[i + 5:] if ch.isdigit()) if i >= 0 else ""
        return int(digits) if digits else 0

    return sorted(rejected, key=key)


# ───────────────────────────── 820 ─────────────────────────────

@dataclass(slots=True)
class _Adjustment:
    """One ADX: an amount added to (or taken from) a payment, with its reason code."""

    amount: Decimal | None
    reason: str
    where: Where


@dataclass(slots=True)
class _Detail:
    """One RMR (loop 2300A/2300B) with its REF, DTM and ADX (loop 2320A/2320B)."""

    qualifier: str
    reference: str
    amount: Decimal | None
    where: Where
    refs: dict[str, str] = field(default_factory=dict)
    period: tuple[str, str] | None = None
    adjustments: list[_Adjustment] = field(default_factory=list)


@dataclass(slots=True)
class _Transaction:
    """One ST…SE: the payment (BPR), its trace number, coverage period and payee."""

    where: Where
    total: Decimal | None = None
    trace: str = ""
    period: tuple[str, str] | None = None
    payee: str = ""
    issues: list[Rejection] = field(default_factory=list)


@dataclass(slots=True)
class _Remit:
    """An organisation (loop 2000A) or individual (loop 2000B) remittance."""

    start: Where
    st: _Transaction
    individual: bool
    ent04: str = ""
    nm109: str = ""
    previous: list[_Adjustment] = field(default_factory=list)  # loop 2200A/2200B: earlier payments
    details: list[_Detail] = field(default_factory=list)
    issues: list[Rejection] = field(default_factory=list)
    complete: bool = False


_REMIT_LOOPS = {"2000A", "2000B"}


def _month(span: tuple[str, str] | None) -> tuple[str | None, str | None]:
    """(YYYY-MM, None) for a period within one month, else (None, why)."""
    if span is None:
        return None, None
    first, last = span
    if first[:7] != last[:7]:
        return None, (f"the coverage period {first} to {last} spans more than one month: capdsl compares month "
                      "by month, so each month needs its own RMR")
    return first[:7], None


def _read_remit_segment(r: _Remit, seg: _Seg) -> None:
    sid, loop = seg.where.seg_id, seg.where.loop
    if sid == "ENT":
        r.ent04 = seg.v("ENT04")
    elif sid == "NM1" and loop == "2100B":
        r.nm109 = r.nm109 or seg.v("NM109")
    elif sid == "ADX" and loop in ("2200A", "2200B"):
        r.previous.append(_Adjustment(_amount(seg.v("ADX01")), seg.v("ADX02"), seg.where))
    elif sid == "RMR":
        r.details.append(_Detail(seg.v("RMR01"), seg.v("RMR02"), _amount(seg.v("RMR04")), seg.where))
    elif r.details and loop in ("2300A", "2300B"):
        d = r.details[-1]
        if sid == "REF":
            d.refs.setdefault(seg.v("REF01"), seg.v("REF02"))
        elif sid == "DTM":
            d.period = _dtm_period(seg)
            if d.period is None and not seg.issues:
                r.issues.append(Rejection(str(seg.where), "the DTM coverage period is not a valid date or "
                                                          "CCYYMMDD-CCYYMMDD range"))
    elif sid == "ADX" and r.details and loop in ("2320A", "2320B"):
        r.details[-1].adjustments.append(_Adjustment(_amount(seg.v("ADX01")), seg.v("ADX02"), seg.where))


def _dtm_period(seg: _Seg) -> tuple[str, str] | None:
    if seg.v("DTM05"):
        return _period(seg.v("DTM05"), seg.v("DTM06"))
    return _period("D8", seg.v("DTM02"))


def _read_header_segment(st: _Transaction, seg: _Seg) -> None:
    sid, loop = seg.where.seg_id, seg.where.loop
    if sid == "BPR":
        st.total = _amount(seg.v("BPR02"))
    elif sid == "TRN":
        st.trace = seg.v("TRN02")
    elif sid == "DTM" and seg.v("DTM01") == "582":
        st.period = _dtm_period(seg)
        if st.period is None and not seg.issues:
            st.issues.append(Rejection(str(seg.where), "the coverage period (DTM*582) is not a valid "
                                                       "CCYYMMDD-CCYYMMDD range"))
    elif sid == "N1" and loop == "1000A" and seg.v("N101") == "PE":
        st.payee = seg.v("N104")


@dataclass(slots=True)
class _Part820:
    """What the segments of a file (or of some of its transaction sets) say, before rows are made."""

    sets: list[_Transaction] = field(default_factory=list)
    remits: list[_Remit] = field(default_factory=list)
    file_level: list[Rejection] = field(default_factory=list)
    transactions: int = 0
    tail: list[Rejection] = field(default_factory=list)


def _scan_820(walk: _Walk) -> _Part820:
    part = _Part820()
    sets, remits, file_level = part.sets, part.remits, part.file_level
    st: _Transaction | None = None
    current: _Remit | None = None
    for seg in walk:
        sid = seg.where.seg_id
        inside = not _REMIT_LOOPS.isdisjoint(seg.where.loops)
        if sid == "ST":
            st = _Transaction(seg.where)
            sets.append(st)
        elif st is None:  # envelope segments before the first ST
            _attribute(seg, False, _REMIT_LOOPS, None, None, file_level)
            continue
        starts = inside and (sid == "ENT" or current is None)
        if starts:
            previous = current
            if previous is not None:
                previous.complete = True
            current = _Remit(seg.where, st, "2000B" in seg.where.loops)
            remits.append(current)
            _attribute(seg, True, _REMIT_LOOPS, current, previous, file_level)
        elif inside or current is not None:
            _attribute(seg, False, _REMIT_LOOPS, current, None, file_level)
        else:  # a problem in the header (payee, trace, month) concerns every remittance of the set
            _attribute(seg, False, _REMIT_LOOPS, None, None,
                       st.issues if "HEADER" in seg.where.loops else file_level)
        if inside:
            _read_remit_segment(current, seg)
        elif sid == "SE":
            if current is not None:
                current.complete = True
            current = None
        elif "HEADER" in seg.where.loops:
            _read_header_segment(st, seg)
    part.transactions, part.tail = walk.transactions, walk.tail
    return part


def read_820(path: str | os.PathLike, *, show_ids: bool = False, jobs: int | None = None) -> Reading:
    """The remittance rows of a 5010 820 file (see the module docstring), and every record not read.

    Each row: practice_id, member_id (empty for an organisation-level amount),
    month (YYYY-MM), line (the capdsl line a REF*ZZ names, an ADX's
    `adjustment:<reason code>`, or empty), amount (Decimal) and reference
    (the trace number, the segment and its position). `jobs`: as for `read_834`.
    """
    parts = _parts(Path(path), "820", show_ids, jobs)
    sets = [s for part in parts for s in part.sets]
    remits = [r for part in parts for r in part.remits]
    file_level = [r for part in parts for r in part.file_level]
    tail = [r for part in parts for r in part.tail]
    transactions = sum(part.transactions for part in parts)
    rejected = list(file_level)
    rows: list[dict[str, Any]] = []
    for s in sets:
        rejected += s.issues
    bad_headers = {id(s) for s in sets if s.issues}
    for r in remits:
        if not r.complete:
            r.issues.append(Rejection(str(r.start), "the file ends inside this remittance loop (no SE after it): "
                                                    "the record may be incomplete"))
        got, why = _remit_rows(r, show_ids, id(r.st) in bad_headers)
        rejected += why
        rows += got
    warnings = _balance_warnings(sets, remits)
    rejected += tail
    payees = list(dict.fromkeys(s.payee for s in sets if s.payee))
    return Reading("820", str(path), remittance=rows, rejected=_in_file_order(rejected), warnings=warnings,
                   transactions=transactions, records=len(remits), payees=payees, show_ids=show_ids)


def _remit_rows(r: _Remit, show_ids: bool, bad_header: bool) -> tuple[list[dict[str, Any]], list[Rejection]]:
    member = (r.nm109 or r.ent04) if r.individual else ""
    who = f"member {redact_id(member, show_ids)}" if r.individual else "the organisation summary"
    n = len(r.details) + len(r.previous) + sum(len(d.adjustments) for d in r.details)
    lost = (f"the remittance of {who} ({plural(n, 'amount')}; its loop {r.start.loop} starts at {r.start.short}) "
            "is not read")
    if bad_header:
        return [], [Rejection(str(r.start), f"the header of the transaction set at {r.st.where} is invalid; {lost}")]
    if r.issues:
        return [], [Rejection(x.position, f"{x.reason}; {lost}") for x in r.issues]
    if r.individual and not member:
        return [], [Rejection(str(r.start), "the individual has no identifier (NM1 NM109 in loop 2100B or ENT04)")]
    header_month, header_why = _month(r.st.period)
    rows: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    trace = f"TRN {r.st.trace}, " if r.st.trace else ""

    def add(practice: str, month: str | None, why: str | None, line: str, amount: Decimal | None,
            text: str, where: Where) -> None:
        if not practice:
            rejected.append(Rejection(str(where), f"{text} for {who}: no practice (the payee N1*PE has no "
                                                  "N104 identifier and the detail no REF*LU)"))
        elif month is None:
            rejected.append(Rejection(str(where), f"{text} for {who}: " + (
                why or "no coverage month (DTM*582 in the detail or in the header)")))
        elif amount is None:
            rejected.append(Rejection(str(where), f"{text} for {who}: the amount is not a number"))
        else:
            rows.append({"practice_id": practice, "member_id": member, "month": month, "line": line,
                         "amount": amount, "reference": f"{trace}{text}, {where}"})

    for a in r.previous:
        # an adjustment of an earlier payment names no month: the remittance's coverage month, else the
        # one month of the record's details
        month, why = header_month, header_why
        detail_months = {_month(d.period)[0] if d.period is not None else header_month for d in r.details}
        if month is None and len(detail_months) == 1 and None not in detail_months:
            month, why = next(iter(detail_months)), None
        add(r.st.payee, month, why, f"adjustment:{a.reason}", a.amount, f"ADX {a.reason}", a.where)
    for d in r.details:
        month, why = _month(d.period) if d.period is not None else (header_month, header_why)
        practice = d.refs.get("LU") or r.st.payee
        add(practice, month, why, d.refs.get("ZZ", ""), d.amount, f"RMR {d.qualifier} {d.reference}".rstrip(),
            d.where)
        for a in d.adjustments:
            add(practice, month, why, f"adjustment:{a.reason}", a.amount, f"ADX {a.reason}", a.where)
    return rows, rejected


def _balance_warnings(sets: list[_Transaction], remits: list[_Remit]) -> list[str]:
    """BPR02 against the RMR and ADX amounts of its transaction set (a check, not a rejection)."""
    out = []
    by_set: dict[int, list] = {}
    for r in remits:
        by_set.setdefault(id(r.st), []).extend(
            [d.amount for d in r.details] + [a.amount for a in r.previous]
            + [a.amount for d in r.details for a in d.adjustments])
    for s in sets:
        amounts = by_set.get(id(s), [])
        if s.total is None or any(a is None for a in amounts):
            continue
        found = sum(amounts, Decimal(0))
        if found != s.total:
            out.append(f"transaction set at {s.where}: BPR02 pays {s.total} but its RMR and ADX amounts add up "
                       f"to {found}")
    return out


# ───────────────────────────── the members table of a panel ─────────────────────────────

def members_table(con, path: Path, probs: Problems, show_ids: bool = False) -> RawTable | None:
    """An X12 5010 834 as a panel's members table (`raw_members`, as `read.read_table` makes one),
    read as `panel from-834` reads it. A member loop it cannot use is an error with its segment
    position, never a member left out of a payment in silence; `panel from-834` writes the members
    it can read and lists the rest. The rows are numbered in the members' order."""
    import pyarrow as pa

    p = str(path)
    reading = read_834(path, show_ids=show_ids)  # missing, empty or not an 834: its error (E0701, E0702, E0724)
    hint = f"correct the record, or convert the file with `capdsl panel from-834 {p} -o members.csv`, which " \
           "writes the members it can read and lists the others"
    for r in reading.rejected:
        probs.add(error("E0743", f"{r.position}: {r.reason}", path=p, hint=hint))
    if reading.rejected:
        return None
    for text in reading.warnings:
        probs.add(warning("W0744", text, path=p))
    arrays = {"_row": pa.array(range(1, len(reading.members) + 1), pa.int64())}
    arrays.update({f"c{i}": pa.array([m.get(c) or None for m in reading.members], pa.string())
                   for i, c in enumerate(MEMBER_COLUMNS)})
    store_raw(con, "members", arrays)
    return RawTable("members", p, {c: f"c{i}" for i, c in enumerate(MEMBER_COLUMNS)}, len(reading.members))


# ───────────────────────────── writing ─────────────────────────────

_OUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def from_834(path: str | os.PathLike, out: str | os.PathLike, *, practices: Any = None, fmt: str | None = None,
             show_ids: bool = False, jobs: int | None = None) -> Reading:
    """Read an 834 and write its members table (CSV or Parquet, atomically; `-` is standard output).

    Stops with E0725, writing nothing, when no member could be read.
    """
    _, kind = output_format(os.fspath(out), fmt, _OUT_FORMATS, "csv")
    reading = read_834(path, practices=practices, show_ids=show_ids, jobs=jobs)
    _require_rows(reading, "member")
    _write(reading.members, MEMBER_COLUMNS, out, kind)
    return replace(reading, output=os.fspath(out))


def from_820(path: str | os.PathLike, out: str | os.PathLike, *, fmt: str | None = None,
             show_ids: bool = False, jobs: int | None = None) -> Reading:
    """Read an 820 and write its remittance table (CSV or Parquet, atomically; `-` is standard output).

    Stops with E0725, writing nothing, when no remittance row could be read.
    """
    _, kind = output_format(os.fspath(out), fmt, _OUT_FORMATS, "csv")
    reading = read_820(path, show_ids=show_ids, jobs=jobs)
    _require_rows(reading, "remittance row")
    _write(reading.remittance, REMITTANCE_COLUMNS, out, kind)
    return replace(reading, output=os.fspath(out))


def _require_rows(reading: Reading, what: str) -> None:
    if reading.rows:
        return
    notes = [Note(f"{r.position}: {r.reason}") for r in reading.rejected[:LIMIT]]
    if len(reading.rejected) > LIMIT:
        notes.append(Note(f"… and {len(reading.rejected) - LIMIT} more"))
    found = (f"all {plural(reading.records, 'record')} were rejected" if reading.records
             else f"the file holds no {what}s")
    raise InputError(error("E0725", f"nothing could be read from {reading.path}: {found}", notes=notes,
                           path=reading.path, hint="the notes give each rejected record's position and reason"))


def _write(rows: list[dict[str, Any]], columns: tuple[str, ...], out: str | os.PathLike, kind: str) -> None:
    with atomic_path(out) as tmp:
        if kind == "parquet":
            _write_parquet(rows, columns, tmp)
        else:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow(["" if row[c] is None else str(row[c]) for c in columns])
            Path(tmp).write_text(buf.getvalue(), encoding="utf-8")


def _write_parquet(rows: list[dict[str, Any]], columns: tuple[str, ...], tmp: Path) -> None:
    """Dates as DATE, amounts as exact DECIMAL(38, s), everything else as text (empty → null)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for c in columns:
        values = [row[c] for row in rows]
        if c in ("birth_date", "enrolled_from", "enrolled_to"):
            arrays[c] = pa.array([date.fromisoformat(v) if v else None for v in values], pa.date32())
        elif c == "amount":
            scale = max([2] + [-v.as_tuple().exponent for v in values if v.as_tuple().exponent < 0])
            arrays[c] = pa.array([v.quantize(Decimal(1).scaleb(-scale)) for v in values], pa.decimal128(38, scale))
        else:
            arrays[c] = pa.array([v if v != "" else None for v in values], pa.string())
    pq.write_table(pa.table(arrays), tmp)
