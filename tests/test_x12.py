"""The X12 834 and 820 readers (capdsl/data/x12.py): the bundled samples' exact rows, spoiled copies whose
rejected records are reported with their positions, the mapping rules one by one, and the `panel from-834`
and `panel from-820` commands end to end."""

from __future__ import annotations

import csv
import io
import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("pyx12")

from capdsl.data.x12 import (  # noqa: E402
    MEMBER_COLUMNS, REMITTANCE_COLUMNS, Rejection, from_834, from_820, read_820, read_834,
)
from capdsl.errors import CapError  # noqa: E402
from capdsl.tools.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "x12"
JAN = SAMPLES / "members_2011-01.834"
FEB = SAMPLES / "members_2011-02.834"
REMIT = SAMPLES / "remittance_2011-02.820"

COLUMNS = list(MEMBER_COLUMNS)
JAN_ROWS = [
    ("M90000001", "P00000", "1951-07-14", "M", "2010-06-01", ""),
    ("M90000002", "P00000", "1962-11-26", "F", "2011-01-01", ""),
    ("M90000003", "P00001", "1987-05-23", "M", "2009-03-01", ""),
    ("M90000004", "P00001", "2008-09-30", "F", "2009-03-01", ""),  # a dependent: NM1*IL ZZ
    ("M90000005", "P00001", "1940-02-29", "M", "2005-01-01", ""),
    ("M90000006", "P00002", "1975-12-31", "", "2010-01-01", ""),  # DMG03 U -> empty
    ("M90000007", "P00002", "1999-04-15", "F", "2010-09-01", "2011-06-30"),
    ("M90000008", "P00002", "1968-08-08", "M", "2011-01-15", ""),
]
FEB_ROWS = [
    ("M90000001", "P00000", "1951-07-14", "M", "2010-06-01", ""),
    ("M90000002", "P00000", "1962-11-26", "F", "2011-01-01", ""),
    ("M90000009", "P00000", "1990-10-10", "F", "2011-01-01", ""),  # retro add (021) back to January
    ("M90000003", "P00001", "1987-05-23", "M", "2009-03-01", ""),
    ("M90000004", "P00001", "2008-09-30", "F", "2009-03-01", ""),
    ("M90000005", "P00001", "1940-02-29", "M", "2005-01-01", "2011-01-15"),  # back-dated termination (024)
    ("M90000006", "P00002", "1957-12-31", "", "2010-01-01", ""),  # birth date corrected (001, loop 2100B)
    ("M90000007", "P00002", "1999-04-15", "F", "2010-09-01", "2011-06-30"),
    ("M90000008", "P00002", "1968-08-08", "M", "2011-01-15", ""),
]


def rows(reading) -> list[tuple]:
    return [tuple(m[c] for c in COLUMNS) for m in reading.members]


def segments(path: Path) -> list[str]:
    """The sample's segments (one per line, `~`-terminated), for making spoiled copies."""
    return [s for s in path.read_text().split("~\n") if s]


def write_x12(path: Path, segs: list[str]) -> Path:
    """Segments back into a file, with every SE01 (the transaction set's segment count) recounted."""
    out, count = [], 0
    for s in segs:
        if s.startswith("ST*"):
            count = 0
        count += 1
        if s.startswith("SE*"):
            s = f"SE*{count}*" + s.split("*")[2]
        out.append(s)
    path.write_text("~\n".join(out) + "~\n")
    return path


def spoil(tmp_path: Path, source: Path, edit, name: str = "spoiled.x12") -> Path:
    segs = segments(source)
    return write_x12(tmp_path / name, edit(segs))


def member_block(segs: list[str], member_id: str) -> tuple[int, int]:
    """(first, end) indexes of the loop 2000 whose REF*0F / NM1 names member_id."""
    starts = [i for i, s in enumerate(segs) if s.startswith("INS*")] + [next(i for i, s in enumerate(segs)
                                                                          if s.startswith("SE*"))]
    for a, b in zip(starts, starts[1:]):
        if any(member_id in s for s in segs[a:b]):
            return a, b
    raise AssertionError(member_id)


# ───────────────────────────── the samples ─────────────────────────────

def test_january_834_exact_rows():
    r = read_834(JAN)
    assert rows(r) == JAN_ROWS
    assert r.rejected == [] and r.warnings == []
    assert (r.kind, r.transactions, r.records, r.maintenance) == ("834", 1, 8, {"030": 8})


def test_february_834_retro_add_termination_and_correction():
    r = read_834(FEB)
    assert rows(r) == FEB_ROWS
    assert r.rejected == [] and r.warnings == []
    assert r.maintenance == {"030": 6, "021": 1, "024": 1, "001": 1}
    assert r.corrections == [{"member_id": "M90000006", "field": "birth_date", "old": "1975-12-31",
                              "new": "1957-12-31", "position": "segment 67 (loop 2000, line 69)"}]


def test_820_sample_exact_rows():
    r = read_820(REMIT)
    assert r.rejected == [] and r.warnings == []
    assert (r.kind, r.transactions, r.records, r.payees) == ("820", 3, 10, ["P00000", "P00001", "P00002"])
    got = [(x["practice_id"], x["member_id"], x["month"], x["line"], x["amount"]) for x in r.remittance]
    d = Decimal
    assert got == [
        ("P00000", "M90000001", "2011-02", "capitation", d("100.00")),
        ("P00000", "M90000001", "2011-02", "withhold", d("-10.00")),
        ("P00000", "M90000002", "2011-02", "capitation", d("100.00")),
        ("P00000", "M90000002", "2011-02", "withhold", d("-10.00")),
        # the retro add's January, paid as an adjustment of an earlier payment (loop 2200B)
        ("P00000", "M90000009", "2011-02", "adjustment:53", d("90.00")),
        ("P00000", "M90000009", "2011-02", "capitation", d("100.00")),
        ("P00000", "M90000009", "2011-02", "withhold", d("-10.00")),
        ("P00001", "M90000003", "2011-02", "capitation", d("110.00")),  # overpaid
        ("P00001", "M90000003", "2011-02", "withhold", d("-10.00")),
        ("P00001", "M90000004", "2011-02", "capitation", d("100.00")),
        ("P00001", "M90000004", "2011-02", "withhold", d("-10.00")),
        ("P00001", "M90000005", "2011-02", "capitation", d("100.00")),  # terminated 2011-01-15, still paid
        ("P00001", "M90000005", "2011-02", "withhold", d("-10.00")),
        ("P00001", "M90000099", "2011-02", "capitation", d("100.00")),  # in neither 834
        ("P00001", "M90000099", "2011-02", "withhold", d("-10.00")),
        ("P00002", "M90000006", "2011-02", "capitation", d("100.00")),
        ("P00002", "M90000006", "2011-02", "withhold", d("-10.00")),
        ("P00002", "M90000007", "2011-02", "capitation", d("80.00")),  # underpaid
        ("P00002", "M90000007", "2011-02", "withhold", d("-10.00")),
        ("P00002", "M90000008", "2011-02", "capitation", d("100.00")),
        ("P00002", "M90000008", "2011-02", "withhold", d("-10.00")),
    ]
    assert r.remittance[0]["reference"] == "TRN CAP110205000, RMR IK CAP-2011-02, segment 9 (loop 2300B, line 11)"
    assert r.remittance[4]["reference"] == "TRN CAP110205000, ADX 53, segment 25 (loop 2200B, line 27)"


def test_820_row_schema_is_what_reconcile_reads():
    for row in read_820(REMIT).remittance:
        assert tuple(row) == REMITTANCE_COLUMNS
        assert isinstance(row["amount"], Decimal)
        assert len(row["month"]) == 7 and row["month"][4] == "-"
        assert all(isinstance(row[c], str) for c in REMITTANCE_COLUMNS if c != "amount")


def test_the_samples_tell_one_story():
    """The 820 pays the February members of the 834s, plus one it does not know."""
    paid = {x["member_id"] for x in read_820(REMIT).remittance}
    feb = {m["member_id"] for m in read_834(FEB).members}
    jan = {m["member_id"] for m in read_834(JAN).members}
    assert paid - feb == {"M90000099"}
    assert feb - jan == {"M90000009"}
    practices = {line.split(",")[0] for line in (ROOT / "examples" / "practices.csv").read_text().splitlines()[1:]}
    assert {m["practice_id"] for m in read_834(FEB).members} <= practices


def test_samples_are_valid_for_pyx12s_own_validator():
    import pyx12.params
    import pyx12.x12n_document

    for path in (JAN, FEB, REMIT):
        assert pyx12.x12n_document.x12n_document(pyx12.params.ParamsBase(), str(path), None, None), path


def test_rejection_is_a_position_reason_pair():
    r = Rejection("segment 3 (loop 2000, line 5)", "why")
    position, reason = r
    assert (position, reason) == ("segment 3 (loop 2000, line 5)", "why")


# ───────────────────────────── spoiled 834s ─────────────────────────────

def test_member_without_dmg_is_rejected_with_its_position(tmp_path):
    def edit(segs):
        a, b = member_block(segs, "M90000002")
        return [s for i, s in enumerate(segs) if not (a <= i < b and s.startswith("DMG*"))]

    r = read_834(spoil(tmp_path, JAN, edit))
    assert [m["member_id"] for m in r.members] == [x[0] for x in JAN_ROWS if x[0] != "M90000002"]
    assert len(r.rejected) == 1
    position, reason = r.rejected[0]
    assert position == "segment 19 (loop 2000, line 21)"
    assert "has no birth date (DMG in loop 2100A)" in reason
    assert "M90000002" not in reason and "id:" in reason  # member ids stay out of messages


def test_bad_birth_date_is_reported_by_pyx12_with_the_segment_and_hidden(tmp_path):
    path = spoil(tmp_path, JAN, lambda segs: [s.replace("DMG*D8*19621126", "DMG*D8*19621131") for s in segs])
    r = read_834(path)
    assert "M90000002" not in [m["member_id"] for m in r.members] and len(r.members) == 7
    assert r.rejected == [Rejection(
        "segment 23 (loop 2100A, line 25)",
        'Data element "Member Birth Date" (DMG02) contains an invalid date (value hidden; --show-ids shows it); '
        "member id:795d01 (its loop 2000 starts at segment 19, line 21) is not read")]
    shown = read_834(path, show_ids=True).rejected[0].reason
    assert "(19621131)" in shown and "'M90000002'" in shown


def test_bad_coverage_date(tmp_path):
    r = read_834(spoil(tmp_path, JAN, lambda segs: [s.replace("DTP*348*D8*20110101", "DTP*348*D8*20111301")
                                                    for s in segs]))
    assert len(r.members) == 7
    [(position, reason)] = r.rejected
    assert position == "segment 25 (loop 2300, line 27)"
    assert "invalid date" in reason and "is not read" in reason


def test_truncated_834(tmp_path):
    path = tmp_path / "truncated.834"
    path.write_text(JAN.read_text()[:1500])  # ends inside the fifth member's NM1*P3
    r = read_834(path)
    assert rows(r) == JAN_ROWS[:4]
    got = dict(r.rejected)
    assert got["segment 48 (loop 2000, line 50)"].startswith("the file ends inside this member loop (no SE")
    assert got["segment 56 (line 58)"].startswith("the file ends inside a segment ('NM1…'")
    ends = [reason for position, reason in r.rejected if position == "end of file (line 58)"]
    assert any("(SE=0001) missing" in x for x in ends) and any("(IEA=000000101) missing" in x for x in ends)


def test_an_empty_segment_stops_pyx12_and_is_reported(tmp_path):
    path = tmp_path / "gap.834"
    path.write_text(JAN.read_text().replace("REF*1L*GRP-CAP-2011~\nNM1*IL*1*MILLER", "~\nREF*1L*GRP-CAP-2011~\n"
                                                                                      "NM1*IL*1*MILLER"))
    r = read_834(path)
    assert rows(r) == JAN_ROWS[:1]
    assert dict(r.rejected)["segment 21 (line 23)"] == ("an empty segment (two segment terminators in a row) "
                                                        "stops the reading: the 67 segments after it are not read")


def test_a_code_the_guide_does_not_have(tmp_path):
    def edit(segs):
        a, _ = member_block(segs, "M90000002")
        return segs[:a] + [segs[a].replace("*030*", "*099*")] + segs[a + 1:]

    r = read_834(spoil(tmp_path, JAN, edit))
    assert len(r.members) == 7
    [(position, reason)] = r.rejected
    assert position == "segment 19 (loop 2000, line 21)"
    assert reason.startswith("(099) is not a valid code for Maintenance Type Code (INS03); member id:795d01")


def test_pcp_change_takes_the_latest_pla_date_and_reinstatement_reopens(tmp_path):
    def edit(segs):
        segs = list(segs)
        a, b = member_block(segs, "M90000001")
        segs[b:b] = ["PLA*2*1P*20100601**14", "LX*2", "NM1*P3*2*RIVERSIDE PRIMARY CARE*****SV*P00001*25",
                     "PLA*2*1P*20110101**14"]
        a, b = member_block(segs, "M90000007")
        segs[a] = segs[a].replace("*030*", "*025*")
        return [s for i, s in enumerate(segs) if not (a <= i < b and s.startswith("DTP*349"))]

    r = read_834(spoil(tmp_path, JAN, edit))
    assert r.rejected == []
    got = {m["member_id"]: m for m in r.members}
    assert got["M90000001"]["practice_id"] == "P00001" and got["M90000007"]["enrolled_to"] == ""


def test_two_pcps_without_dates_are_ambiguous(tmp_path):
    def edit(segs):
        segs = list(segs)
        a, b = member_block(segs, "M90000001")
        segs[b:b] = ["LX*2", "NM1*P3*2*RIVERSIDE PRIMARY CARE*****SV*P00001*25"]
        return segs

    r = read_834(spoil(tmp_path, JAN, edit))
    [(position, reason)] = r.rejected
    assert position == "segment 8 (loop 2000, line 10)"
    assert "names 2 primary care providers (P00000, P00001) and no PLA effective date" in reason


def test_missing_mandatory_segment_belongs_to_its_member(tmp_path):
    """pyx12 notices a missing REF*0F only at the next segment; the member whose loop lacks it is rejected."""
    def edit(segs):
        a, b = member_block(segs, "M90000002")
        return [s for i, s in enumerate(segs) if not (a <= i < b and s.startswith("REF*0F"))]

    r = read_834(spoil(tmp_path, JAN, edit))
    assert len(r.members) == 7
    reasons = " | ".join(reason for _, reason in r.rejected)
    assert 'Mandatory segment "Subscriber Identifier" (REF) missing' in reasons
    assert "needs REF*0F" in reasons


def test_unknown_segment_rejects_its_member(tmp_path):
    r = read_834(spoil(tmp_path, JAN, lambda segs: [("XYZ*1*2" if s.startswith("N3*400") else s) for s in segs]))
    assert "M90000003" not in [m["member_id"] for m in r.members] and len(r.members) == 7
    [(position, reason)] = r.rejected
    assert position.endswith("line 34)") and "Segment XYZ" in reason and "not found" in reason


def test_dependent_without_its_own_id_and_member_without_a_pcp(tmp_path):
    def edit(segs):
        segs = [s.replace("****ZZ*M90000004", "") for s in segs]  # the dependent keeps only REF*0F
        a, b = member_block(segs, "M90000008")
        return [s for i, s in enumerate(segs) if not (a <= i < b and (s.startswith("LX*") or s.startswith("NM1*P3")))]

    r = read_834(spoil(tmp_path, JAN, edit))
    assert [m["member_id"] for m in r.members] == ["M90000001", "M90000002", "M90000003", "M90000005",
                                                   "M90000006", "M90000007"]
    reasons = [reason for _, reason in r.rejected]
    assert any("a dependent (INS01 N) needs its own NM1*IL NM109 (NM108 ZZ) or REF*23" in x for x in reasons)
    assert any("has no primary care provider (NM1*P3 in loop 2310)" in x for x in reasons)


def test_cancellation_and_termination_without_end_date(tmp_path):
    def edit(segs):
        segs = list(segs)
        a, b = member_block(segs, "M90000002")  # cancelled: ends before it begins
        segs.insert(next(i for i in range(a, b) if segs[i].startswith("DTP*348")) + 1, "DTP*349*D8*20101231")
        segs[a] = segs[a].replace("*030*", "*024*")
        a, b = member_block(segs, "M90000003")  # terminated, but no end date anywhere
        segs[a] = segs[a].replace("*030*", "*024*")
        return segs

    r = read_834(spoil(tmp_path, JAN, edit))
    assert len(r.members) == 6
    reasons = [reason for _, reason in r.rejected]
    assert any("is cancelled: the coverage ends (2010-12-31) before it begins (2011-01-01)" in x for x in reasons)
    assert any("a cancellation or termination (INS03 024) without an end date" in x for x in reasons)


def test_death_date_ends_the_enrolment(tmp_path):
    r = read_834(spoil(tmp_path, JAN, lambda segs: [
        s.replace("INS*Y*18*030**A***FT", "INS*Y*18*030**A***FT***D8*20110120") if i == 9 else s
        for i, s in enumerate(segs)]))
    assert r.rejected == []
    assert r.members[0]["member_id"] == "M90000001" and r.members[0]["enrolled_to"] == "2011-01-20"


def test_a_member_in_two_loops_is_merged_in_file_order(tmp_path):
    """An addition, then a termination of the same member later in the file: the termination wins."""
    def edit(segs):
        a, b = member_block(segs, "M90000001")
        term = [s.replace("*030*", "*024*") for s in segs[a:b]]
        term.insert(term.index(next(s for s in term if s.startswith("DTP*348"))) + 1, "DTP*349*D8*20110131")
        se = next(i for i, s in enumerate(segs) if s.startswith("SE*"))
        return segs[:se] + term + segs[se:]

    r = read_834(spoil(tmp_path, JAN, edit))
    assert r.rejected == []
    assert r.members[0] == {"member_id": "M90000001", "practice_id": "P00000", "birth_date": "1951-07-14",
                            "sex": "M", "enrolled_from": "2010-06-01", "enrolled_to": "2011-01-31"}
    assert r.maintenance == {"030": 8, "024": 1}
    assert any("appear in more than one loop 2000" in w for w in r.warnings)


def test_change_file_is_flagged(tmp_path):
    r = read_834(spoil(tmp_path, JAN, lambda segs: [s.replace("****RX", "****2") for s in segs]))
    assert any("change file (BGN08 2)" in w for w in r.warnings)


def test_practices_table_checks_and_maps_npis(tmp_path):
    r = read_834(FEB, practices=["P00000", "P00002"])
    assert {m["practice_id"] for m in r.members} == {"P00000", "P00002"}
    assert len(r.rejected) == 3
    assert all("practice 'P00001' (NM1*P3 at segment" in reason and "is not in the practices table" in reason
               for _, reason in r.rejected)
    # the PCP named by NPI (NM108 XX), mapped through the practices file's npi column
    path = spoil(tmp_path, JAN, lambda segs: [s.replace("*SV*P00001*25", "*XX*1234567893*25") for s in segs])
    table = tmp_path / "practices.csv"
    table.write_text("practice_id,npi,weekly_hours\nP00000,,30\nP00001,1234567893,30\nP00002,,30\n")
    assert rows(read_834(path, practices=table)) == JAN_ROWS
    assert {m["practice_id"] for m in read_834(path).members} == {"P00000", "1234567893", "P00002"}
    assert rows(read_834(JAN, practices=ROOT / "examples" / "practices.csv")) == JAN_ROWS


def test_practices_file_problems(tmp_path):
    bad = tmp_path / "p.csv"
    bad.write_text("id,npi\nP00000,1\n")
    with pytest.raises(CapError) as info:
        read_834(JAN, practices=bad)
    assert info.value.code == "E0703"
    with pytest.raises(CapError) as info:
        read_834(JAN, practices=tmp_path / "nope.csv")
    assert info.value.code == "E0701"


# ───────────────────────────── files that are not 834s ─────────────────────────────

@pytest.mark.parametrize("content, code, words", [
    ("", "E0702", "the file is empty"),
    ("   \n", "E0702", "the file is empty"),
    ("member_id,practice_id\nM1,P1\n", "E0724", "not an X12 interchange"),
    ("ISA*00*short~", "E0724", "not an X12 interchange"),
])
def test_files_that_are_not_x12(tmp_path, content, code, words):
    path = tmp_path / "f.834"
    path.write_text(content)
    with pytest.raises(CapError) as info:
        read_834(path)
    assert info.value.code == code and words in str(info.value)


def test_wrong_transaction_set_names_the_right_command():
    with pytest.raises(CapError) as info:
        read_834(REMIT)
    assert info.value.code == "E0724"
    assert "this is an X12 820 (GS01 RA, GS08 005010X218), not an 834" in info.value.render()
    assert "capdsl panel from-820" in info.value.render()
    with pytest.raises(CapError) as info:
        read_820(JAN)
    assert "capdsl panel from-834" in info.value.render()


def test_an_unsupported_version(tmp_path):
    path = tmp_path / "old.834"
    path.write_text(JAN.read_text().replace("005010X220A1", "005010X220"))
    with pytest.raises(CapError) as info:
        read_834(path)
    assert info.value.code == "E0724" and "GS08" in info.value.render()


def test_missing_file_and_folder_and_not_utf8(tmp_path):
    for path in (tmp_path / "none.834", tmp_path):
        with pytest.raises(CapError) as info:
            read_834(path)
        assert info.value.code == "E0701"
    latin = tmp_path / "latin1.834"
    latin.write_bytes(JAN.read_bytes().replace(b"NOVAK", "NOVÁK".encode("latin-1")))
    with pytest.raises(CapError) as info:
        read_834(latin)
    assert info.value.code == "E0710" and "byte 0xc1" in str(info.value) and "(line 13)" in str(info.value)


def test_missing_pyx12_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyx12", None)
    with pytest.raises(CapError) as info:
        read_834(JAN)
    assert info.value.code == "E0741" and "pip install 'capdsl[x12]'" in info.value.render()


def test_pyx12_before_4_is_refused(monkeypatch):
    """pyx12 3's context reader validates no elements: reading with it would drop the checks silently."""
    import pyx12

    monkeypatch.setattr(pyx12, "__version__", "3.1.0")
    with pytest.raises(CapError) as info:
        read_820(REMIT)
    assert info.value.code == "E0741" and "pyx12 4 or later, not 3.1.0" in str(info.value)


def test_where_pyx12_itself_fails_the_rest_is_reported(tmp_path):
    """pyx12 raises (a ValueError) on an RD8 range with two dashes instead of reporting it: what was read
    before stays, the rest is listed as not read."""
    text = REMIT.read_text()
    cut = text.index("ENT*3*2J*EI*M90000009")
    path = tmp_path / "r.820"
    path.write_text(text[:cut] + text[cut:].replace("RD8*20110201-20110228", "RD8*20110201-2011-0228", 1))
    r = read_820(path)
    assert [x["member_id"] for x in r.remittance] == ["M90000001"] * 2 + ["M90000002"] * 2
    position, reason = r.rejected[-1]
    assert position == "segment 28 (line 30)"  # the DTM
    assert reason.startswith("pyx12 cannot go on from this segment (ValueError:")
    assert reason.endswith("it and the 76 segments after it are not read")
    assert any("the file ends inside this remittance loop" in x for _, x in r.rejected)


# ───────────────────────────── 820 rules ─────────────────────────────

HEADER = ["BPR*I*{total}*C*ACH*CCP*01*071000013*DA*4412000761*1370000002**01*071000039*DA*77205000*20110205",
          "TRN*1*TRACE1*1370000002", "DTM*582****RD8*20110201-20110228",
          "N1*PE*PRAIRIE FAMILY PRACTICE*EQ*P00000", "N1*PR*EXAMPLE HEALTH PLAN*FI*370000002"]


def x820(tmp_path: Path, body: list[str], total: str, header: list[str] | None = None) -> Path:
    segs = [REMIT.read_text().split("~\n")[i] for i in (0, 1)]
    segs += ["ST*820*0001*005010X218", *[h.format(total=total) for h in (header or HEADER)], *body, "SE*0*0001",
             "GE*1*201", "IEA*1*000000201"]
    return write_x12(tmp_path / "r.820", segs)


def test_820_organisation_summary_current_adjustments_and_member_level_practice(tmp_path):
    path = x820(tmp_path, [
        "ENT*1*2L*FI*370000099", "RMR*IK*SUMMARY**25.00", "REF*ZZ*care_management",
        "DTM*582****RD8*20110201-20110228",
        "ENT*2*2J*EI*M90000001", "RMR*IK*CAP**100.00", "REF*LU*P00002", "REF*ZZ*capitation",
        "DTM*582****RD8*20110201-20110228", "ADX*-5.00*H6",
        "ENT*3*2J*EI*M90000002", "RMR*IK*CAP**100.00",  # no line, no DTM: the header's month
    ], total="220.00")
    r = read_820(path)
    assert r.rejected == [] and r.warnings == []
    got = [(x["practice_id"], x["member_id"], x["month"], x["line"], x["amount"]) for x in r.remittance]
    assert got == [("P00000", "", "2011-02", "care_management", Decimal("25.00")),
                   ("P00002", "M90000001", "2011-02", "capitation", Decimal("100.00")),
                   ("P00002", "M90000001", "2011-02", "adjustment:H6", Decimal("-5.00")),
                   ("P00000", "M90000002", "2011-02", "", Decimal("100.00"))]


def test_820_rows_that_cannot_be_placed(tmp_path):
    header = [h for h in HEADER if not h.startswith("DTM")]
    header[2] = "N1*PE*PRAIRIE FAMILY PRACTICE"  # a payee without an identifier
    path = x820(tmp_path, [
        "ENT*1*2J*EI*M90000001", "RMR*IK*CAP**100.00", "REF*LU*P00001",
        "DTM*582****RD8*20110101-20110331",  # a quarter
        "ENT*2*2J*EI*M90000002", "RMR*IK*CAP**100.00", "REF*LU*P00001",  # placed, but no month anywhere
        "ENT*3*2J*EI*M90000003", "RMR*IK*CAP**100.00", "REF*LU*P00001", "DTM*582****RD8*20110201-20110228",
        "ENT*4*2J*EI*M90000004", "RMR*IK*CAP**100.00", "DTM*582****RD8*20110201-20110228",  # no practice
    ], total="400.00", header=header)
    r = read_820(path)
    assert [(x["practice_id"], x["member_id"], x["month"]) for x in r.remittance] == [
        ("P00001", "M90000003", "2011-02")]
    reasons = [reason for _, reason in r.rejected]
    assert len(reasons) == 3
    assert "the coverage period 2011-01-01 to 2011-03-31 spans more than one month" in reasons[0]
    assert any("no coverage month (DTM*582 in the detail or in the header)" in x for x in reasons)
    assert any("no practice (the payee N1*PE has no N104 identifier and the detail no REF*LU)" in x
               for x in reasons)
    assert all("id:" in x for x in reasons)


def test_820_invalid_amount_rejects_the_members_remittance(tmp_path):
    path = x820(tmp_path, ["ENT*1*2J*EI*M90000001", "RMR*IK*CAP**1OO.00", "REF*ZZ*capitation",
                           "ENT*2*2J*EI*M90000002", "RMR*IK*CAP**100.00"], total="100.00")
    r = read_820(path)
    assert [x["member_id"] for x in r.remittance] == ["M90000002"]
    [(position, reason)] = r.rejected
    assert position == "segment 8 (loop 2300B, line 10)"
    assert "RMR04" in reason and "the remittance of member id:" in reason and "is not read" in reason


def test_820_envelope_and_header_problems(tmp_path):
    """A wrong SE count is listed and costs nothing; an invalid header segment costs its set's remittances."""
    text = REMIT.read_text()
    path = tmp_path / "se.820"
    path.write_text(text.replace("SE*32*0001", "SE*33*0001"))
    r = read_820(path)
    assert len(r.remittance) == 21
    assert r.rejected == [Rejection("segment 32 (SE, line 34)", "SE count of 33 for SE02=0001 is wrong. I count 32")]
    path.write_text(text.replace("N1*PE*RIVERSIDE PRIMARY CARE*EQ*P00001", "N1*PE*RIVERSIDE PRIMARY CARE*QQ*P00001"))
    r = read_820(path)
    assert {x["practice_id"] for x in r.remittance} == {"P00000", "P00002"}
    assert r.rejected[0][0] == "segment 5 (loop 1000A, line 39)" and "(QQ) is not a valid code" in r.rejected[0][1]
    assert len(r.rejected) == 5  # the N1, then each of the set's four remittances
    assert all("the header of the transaction set at segment 1 (ST, line 35) is invalid" in reason
               for _, reason in r.rejected[1:])


def test_820_balance_check(tmp_path):
    r = read_820(x820(tmp_path, ["ENT*1*2J*EI*M90000001", "RMR*IK*CAP**100.00"], total="150.00"))
    assert len(r.remittance) == 1
    assert r.warnings == ["transaction set at segment 1 (ST, line 3): BPR02 pays 150.00 but its RMR and ADX "
                          "amounts add up to 100.00"]


def test_truncated_820(tmp_path):
    path = tmp_path / "t.820"
    text = REMIT.read_text()
    path.write_text(text[:text.index("ENT*4*2J*EI*M90000099")])
    r = read_820(path)
    assert {x["member_id"] for x in r.remittance} == {"M90000001", "M90000002", "M90000009", "M90000003",
                                                       "M90000004"}
    got = dict(r.rejected)
    assert got["segment 23 (loop 2000B, line 57)"].startswith("the file ends inside this remittance loop")
    assert "Transaction Set Trailer" in got["end of file (line 65)"] or any(
        "Transaction Set Trailer" in reason for _, reason in r.rejected)
    assert r.warnings == ["transaction set at segment 1 (ST, line 35): BPR02 pays 370.00 but its RMR and ADX "
                          "amounts add up to 280.00"]


# ───────────────────────────── writing and the commands ─────────────────────────────

def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_from_834_end_to_end(tmp_path):
    out = tmp_path / "members.csv"
    result = invoke("panel", "from-834", FEB, "-o", out, "--practices", ROOT / "examples" / "practices.csv")
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == [",".join(COLUMNS)] + [",".join(r) for r in FEB_ROWS]
    assert result.stdout.splitlines()[:5] == [
        f"read {FEB}: X12 5010 834, 1 transaction set, 9 member loops",
        f"members written: 9 -> {out}",
        "maintenance (INS03): 001 change 1, 021 addition 1, 024 cancellation or termination 1, "
        "030 audit or compare 6",
        "birth dates corrected (loop 2100B): 1",
        "rejected: 0"]
    # what it wrote is a panel capdsl runs a contract on
    statement = invoke("eval", ROOT / "contracts" / "us_pmpm.cap", "--members", out, "--practices",
                       ROOT / "examples" / "practices.csv", "--period", "2011-02", "--format", "json", "--quiet")
    assert statement.exit_code == 0, statement.output
    capitation = {s["practice_id"]: next(x["amount"] for x in s["lines"] if x["id"] == "capitation")
                  for s in json.loads(statement.stdout)["statements"]}
    assert {k: Decimal(str(v)) for k, v in capitation.items() if k in ("P00000", "P00001", "P00002")} == {
        "P00000": Decimal("300.00"), "P00001": Decimal("200.00"), "P00002": Decimal("300.00")}


def test_cli_from_834_reports_rejected_and_json(tmp_path):
    path = spoil(tmp_path, JAN, lambda segs: [s.replace("DMG*D8*19621126", "DMG*D8*19621131") for s in segs])
    result = invoke("panel", "from-834", path, "-o", tmp_path / "m.csv", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 7 and report["records"] == 8 and report["output"] == str(tmp_path / "m.csv")
    assert report["rejected"][0]["position"] == "segment 23 (loop 2100A, line 25)"
    text = invoke("panel", "from-834", path, "-o", tmp_path / "m.csv").stdout
    assert "rejected: 1\n  segment 23 (loop 2100A, line 25): Data element" in text


def test_json_report_hides_corrected_birth_dates_unless_show_ids(tmp_path):
    hidden = json.loads(invoke("panel", "from-834", FEB, "-o", tmp_path / "m.csv", "--json").stdout)
    assert hidden["corrections"] == [{"member_id": "id:25cc9f", "field": "birth_date", "old": "(hidden)",
                                      "new": "(hidden)", "position": "segment 67 (loop 2000, line 69)"}]
    shown = json.loads(invoke("panel", "from-834", FEB, "-o", tmp_path / "m.csv", "--json", "--show-ids").stdout)
    assert shown["corrections"][0]["old"] == "1975-12-31" and shown["corrections"][0]["member_id"] == "M90000006"


def test_cli_from_820_to_stdout(tmp_path):
    result = invoke("panel", "from-820", REMIT, "-o", "-")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(table) == 21 and list(table[0]) == list(REMITTANCE_COLUMNS)
    assert table[0] == {"practice_id": "P00000", "member_id": "M90000001", "month": "2011-02",
                        "line": "capitation", "amount": "100.00",
                        "reference": "TRN CAP110205000, RMR IK CAP-2011-02, segment 9 (loop 2300B, line 11)"}
    assert "remittance rows written: 21 (total 980.00) -> -" in result.stderr
    assert "rejected: 0" in result.stderr and "read " not in result.stdout


def test_cli_parquet_outputs_are_typed(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert invoke("panel", "from-834", JAN, "-o", tmp_path / "m.parquet").exit_code == 0
    members = pq.read_table(tmp_path / "m.parquet")
    assert members.column_names == COLUMNS and members.schema.field("birth_date").type == pa.date32()
    assert members.column("sex").to_pylist()[5] is None
    assert invoke("panel", "from-820", REMIT, "-o", tmp_path / "r.parquet").exit_code == 0
    remit = pq.read_table(tmp_path / "r.parquet")
    assert remit.schema.field("amount").type == pa.decimal128(38, 2)
    assert sum(remit.column("amount").to_pylist()) == Decimal("980.00")


def test_cli_output_to_a_missing_folder(tmp_path):
    result = invoke("panel", "from-834", JAN, "-o", tmp_path / "no" / "m.csv")
    assert result.exit_code == 1 and "E0930" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "no").exists()
    result = invoke("panel", "from-820", REMIT, "-o", tmp_path / "r.xls")
    assert result.exit_code == 1 and "E0906" in result.output


def test_cli_nothing_read_is_exit_1_and_writes_nothing(tmp_path):
    path = spoil(tmp_path, JAN, lambda segs: [s for s in segs if not s.startswith("DMG*")])
    out = tmp_path / "m.csv"
    result = invoke("panel", "from-834", path, "-o", out)
    assert result.exit_code == 1 and not out.exists()
    assert "E0725" in result.output and "all 8 records were rejected" in result.output
    assert "segment 8 (loop 2000, line 10): member id:" in result.output
    assert result.output.count("has no birth date (DMG in loop 2100A)") == 8
    with pytest.raises(CapError) as info:
        from_834(path, out)
    assert info.value.code == "E0725"


def test_cli_bad_input_is_a_clear_error(tmp_path):
    result = invoke("panel", "from-834", REMIT, "-o", tmp_path / "m.csv")
    assert result.exit_code == 1 and "E0724" in result.output and "capdsl panel from-820" in result.output
    assert "Traceback" not in result.output
    result = invoke("panel", "from-820", tmp_path / "none.820", "-o", tmp_path / "r.csv")
    assert result.exit_code == 1 and "E0701" in result.output


def test_api_writers_are_atomic_and_return_the_reading(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("old\n")
    reading = from_820(REMIT, out)
    assert reading.output == str(out) and out.read_text().startswith("practice_id,member_id,month")
    bad = spoil(tmp_path, REMIT, lambda segs: [s for s in segs if not s.startswith("RMR*") and
                                               not s.startswith("ADX*")], name="empty.820")
    with pytest.raises(CapError):
        from_820(bad, out)
    assert out.read_text().startswith("practice_id,member_id,month")  # untouched


def test_help_has_examples():
    for command in ("from-834", "from-820"):
        result = invoke("panel", command, "--help")
        assert result.exit_code == 0 and f"capdsl panel {command} examples/x12/" in result.output


# ───────────────────────────── transaction sets in parallel ─────────────────────────────

import dataclasses  # noqa: E402

from capdsl.data import x12 as x12_module  # noqa: E402


@pytest.fixture
def parallel(monkeypatch):
    """Any file of several transaction sets is read by two processes; the list tells how many parts each
    reading used (False: it was read in one process)."""
    if not x12_module._FORK:
        pytest.skip("files are read in one process on this platform")
    monkeypatch.setattr(x12_module, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(x12_module, "MIN_PART_BYTES", 0)
    used: list = []
    real = x12_module._parallel_parts

    def spy(*args, **kwargs):
        parts = real(*args, **kwargs)
        used.append(len(parts) if parts is not None else False)
        return parts

    monkeypatch.setattr(x12_module, "_parallel_parts", spy)
    return used


def multi_set(tmp_path: Path, source: Path, copies: int, edit=None, name: str = "multi.x12") -> Path:
    """The source's transaction sets `copies` times over, each copy with its own member ids, ST02/SE02
    renumbered and GE01 recounted; `edit` spoils the segments before SE01 is recounted."""
    segs = segments(source)
    st = next(i for i, s in enumerate(segs) if s.startswith("ST*"))
    ge = next(i for i, s in enumerate(segs) if s.startswith("GE*"))
    out, n = segs[:st], 0
    for k in range(copies):
        for s in segs[st:ge]:
            s = s.replace("M9000000", f"M9{k}00000")
            if s.startswith("ST*"):
                n += 1
                s = "*".join(s.split("*")[:2] + [f"{n:04d}"] + s.split("*")[3:])
            elif s.startswith("SE*"):
                s = f"SE*0*{n:04d}"
            out.append(s)
    out += [f"GE*{n}*" + segs[ge].split("*")[2], *segs[ge + 1:]]
    return write_x12(tmp_path / name, edit(out) if edit else out)


def same(read, path: Path, **kwargs):
    serial, par = read(path, jobs=1, **kwargs), read(path, jobs=2, **kwargs)
    assert dataclasses.asdict(par) == dataclasses.asdict(serial)
    return serial


def test_parallel_reading_is_the_serial_reading_on_the_samples(parallel):
    assert rows(same(read_834, FEB)) == FEB_ROWS  # one transaction set: read in one process
    same(read_834, JAN, show_ids=True)
    r = same(read_820, REMIT)
    assert parallel == [False, False, 3]  # jobs=1 does not ask; only the 820 has several sets
    assert len(r.remittance) == 21 and r.transactions == 3


def test_positions_in_a_later_transaction_set_are_the_files(tmp_path, parallel):
    def edit(segs):
        sets = [i for i, s in enumerate(segs) if s.startswith("ST*")]
        out = list(segs)
        second, third = sets[1], sets[2]
        out[second:third] = [s.replace("DMG*D8*19621126", "DMG*D8*19621131").replace("N3*400", "XYZ*400")
                             for s in out[second:third]]
        a, b = member_block(out[third:], "M92000005")
        return out[:third + a] + [s for s in out[third + a:third + b] if not s.startswith("DMG*")] \
            + out[third + b:]

    path = multi_set(tmp_path, JAN, 4, edit)
    r = same(read_834, path)
    assert parallel == [4]
    assert r.transactions == 4 and r.records == 32 and len(r.members) == 29
    segs = segments(path)
    dmg = next(i for i, s in enumerate(segs) if s.startswith("DMG*D8*19621131"))
    st = max(i for i, s in enumerate(segs[:dmg]) if s.startswith("ST*"))
    position = f"segment {dmg - st + 1} (loop 2100A, line {dmg + 1})"
    assert position == "segment 23 (loop 2100A, line 110)"  # in the first set: segment 23, line 25
    assert [p for p, why in r.rejected if "Birth Date" in why] == [position]
    xyz = next(i for i, s in enumerate(segs) if s.startswith("XYZ*400"))
    assert any(p.endswith(f"line {xyz + 1})") for p, _ in r.rejected)
    assert any("has no birth date" in why for _, why in r.rejected)


def test_820_positions_and_header_problems_in_later_sets(tmp_path, parallel):
    def edit(segs):
        out = list(segs)
        sts = [i for i, s in enumerate(out) if s.startswith("ST*")]
        out[sts[5] + 3] = "DTM*582****RD8*20110201-20110231"  # the sixth set's header month
        rmr = next(i for i in range(sts[4], sts[5]) if out[i].startswith("RMR*"))
        out[rmr] = out[rmr].replace("**110.00", "**11O.00")  # an amount in the fifth set
        return out

    path = multi_set(tmp_path, REMIT, 3, edit, name="multi.820")
    r = same(read_820, path)
    assert parallel == [9]
    assert r.transactions == 9 and r.records == 30
    segs = segments(path)
    rmr, dtm = (next(i for i, s in enumerate(segs) if text in s) for text in ("11O.00", "20110231"))
    st = max(i for i in range(dtm) if segs[i].startswith("ST*"))
    positions = [p for p, _ in r.rejected]
    assert positions[0] == f"segment 9 (loop 2300B, line {rmr + 1})"
    assert f"segment 4 (header, line {dtm + 1})" in positions
    assert sum(f"the header of the transaction set at segment 1 (ST, line {st + 1}) is invalid" in why
               for _, why in r.rejected) == 3
    assert st > 100


def test_an_envelope_error_is_read_in_one_process(tmp_path, parallel):
    """pyx12's reader checks the envelope before the file is cut: a wrong GE count, a repeated ST02, a
    second interchange each make the file read as one, with the same rejections as always."""
    def wrong_count(segs):
        return [("GE*5*201" if s.startswith("GE*") else s) for s in segs]

    def repeated_st02(segs):
        return [("ST*820*0001*005010X218" if s.startswith("ST*820*0002") else s) for s in segs]

    for n, edit in enumerate((wrong_count, repeated_st02)):
        r = same(read_820, multi_set(tmp_path, REMIT, 2, edit, name=f"e{n}.820"))
        assert r.rejected
    twice = tmp_path / "twice.820"
    twice.write_text(REMIT.read_text() + REMIT.read_text().replace("000000201", "000000202"))
    same(read_820, twice)
    assert parallel == [False, False, False]


def test_element_values_are_pyx12s(tmp_path):
    """_Seg.v reads an element as pyx12's Segment.get_value does, stripped, "" when it is absent."""
    import pyx12.segment

    from capdsl.data.x12 import Where, _Seg

    data = pyx12.segment.Segment("HD*030**HMO* A:B *IND", "~", "*", ":")
    seg = _Seg(Where("HD", 1, 1, (), None), data, None, [])
    for ref in ("HD01", "HD02", "HD04", "HD04-1", "HD04-2", "HD04-3", "HD05", "HD09", "HD09-1"):
        value = data.get_value(ref)
        assert seg.v(ref) == (value.strip() if value is not None else ""), ref
    assert seg.v("HD04") == "A:B" and seg.v("HD04-2") == "B"


@pytest.mark.parametrize("command, reader, sample", [("from-834", "read_834", JAN), ("from-820", "read_820", REMIT)])
def test_jobs_is_the_number_of_reading_processes(tmp_path, monkeypatch, command, reader, sample):
    """`--jobs 1` reads in this process (a busy machine); without it, the reader picks the cores."""
    seen = []
    real = getattr(x12_module, reader)

    def spy(path, **kw):
        seen.append(kw.get("jobs"))
        return real(path, **kw)

    monkeypatch.setattr(x12_module, reader, spy)
    for extra in (["--jobs", "1"], []):
        result = invoke("panel", command, sample, "-o", tmp_path / "out.csv", *extra)
        assert result.exit_code == 0, result.output
    assert seen == [1, None]
    assert "x>=1" in invoke("panel", command, sample, "-o", tmp_path / "out.csv", "--jobs", "0").output


# ───────────────────────────── an 834 as the members table ─────────────────────────────

PMPM = ROOT / "contracts" / "us_pmpm.cap"


def test_retro_reads_two_834s_as_the_panels(tmp_path):
    """A payer's last and this month's 834 give the retro adjustments directly, as the files
    `panel from-834` writes from them do."""
    direct = invoke("retro", PMPM, "--members", FEB, "--paid-members", JAN, "--period", "2011-02", "--months", "1",
                    "--detail", "member", "-q")
    assert direct.exit_code == 0, direct.output
    assert direct.stdout.splitlines()[1:] == ["P00000,M90000009,2011-01,,100.00,100.00,"
                                              "added since (a retroactive enrolment)"]
    for name, source in (("feb.csv", FEB), ("jan.csv", JAN)):
        assert invoke("panel", "from-834", source, "-o", tmp_path / name).exit_code == 0
    converted = invoke("retro", PMPM, "--members", tmp_path / "feb.csv", "--paid-members", tmp_path / "jan.csv",
                       "--period", "2011-02", "--months", "1", "--detail", "member", "-q")
    assert converted.stdout == direct.stdout


def test_reconcile_reads_the_834_and_the_820():
    result = invoke("reconcile", PMPM, "--members", FEB, "--remittance", REMIT, "--period", "2011-02", "-q",
                    "--format", "json")
    assert result.exit_code == 0, result.output
    members = {r["member_id"]: r["status"] for r in json.loads(result.stdout)["rows"] if r["level"] == "member"}
    assert members["M90000003"] == "overpaid" and members["M90000007"] == "underpaid"
    assert members["M90000099"] == "unexplained"


def test_an_834_member_loop_that_cannot_be_used_stops_the_run(tmp_path):
    path = spoil(tmp_path, FEB, lambda segs: [s.replace("DMG*D8*19510714", "DMG*D8*19511314") for s in segs],
                 "bad.834")
    result = invoke("eval", PMPM, "--members", path, "--period", "2011-02")
    assert result.exit_code == 1
    assert "error[E0743]: segment 14 (loop 2100A, line 16)" in result.output
    assert "capdsl panel from-834" in result.output and "Traceback" not in result.output


def test_an_834_is_a_members_table_only(tmp_path):
    result = invoke("eval", PMPM, "--members", ROOT / "examples" / "members.csv", "--practices", FEB,
                    "--period", "2011-02")
    assert result.exit_code == 1 and "error[E0906]: an X12 834 is a members table, not the practices table" \
        in result.output


def test_an_834_change_file_as_the_panel_is_said_to_be_one(tmp_path):
    path = spoil(tmp_path, JAN, lambda segs: [s.replace("****RX", "****2") if s.startswith("BGN*") else s
                                              for s in segs], "change.834")
    bgn = next(s for s in segments(path) if s.startswith("BGN*"))
    assert bgn.split("*")[8] == "2", bgn  # BGN08 2: a change file
    result = invoke("eval", PMPM, "--members", path, "--period", "2011-01")
    assert result.exit_code == 0, result.output
    assert "warning[W0744]: this is a change file (BGN08 2)" in result.output


def test_a_panel_folder_may_hold_its_members_as_an_834(tmp_path):
    (tmp_path / "members.834").write_bytes(FEB.read_bytes())
    result = invoke("eval", PMPM, "--panel", tmp_path, "--period", "2011-02", "-q", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "P00000,capitation,Capitation (100 USD PMPM),line,300.00" in result.stdout


def test_an_834_members_table_shows_ids_only_when_asked(tmp_path):
    path = spoil(tmp_path, FEB, lambda segs: [s.replace("DMG*D8*19510714", "DMG*D8*19511314") for s in segs],
                 "bad.834")
    hidden = invoke("eval", PMPM, "--members", path, "--period", "2011-02").output
    shown = invoke("eval", PMPM, "--members", path, "--period", "2011-02", "--show-ids").output
    assert "M90000001" not in hidden and "19511314" not in hidden
    assert "member 'M90000001'" in shown and "(19511314)" in shown
