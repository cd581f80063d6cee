"""Build a capdsl members panel from a Synthea export (patients.csv + conditions.csv).

Synthea is the standard synthetic health-record generator; its CSV exports
are the closest thing to a real panel that anyone may publish. The mapping is
a snapshot on one date (`as_of`):

* member_id = `Id`; sex = `GENDER`; birth_date = `BIRTHDATE`;
* practice_id = `P` + the zero-padded number `(first 60 bits of SHA-256(Id)
  mod practices) + 1`, so the same patient always lands in the same practice
  on every machine and run (Python's `hash()` is salted per process);
* enrolled_from = birth date, enrolled_to = `DEATHDATE` (empty if alive):
  the dead are kept, so months before their death still count;
* patients born after `as_of` are left out and counted;
* diabetes / cardiovascular = a condition active on `as_of`
  (START <= as_of and STOP empty or >= as_of) whose SNOMED code is in the
  lists below or whose description matches the keywords (and no exclusion:
  "Prediabetes" is not diabetes, pregnancy-related conditions are neither);
* Synthea has no insurer or social-care field: those columns are not written,
  so contracts that need them must declare a default or take another file.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from capdsl.outputs import atomic_path, check_output
from capdsl.errors import InputError, UsageError, error

DIABETES_CODES = {
    "44054006": "Diabetes mellitus type 2",
    "46635009": "Diabetes mellitus type 1",
    "73211009": "Diabetes mellitus",
    "127013003": "Disorder of kidney due to diabetes mellitus",
    "90781000119102": "Microalbuminuria due to type 2 diabetes mellitus",
    "157141000119108": "Proteinuria due to type 2 diabetes mellitus",
    "368581000119106": "Neuropathy due to type 2 diabetes mellitus",
    "422034002": "Retinopathy due to type 2 diabetes mellitus",
    "1551000119108": "Nonproliferative diabetic retinopathy due to type 2 diabetes mellitus",
    "1501000119109": "Proliferative diabetic retinopathy due to type II diabetes mellitus",
    "97331000119101": "Macular edema and retinopathy due to type 2 diabetes mellitus",
    "60951000119105": "Blindness due to type 2 diabetes mellitus",
}
DIABETES_KEYWORDS = ("diabetes mellitus", "diabetic")
DIABETES_EXCLUDE = ("prediabetes", "gestational", "pregnan", "history of", "screening", "family history")

CARDIOVASCULAR_CODES = {
    "59621000": "Essential hypertension",
    "38341003": "Hypertensive disorder",
    "53741008": "Coronary heart disease",
    "414545008": "Ischemic heart disease",
    "22298006": "Myocardial infarction",
    "401303003": "Acute ST segment elevation myocardial infarction",
    "401314000": "Acute non-ST segment elevation myocardial infarction",
    "399211009": "History of myocardial infarction",
    "399261000": "History of coronary artery bypass grafting",
    "84114007": "Heart failure",
    "88805009": "Chronic congestive heart failure",
    "49436004": "Atrial fibrillation",
    "230690007": "Cerebrovascular accident (stroke)",
    "410429000": "Cardiac arrest",
    "429007001": "History of cardiac arrest",
}
CARDIOVASCULAR_KEYWORDS = ("hypertension", "coronary heart disease", "coronary artery", "ischemic heart disease",
                           "myocardial infarction", "heart failure", "atrial fibrillation", "stroke",
                           "cerebrovascular accident", "angina", "cardiac arrest")
CARDIOVASCULAR_EXCLUDE = ("gestational", "pregnan", "preeclampsia", "eclampsia", "abnormal findings",
                          "screening", "family history")


@dataclass(frozen=True, slots=True)
class SyntheaReport:
    """What the conversion did, for the CLI to print (nothing is dropped without being counted)."""

    patients_read: int
    conditions_read: int
    members_written: int
    not_yet_born: int  # born after as_of: excluded
    deceased_before_as_of: int  # kept, enrolled_to = death date
    deceased_after_as_of: int  # kept, enrolled_to = death date
    diabetes: int
    cardiovascular: int
    practices: int
    as_of: date
    members_path: str
    practices_path: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        return d

    def lines(self) -> list[str]:
        return [
            f"patients read: {self.patients_read:,} (conditions: {self.conditions_read:,})",
            f"members written: {self.members_written:,} in {self.practices} practices -> {self.members_path}",
            f"not yet born on {self.as_of} (excluded): {self.not_yet_born:,}",
            f"deceased before {self.as_of} (kept, enrolled_to = death date): {self.deceased_before_as_of:,}",
            f"deceased after {self.as_of} (kept, enrolled_to = death date): {self.deceased_after_as_of:,}",
            f"diabetes: {self.diabetes:,}; cardiovascular: {self.cardiovascular:,}",
            f"practices table -> {self.practices_path}",
        ]


def _sql_list(values) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _flag_sql(codes: dict[str, str], keywords, exclude) -> str:
    """SQL: this condition row counts for the flag (code listed, or keyword without exclusion)."""
    d = "lower(coalesce(DESCRIPTION, ''))"
    kw = " OR ".join(f"contains({d}, '{k}')" for k in keywords)
    ex = " OR ".join(f"contains({d}, '{k}')" for k in exclude)
    return f"(list_contains({_sql_list(codes)}, trim(CODE)) OR (({kw}) AND NOT ({ex})))"


def _practices_path(out: Path) -> Path:
    """`panel.parquet` -> `panel.practices.parquet`."""
    return out.with_name(f"{out.stem}.practices{out.suffix}")


def _out_format(out: Path, fmt: str | None) -> str:
    f = (fmt or out.suffix.lstrip(".")).lower()
    if f not in ("csv", "parquet"):
        raise UsageError(error("E0906", f"cannot write {out}: the output must be .csv or .parquet",
                               hint="name the output panel.parquet or panel.csv, or pass the format"))
    return f


def _read(con, table: str, path: Path, needed: tuple[str, ...]) -> None:
    p = str(path)
    if not path.is_file():
        raise InputError(error("E0701", f"no such file: {path}", path=p))
    if path.stat().st_size == 0:
        raise InputError(error("E0702", "the file is empty", path=p))
    try:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv(?, header=true, all_varchar=true)",
                    [p]).fetchall()
        cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    except duckdb.Error as exc:
        raise InputError(error("E0716", f"not a readable CSV file: {str(exc).splitlines()[0][:160]}",
                               path=p)) from None
    missing = [c for c in needed if c not in cols]
    if missing:
        raise InputError([error("E0703", f"no column {c!r}: this does not look like a Synthea {table} export",
                                 path=p) for c in missing])


def from_synthea(patients_csv: str | Path, conditions_csv: str | Path | None, out_path: str | Path, *,
                 as_of: date, practices: int = 10, fmt: str | None = None,
                 practice_attrs: dict[str, Any] | None = None) -> SyntheaReport:
    """Write the members table (and `<out>.practices.<ext>`) from a Synthea export; see the module doc.

    `practice_attrs` adds practice columns: `{name: value}` gives every
    practice the same value, `{name: {practice_id: value}}` per practice.
    """
    if practices < 1:
        raise UsageError(error("E0904", f"the number of practices must be at least 1, not {practices}"))
    if str(out_path) == "-":
        raise UsageError(error("E0930", "cannot write -o -: the conversion writes two files (members and "
                                        "practices), so it needs a file name",
                               hint="-o panel.parquet writes panel.parquet and panel.practices.parquet"))
    out = Path(out_path)
    kind = _out_format(out, fmt)
    pout = _practices_path(out)
    check_output(out)
    check_output(pout, "the practices file")
    con = duckdb.connect(":memory:")
    try:
        _read(con, "patients", Path(patients_csv), ("Id", "BIRTHDATE", "DEATHDATE", "GENDER"))
        if conditions_csv is not None:
            _read(con, "conditions", Path(conditions_csv), ("START", "STOP", "PATIENT", "CODE", "DESCRIPTION"))
        else:
            con.execute("CREATE TABLE conditions (START VARCHAR, STOP VARCHAR, PATIENT VARCHAR, CODE VARCHAR, "
                        "DESCRIPTION VARCHAR)").fetchall()
        _check_patients(con, str(patients_csv))
        width = len(str(practices))
        asof = f"DATE '{as_of.isoformat()}'"
        con.execute(f"""
            CREATE TABLE active AS
            SELECT trim(PATIENT) AS pid,
                   bool_or({_flag_sql(DIABETES_CODES, DIABETES_KEYWORDS, DIABETES_EXCLUDE)}) AS diabetes,
                   bool_or({_flag_sql(CARDIOVASCULAR_CODES, CARDIOVASCULAR_KEYWORDS, CARDIOVASCULAR_EXCLUDE)})
                       AS cardiovascular
            FROM conditions
            WHERE try_cast(substr(START, 1, 10) AS DATE) <= {asof}
              AND (nullif(trim(STOP), '') IS NULL OR try_cast(substr(STOP, 1, 10) AS DATE) >= {asof})
            GROUP BY 1""").fetchall()
        con.execute(f"""
            CREATE TABLE members AS
            SELECT trim(Id) AS member_id,
                   'P' || lpad(CAST((CAST('0x' || substr(sha256(trim(Id)), 1, 15) AS UBIGINT) % {practices})
                                    + 1 AS VARCHAR), {width}, '0') AS practice_id,
                   CAST(substr(BIRTHDATE, 1, 10) AS DATE) AS birth_date,
                   nullif(trim(GENDER), '') AS sex,
                   CAST(substr(BIRTHDATE, 1, 10) AS DATE) AS enrolled_from,
                   try_cast(substr(nullif(trim(DEATHDATE), ''), 1, 10) AS DATE) AS enrolled_to,
                   coalesce(a.diabetes, false) AS diabetes,
                   coalesce(a.cardiovascular, false) AS cardiovascular
            FROM patients p LEFT JOIN active a ON a.pid = trim(p.Id)
            WHERE CAST(substr(BIRTHDATE, 1, 10) AS DATE) <= {asof}
            ORDER BY practice_id, member_id""").fetchall()
        (read, cond_n) = (con.execute("SELECT count(*) FROM patients").fetchall()[0][0],
                          con.execute("SELECT count(*) FROM conditions").fetchall()[0][0])
        stats = con.execute(f"""
            SELECT count(*), count_if(enrolled_to < {asof}), count_if(enrolled_to >= {asof}),
                   count_if(diabetes), count_if(cardiovascular) FROM members""").fetchall()[0]
        _write_practices_table(con, practices, width, practice_attrs or {})
        with atomic_path(out) as tmp_members, atomic_path(pout) as tmp_practices:
            opts = "(FORMAT parquet)" if kind == "parquet" else "(FORMAT csv, HEADER, DELIMITER ',')"
            for table, tmp in (("members", tmp_members), ("practices", tmp_practices)):
                os.unlink(tmp)
                con.execute(f"COPY (SELECT * FROM {table} ORDER BY practice_id"
                            f"{', member_id' if table == 'members' else ''}) TO '{_esc(tmp)}' {opts}").fetchall()
    finally:
        con.close()
    return SyntheaReport(read, cond_n, stats[0], read - stats[0], stats[1], stats[2], stats[3], stats[4],
                         practices, as_of, str(out), str(pout))


def _esc(path: Path) -> str:
    return str(path).replace("'", "''")


def _check_patients(con, path: str) -> None:
    """Every patient needs an id and a valid birth date; ids must be unique."""
    bad = con.execute("SELECT rowid + 2 FROM patients WHERE nullif(trim(Id), '') IS NULL "
                      "OR try_cast(substr(BIRTHDATE, 1, 10) AS DATE) IS NULL ORDER BY 1 LIMIT 20").fetchall()
    dup = con.execute("SELECT count(*) FROM (SELECT trim(Id) FROM patients GROUP BY 1 HAVING count(*) > 1)"
                      ).fetchall()[0][0]
    diags = [error("E0704", f"row {r[0]}: the patient has no Id or no valid BIRTHDATE", path=path,
                   hint="BIRTHDATE must be YYYY-MM-DD") for r in bad]
    if dup:
        diags.append(error("E0706", f"{dup} patient Id(s) appear more than once", path=path))
    if diags:
        raise InputError(diags)


def _write_practices_table(con, n: int, width: int, attrs: dict[str, Any]) -> None:
    """All practices P1..Pn (also those that drew no patients), with the requested attributes."""
    import pyarrow as pa

    ids = [f"P{i:0{width}d}" for i in range(1, n + 1)]
    cols: dict[str, Any] = {"practice_id": ids}
    for name, value in attrs.items():
        if name == "practice_id":
            continue
        cols[name] = [value.get(i) for i in ids] if isinstance(value, dict) else [value] * n
    tbl = pa.table({k: pa.array(v) for k, v in cols.items()})
    con.register("_practices_src", tbl)
    con.execute("CREATE TABLE practices AS SELECT * FROM _practices_src").fetchall()
    con.unregister("_practices_src")
