"""Read a FHIR Da Vinci ATR member-attribution list into a capdsl members panel.

A payer sends the providers it contracts with a *member attribution list*
(HL7 Da Vinci ATR IG, FHIR R4): one `Group` whose `member` entries each
reference a `Patient`, the attributed provider (extension
`ext-attributedProvider`: an Organization, a Practitioner or a
PractitionerRole) and the member's `Coverage` (extension
`ext-coverageReference`). `$davinci-data-export` delivers it as FHIR Bulk
Data NDJSON files (Group.ndjson, Patient.ndjson, Coverage.ndjson,
Organization.ndjson, Practitioner.ndjson …); a Bundle JSON file holding the
same resources is read too.

Every resource is parsed and validated by `fhir.resources` (the R4B models:
Group, Patient, Coverage, Organization, Practitioner and PractitionerRole
have the same elements in R4 and R4B). A Group is validated member by member,
so one bad member rejects that member, not the whole list. Nothing is dropped
without a word: each resource that cannot be used and each member that
cannot become a panel row is listed in `Reading.rejected` with its position
("Patient.ndjson line 5", "Group/atr-2011 member 4") and the reason; members
marked inactive are listed there too, as skipped.

The mapping to the members columns:

* member_id: the Patient's identifier in the system of the Coverage's
  member-number (type MB) identifier; else the Patient's identifier of type
  MB; else the Coverage's MB identifier;
* practice_id: an Organization's NPI, else its TIN; a Practitioner's NPI; a
  PractitionerRole's organization (NPI, else TIN), else its practitioner's NPI;
* birth_date: Patient.birthDate (a full date; a year or a month alone is
  rejected);
* sex: Patient.gender male/female -> M/F; other, unknown or absent -> empty;
* enrolled_from / enrolled_to: Group.member.period, else Coverage.period
  (an end without a day is its month's or year's last day, as FHIR reads
  it); a Patient.deceasedDateTime before the end ends the enrolment on that
  day (reported as a warning).
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import os
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator

from capdsl.errors import InputError, Note, UsageError, error
from capdsl.outputs import atomic_path, output_format

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
EXT_ATTRIBUTED_PROVIDER = ATR + "ext-attributedProvider"
EXT_COVERAGE_REFERENCE = ATR + "ext-coverageReference"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"  # identifier types: MB, NPI, TAX
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
TIN_SYSTEM = "urn:oid:2.16.840.1.113883.4.4"  # US employer identification number (TIN)

#: the resource types the conversion reads; others in the export are counted and not used
USED_TYPES = ("Group", "Patient", "Coverage", "Organization", "Practitioner", "PractitionerRole")
MEMBER_COLUMNS = ("member_id", "practice_id", "birth_date", "sex", "enrolled_from", "enrolled_to")
SEX = {"male": "M", "female": "F", "other": None, "unknown": None}
REPORT_LIMIT = 20  # rejected entries listed in the text report (all of them in --json)


@dataclass(frozen=True, slots=True)
class Reading:
    """What was read: the members rows, and every rejection and warning with its position.

    `members` rows have the keys of MEMBER_COLUMNS (dates as `date`, empty as None);
    `rejected` and `warnings` are (position, reason) pairs; `resources` counts the valid
    resources read per type.
    """

    source: str
    members: tuple[dict[str, Any], ...]
    rejected: tuple[tuple[str, str], ...]
    warnings: tuple[tuple[str, str], ...]
    resources: dict[str, int]
    groups: int
    group_members: int
    members_rejected: int  # group members that did not become a row (the other rejections are lines)
    patients_not_in_group: int
    absent: tuple[str, ...] = ()  # the types members reference that the export has no resource of

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "groups": self.groups,
            "group_members": self.group_members,
            "members": len(self.members),
            "members_rejected": self.members_rejected,
            "resources": dict(self.resources),
            "patients_not_in_group": self.patients_not_in_group,
            "rejected": [{"position": p, "reason": r} for p, r in self.rejected],
            "warnings": [{"position": p, "message": m} for p, m in self.warnings],
        }

    def lines(self, limit: int = REPORT_LIMIT) -> list[str]:
        read = ", ".join(f"{n:,} {t}" for t, n in self.resources.items()) or "none"
        groups = f"{self.groups} Group" + ("s" if self.groups != 1 else "")
        out = [f"valid resources read from {self.source}: {read}",
               f"members: {len(self.members):,} of {self.group_members:,} group members ({groups}); "
               f"not converted: {self.members_rejected:,}"]
        if self.patients_not_in_group:
            out.append(f"Patient resources in no Group (not members, not converted): {self.patients_not_in_group:,}")
        for title, items in (("rejected", self.rejected), ("warnings", self.warnings)):
            if not items:
                continue
            out.append(f"{title} ({len(items):,}):")
            out += [f"  {p}: {r}" for p, r in items[:limit]]
            if len(items) > limit:
                out.append(f"  … and {len(items) - limit:,} more (--json lists them all)")
        return out


# ───────────────────────────── the library ─────────────────────────────

def _models():
    """fhir.resources' model lookup and pydantic's ValidationError, or E0750 naming the extra."""
    try:
        from fhir.resources.R4B import get_fhir_model_class
        from pydantic import ValidationError
    except ImportError:
        raise UsageError(error("E0750", "reading a FHIR attribution list needs the 'fhir' extra "
                                        "(fhir.resources is not installed)",
                               hint="pip install 'capdsl[fhir]'")) from None
    return get_fhir_model_class, ValidationError


def require_fhir_extra() -> None:
    """E0750 now (before any work) when fhir.resources is missing."""
    _models()


def _summary(exc) -> str:
    """A pydantic ValidationError in one line: `birthDate: Date value string does not match spec regex`.

    Input values are left out (a birth date is health data)."""
    parts = []
    errors = exc.errors()
    for err in errors[:3]:
        loc = ".".join(str(x) if not isinstance(x, int) else f"[{x}]" for x in err.get("loc", ())).replace(".[", "[")
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        msg = " ".join(msg.split())
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


# ───────────────────────────── reading the files ─────────────────────────────

@dataclass(slots=True)
class _Group:
    position: str
    id: str | None
    members: list[Any] = field(default_factory=list)  # a GroupMember model, or the error summary (str)

    def member_position(self, n: int) -> str:
        return f"Group/{self.id} member {n}" if self.id else f"{self.position}, member {n}"


@dataclass(slots=True)
class _Export:
    """The validated resources by type and id, the rejections, and what could not be used."""

    found: dict[tuple[str, str], tuple[str, Any]] = field(default_factory=dict)  # (type, id) -> (position, model)
    bad: dict[tuple[str, str], str] = field(default_factory=dict)  # (type, id) -> why it is unusable
    full_urls: dict[str, tuple[str, str]] = field(default_factory=dict)  # a Bundle entry's fullUrl -> (type, id)
    groups: list[_Group] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    types_seen: set[str] = field(default_factory=set)  # every used type with a resource, valid or not
    #: references to a type the export has no resource of at all (a whole file missing), per type
    absent: dict[str, int] = field(default_factory=dict)


#: (position, the parsed JSON, why it cannot be read or None, the Bundle entry's fullUrl or None)
_Raw = tuple[str, Any, "str | None", "str | None"]


def _raw_resources(path: Path) -> Iterator[_Raw]:
    """Every resource of the export, in file order (the files of a folder by name)."""
    if path.is_dir():
        try:
            files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(".ndjson"))
        except OSError as exc:
            raise InputError(error("E0701", f"cannot read the folder {path}: {exc.strerror}",
                                   path=str(path))) from None
        if not files:
            raise InputError(error("E0701", f"no .ndjson files in the folder {path}", path=str(path),
                                   hint="the folder of a $davinci-data-export (Group.ndjson, Patient.ndjson, …), "
                                        "or one Bundle .json file"))
        for f in files:
            yield from _ndjson(f)
    elif path.is_file():
        if path.name.lower().endswith(".ndjson"):
            yield from _ndjson(path)
        else:
            yield from _bundle(path)
    else:
        raise InputError(error("E0701", f"no such file or folder: {path}", path=str(path)))


def _ndjson(path: Path) -> Iterator[_Raw]:
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(error("E0701", f"cannot read {path}: {exc.strerror}", path=str(path))) from None
    with fh:
        for n, raw in enumerate(fh, start=1):
            pos = f"{path.name} line {n}"
            try:
                text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield pos, None, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})", None
                continue
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield pos, None, f"not JSON: {exc.msg} (column {exc.pos + 1})", None
                continue
            yield pos, obj, None, None


def _bundle(path: Path) -> Iterator[_Raw]:
    """The entries of a Bundle; the Bundle itself (without its entries' resources) is validated too."""
    p = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(error("E0701", f"cannot read {path}: {exc.strerror}", path=p)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(error("E0710", f"the file is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset "
                                        f"{exc.start} (line {line})", path=p)) from None
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(error("E0716", f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                               path=p, hint="a Bundle .json file, or a folder of .ndjson files")) from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InputError(error("E0716", "not a FHIR Bundle (no \"resourceType\": \"Bundle\")", path=p,
                               hint="a Bundle .json file, or a folder of .ndjson files"))
    entries = bundle.get("entry")
    get_class, invalid = _models()
    envelope = dict(bundle)
    if isinstance(entries, list):
        envelope["entry"] = [{k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
                             for e in entries]
    try:
        get_class("Bundle").model_validate(envelope)
    except invalid as exc:
        raise InputError(error("E0716", f"invalid Bundle: {_summary(exc)}", path=p)) from None
    for n, entry in enumerate(entries or [], start=1):
        resource = entry.get("resource")
        problem = "the entry has no resource" if resource is None else None
        yield f"{path.name} entry {n}", resource, problem, entry.get("fullUrl")


def _load(path: Path) -> _Export:
    get_class, invalid = _models()
    ex = _Export()
    seen: dict[tuple[str, str], str] = {}
    for pos, obj, problem, full_url in _raw_resources(path):
        if problem is not None:
            ex.rejected.append((pos, problem))
            continue
        if not isinstance(obj, dict):
            ex.rejected.append((pos, "not a JSON object (a FHIR resource)"))
            continue
        kind = obj.get("resourceType")
        if not isinstance(kind, str) or not kind:
            ex.rejected.append((pos, "no resourceType: not a FHIR resource"))
            continue
        rid = obj.get("id") if isinstance(obj.get("id"), str) else None
        if kind not in USED_TYPES:
            ex.counts[kind] = ex.counts.get(kind, 0) + 1
            continue
        ex.types_seen.add(kind)
        if kind == "Group":
            group = _load_group(obj, pos, get_class, invalid, ex)
            if group is not None:
                ex.groups.append(group)
                ex.counts["Group"] = ex.counts.get("Group", 0) + 1
            continue
        try:
            model = get_class(kind).model_validate(obj)
        except invalid as exc:
            ex.rejected.append((pos, f"invalid {kind}: {_summary(exc)}"))
            if rid:
                ex.bad[(kind, rid)] = f"is invalid ({pos})"
            continue
        ex.counts[kind] = ex.counts.get(kind, 0) + 1
        if not model.id:
            ex.rejected.append((pos, f"the {kind} has no id, so nothing can reference it"))
            continue
        key = (kind, model.id)
        if key in seen:
            ex.rejected.append((pos, f"{kind}/{model.id} appears again (first at {seen[key]})"))
            ex.bad[key] = f"appears more than once ({seen[key]}, {pos})"
            continue
        seen[key] = pos
        ex.found[key] = (pos, model)
        if full_url:
            ex.full_urls[full_url] = key
    for key in ex.bad:
        ex.found.pop(key, None)
    return ex


def _load_group(obj: dict, pos: str, get_class, invalid, ex: _Export) -> _Group | None:
    """The Group without its members, then each member, validated by the library."""
    members = obj.get("member", [])
    envelope = {k: v for k, v in obj.items() if k != "member"}
    if not isinstance(members, list):
        envelope["member"] = members  # let the library say what is wrong with it
    try:
        group = get_class("Group").model_validate(envelope)
    except invalid as exc:
        ex.rejected.append((pos, f"invalid Group: {_summary(exc)}"))
        return None
    result = _Group(pos, group.id)
    member_class = get_class("GroupMember")
    for raw in members:
        try:
            result.members.append(member_class.model_validate(raw))
        except invalid as exc:
            result.members.append(_summary(exc))
    return result


# ───────────────────────────── members ─────────────────────────────

class _Reject(Exception):
    """This member cannot become a row; the message says why."""


def _ref_key(ex: _Export, reference: str | None) -> tuple[str, str] | None:
    """`Patient/p1`, `https://server/fhir/Patient/p1/_history/2` or a Bundle fullUrl -> (type, id)."""
    if not reference:
        return None
    if reference in ex.full_urls:
        return ex.full_urls[reference]
    parts = reference.strip().split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha() and parts[-1]:
        return parts[-2], parts[-1]
    return None


def _resolve(ex: _Export, reference: str | None, kinds: tuple[str, ...], what: str):
    """The referenced resource (type, model), or _Reject saying why it cannot be used.

    `what` names the reference in messages: "the member's", "the attributed provider"."""
    key = _ref_key(ex, reference)
    if key is None:
        raise _Reject(f"{what} reference {reference!r} cannot be followed (not Type/id, or a contained resource)"
                      if reference else f"{what} reference has no Type/id (an identifier alone cannot be followed)")
    label = f"{key[0]}/{key[1]}"
    if key[0] not in kinds:
        names = [("an " if k[0] in "AEIOU" else "a ") + k for k in kinds]
        either = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise _Reject(f"{what} {label} is not {either}")
    if key in ex.bad:
        raise _Reject(f"{what} {label} {ex.bad[key]}")
    if key not in ex.found:
        if key[0] not in ex.types_seen:
            ex.absent[key[0]] = ex.absent.get(key[0], 0) + 1
        raise _Reject(f"{what} {label} is not in the export")
    return key[0], ex.found[key][1]


def _extensions(member, url: str) -> list:
    return [e for e in (member.extension or []) if e.url == url]


def _typed(identifier, code: str) -> bool:
    t = identifier.type
    return bool(t and any(c.code == code and (c.system in (None, V2_0203)) for c in (t.coding or [])))


def _value(identifiers, *, system: str | None = None, code: str | None = None) -> str | None:
    for ident in identifiers or []:
        if not ident.value or not ident.value.strip():
            continue
        if (system is not None and ident.system == system) or (code is not None and _typed(ident, code)):
            return ident.value.strip()
    return None


def _npi(identifiers) -> str | None:
    return _value(identifiers, system=NPI_SYSTEM) or _value(identifiers, code="NPI")


def _tin(identifiers) -> str | None:
    return _value(identifiers, system=TIN_SYSTEM) or _value(identifiers, code="TAX")


def _practice_id(ex: _Export, member) -> str:
    found = _extensions(member, EXT_ATTRIBUTED_PROVIDER)
    if not found:
        raise _Reject("no attributed provider (extension ext-attributedProvider)")
    if len(found) > 1:
        raise _Reject(f"{len(found)} attributed providers (ext-attributedProvider); a member has one")
    ref = found[0].valueReference
    if ref is None:
        raise _Reject("the ext-attributedProvider extension has no valueReference")
    if not ref.reference and ref.identifier is not None:  # a logical reference: the provider's NPI or TIN
        ident = [ref.identifier]
        value = _npi(ident) or _tin(ident)
        if value:
            return value
        raise _Reject("the attributed provider's identifier is not an NPI or a TIN")
    kind, provider = _resolve(ex, ref.reference, ("Organization", "Practitioner", "PractitionerRole"),
                              "the attributed provider")
    label = f"{kind}/{provider.id}"
    if kind == "Organization":
        value = _npi(provider.identifier) or _tin(provider.identifier)
        if value:
            return value
        raise _Reject(f"the attributed provider {label} has no NPI or TIN identifier")
    if kind == "Practitioner":
        value = _npi(provider.identifier)
        if value:
            return value
        raise _Reject(f"the attributed provider {label} has no NPI identifier")
    # PractitionerRole: the practice is its organization, else the practitioner
    for target, kinds in ((provider.organization, ("Organization",)), (provider.practitioner, ("Practitioner",))):
        if target is None or not target.reference:
            continue
        _, resource = _resolve(ex, target.reference, kinds, f"the {kinds[0].lower()} of {label}")
        value = _npi(resource.identifier) or (_tin(resource.identifier) if kinds[0] == "Organization" else None)
        if value:
            return value
    raise _Reject(f"the attributed provider {label} names no Organization or Practitioner with an NPI or TIN")


def _coverage(ex: _Export, member, patient_key: tuple[str, str], pos: str):
    """The member's Coverage, or None (a missing or unusable one is a warning: it may not be needed)."""
    found = _extensions(member, EXT_COVERAGE_REFERENCE)
    if not found or found[0].valueReference is None or not found[0].valueReference.reference:
        return None
    try:
        _, coverage = _resolve(ex, found[0].valueReference.reference, ("Coverage",), "the member's")
    except _Reject as why:
        ex.warnings.append((pos, f"{why}; the member is read without it"))
        return None
    beneficiary = _ref_key(ex, coverage.beneficiary.reference if coverage.beneficiary else None)
    if beneficiary is not None and beneficiary != patient_key:
        raise _Reject(f"its Coverage/{coverage.id} is for {beneficiary[0]}/{beneficiary[1]}, "
                      f"not for the member's {patient_key[0]}/{patient_key[1]}")
    return coverage


def _member_id(patient, coverage) -> str:
    cov_ids = coverage.identifier if coverage is not None else None
    for ident in cov_ids or []:
        if _typed(ident, "MB") and ident.system:
            value = _value(patient.identifier, system=ident.system)
            if value:
                return value
    value = _value(patient.identifier, code="MB") or _value(cov_ids, code="MB")
    if value:
        return value
    raise _Reject("no member identifier: neither the Patient nor its Coverage has an identifier of type MB "
                  "(member number)")


def _day(value, *, end: bool) -> date | None:
    """A FHIR date or dateTime as a day: a dateTime's own date; `2011` / `2011-03` as the first day, or
    as an end its last day (FHIR: an end includes every time that matches it)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value)
    year, month = int(text[:4]), int(text[5:7]) if len(text) >= 7 else None
    if month is None:
        return date(year, 12, 31) if end else date(year, 1, 1)
    return date(year, month, calendar.monthrange(year, month)[1]) if end else date(year, month, 1)


def _row(ex: _Export, member, pos: str, today: date) -> dict[str, Any]:
    if member.inactive:
        raise _Reject("skipped: the member is marked inactive (Group.member.inactive = true)")
    entity = member.entity.reference if member.entity else None
    _, patient = _resolve(ex, entity, ("Patient",), "the member's")
    patient_key = ("Patient", patient.id)
    coverage = _coverage(ex, member, patient_key, pos)
    member_id = _member_id(patient, coverage)
    birth = patient.birthDate
    if birth is None:
        raise _Reject(f"Patient/{patient.id} has no birthDate")
    if not isinstance(birth, date):
        raise _Reject(f"Patient/{patient.id} has a birthDate without a day (a year or a month only)")
    if birth > today:
        raise _Reject(f"Patient/{patient.id} has a birth date after {today.isoformat()}")
    practice_id = _practice_id(ex, member)
    gender = patient.gender
    if gender is not None and gender not in SEX:
        ex.warnings.append((pos, f"Patient/{patient.id}: gender {gender!r} is not a FHIR AdministrativeGender "
                                 "code; sex is left empty"))
    period = member.period if member.period is not None and (member.period.start or member.period.end) else (
        coverage.period if coverage is not None else None)
    start = _day(period.start, end=False) if period is not None else None
    stop = _day(period.end, end=True) if period is not None else None
    if start is not None and stop is not None and stop < start:
        which = "Group.member.period" if period is member.period else f"Coverage/{coverage.id} period"
        raise _Reject(f"{which} ends before it starts")
    if period is None:
        ex.warnings.append((pos, "no Group.member.period and no Coverage.period: enrolled open-ended"))
    death = _day(patient.deceasedDateTime, end=False)
    if death is not None and start is not None and death < start:
        raise _Reject(f"Patient/{patient.id} died (deceasedDateTime) before the enrolment starts")
    if death is not None and (stop is None or death < stop):
        ex.warnings.append((pos, f"Patient/{patient.id} died during the period: enrolled_to is the date of death"))
        stop = death
    elif patient.deceasedBoolean:
        ex.warnings.append((pos, f"Patient/{patient.id} is marked deceased without a date: the period is kept"))
    return {"member_id": member_id, "practice_id": practice_id, "birth_date": birth,
            "sex": SEX.get(gender or "unknown"), "enrolled_from": start, "enrolled_to": stop}


def read_attribution(path: str | os.PathLike, *, today: date | None = None) -> Reading:
    """Read an ATR attribution list (a folder of NDJSON files, or one Bundle JSON file); see the module doc."""
    src = Path(path)
    ex = _load(src)
    if not ex.groups:
        raise InputError(error("E0701", "the export has no usable Group resource (the attribution list)",
                               path=str(src), notes=[Note(f"{p}: {r}") for p, r in ex.rejected[:REPORT_LIMIT]],
                               hint="a $davinci-data-export writes the list to Group.ndjson"))
    today = today or date.today()
    rows: list[dict[str, Any]] = []
    first: dict[str, str] = {}
    patients: set[tuple[str, str]] = set()
    count = rejected = 0
    for group in ex.groups:
        for n, member in enumerate(group.members, start=1):
            count += 1
            pos = group.member_position(n)
            if isinstance(member, str):
                ex.rejected.append((pos, f"invalid member: {member}"))
                rejected += 1
                continue
            key = _ref_key(ex, member.entity.reference if member.entity else None)
            if key is not None:
                patients.add(key)
            try:
                row = _row(ex, member, pos, today)
            except _Reject as why:
                ex.rejected.append((pos, str(why)))
                rejected += 1
                continue
            if row["member_id"] in first:
                ex.rejected.append((pos, f"the same member identifier is already read from {first[row['member_id']]} "
                                         "(one row per member)"))
                rejected += 1
                continue
            first[row["member_id"]] = pos
            rows.append(row)
    # A type with no resource at all is one missing file (or a filtered export), not many faults: said
    # once, before the members it cost.
    ex.warnings[:0] = [(src.name, f"the export has no {kind} resource"
                                  + (f" (no {kind}.ndjson file)" if src.is_dir() else "")
                                  + f": {n:,} reference{'s' if n != 1 else ''} to one cannot be followed")
                       for kind, n in sorted(ex.absent.items())]
    outside = sum(1 for key in ex.found if key[0] == "Patient" and key not in patients)
    order = {t: i for i, t in enumerate(USED_TYPES)}
    counts = dict(sorted(ex.counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    return Reading(str(src), tuple(rows), tuple(ex.rejected), tuple(ex.warnings), counts, len(ex.groups), count,
                   rejected, outside, tuple(sorted(ex.absent)))


# ───────────────────────────── writing ─────────────────────────────

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def write_members(reading: Reading, out: str | os.PathLike, fmt: str | None = None) -> None:
    """The members rows as CSV or Parquet, written atomically (complete or not at all)."""
    _, kind = output_format(os.fspath(out), fmt, FORMATS, "csv")
    with atomic_path(out) as tmp:
        if kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            types = {"birth_date": pa.date32(), "enrolled_from": pa.date32(), "enrolled_to": pa.date32()}
            table = pa.table({c: pa.array([r[c] for r in reading.members], type=types.get(c, pa.string()))
                              for c in MEMBER_COLUMNS})
            pq.write_table(table, tmp)
        else:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(MEMBER_COLUMNS)
            for r in reading.members:
                writer.writerow(["" if r[c] is None else r[c].isoformat() if isinstance(r[c], date) else r[c]
                                 for c in MEMBER_COLUMNS])
            tmp.write_text(buf.getvalue(), encoding="utf-8")


def from_atr(path: str | os.PathLike, out: str | os.PathLike, fmt: str | None = None, *,
             today: date | None = None) -> Reading:
    """Read the attribution list and write its members table; E0702 (nothing written) if no member is usable."""
    output_format(os.fspath(out), fmt, FORMATS, "csv")  # a bad -o is reported before any work
    require_fhir_extra()
    reading = read_attribution(path, today=today)
    if not reading.members:
        raise InputError(error(
            "E0702", f"no member could be read from the attribution list ({reading.group_members} group members, "
                     f"{reading.members_rejected} rejected); nothing is written", path=str(path),
            notes=[Note(f"{p}: {r}") for p, r in reading.rejected[:REPORT_LIMIT]],
            hint=(f"the export has no {' and no '.join(reading.absent)} resource: add "
                  + ", ".join(f"{kind}.ndjson" for kind in reading.absent) + " to the folder")
            if reading.absent and Path(path).is_dir() else None))
    write_members(reading, out, fmt)
    return reading
