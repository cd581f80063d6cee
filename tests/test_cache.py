"""The compiled-contract cache (capdsl/cache.py, in the signed store capdsl/store.py, asked by
`pipeline.CompiledContract`): a hit skips parse, check and lower and changes nothing a user sees;
anything that could make an entry wrong is a miss."""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

import capdsl.pipeline as pipeline
from capdsl import cache, store
from capdsl.tools.cli import main
from capdsl.evaluation.layout import layout_of
from validation_helpers import BASE, variant, write_panel

# BASE with a tier entry the checker proves unreachable: a warning that must be reported on every run
WARNED = variant(BASE, ("    45 CZK otherwise", "    48 CZK when practice.weekly_hours >= 40 hours\n    45 CZK otherwise"))


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CAPDSL_NO_CACHE", raising=False)
    contract = tmp_path / "c.cap"
    contract.write_text(WARNED, encoding="utf-8")
    panel = write_panel(tmp_path / "panel")
    args = [a for t, p in panel.items() for a in (f"--{t}", p)]
    return contract, args, tmp_path / "cache"


def evaluate(contract, args, *extra):
    return CliRunner().invoke(main, ["eval", str(contract), *args, "--period", "2011-03", "--format", "csv",
                                     *extra], catch_exceptions=False)


def entries(where: Path, kind: str = "contract") -> list[Path]:
    return sorted(where.glob(f"{kind}-*.json")) if where.exists() else []


def refuse_to_compile(monkeypatch):
    def boom(source):
        raise AssertionError(f"{source.path} was compiled again instead of read from the cache")
    monkeypatch.setattr(pipeline, "compile_source", boom)


def test_a_second_run_reads_the_cache_and_prints_the_same(setup, monkeypatch):
    contract, args, where = setup
    first = evaluate(contract, args)
    assert first.exit_code == 0, first.output
    assert "W0404" in first.stderr
    [entry] = entries(where)
    assert entry.stat().st_mode & 0o077 == 0 and where.stat().st_mode & 0o077 == 0  # private
    refuse_to_compile(monkeypatch)
    second = evaluate(contract, args)
    assert second.exit_code == 0, second.output
    assert second.stdout == first.stdout
    assert "W0404" in second.stderr  # the checker's warnings are kept with the entry


def test_an_edited_contract_is_compiled_again(setup):
    contract, args, where = setup
    before = evaluate(contract, args).stdout
    contract.write_text(variant(WARNED, ("50 CZK when", "60 CZK when")), encoding="utf-8")
    after = evaluate(contract, args).stdout
    assert after != before
    assert len(entries(where)) == 2


def test_the_same_text_under_another_path_is_another_entry(setup):
    """Statements name the file (`source`), so the path is part of the key."""
    contract, args, where = setup
    other = contract.with_name("other.cap")
    other.write_text(contract.read_text(encoding="utf-8"), encoding="utf-8")
    evaluate(contract, args)
    evaluate(other, args, "--format", "json")
    assert len(entries(where)) == 2
    assert cache.contract_entry("x", "a.cap") != cache.contract_entry("x", "b.cap") != cache.contract_entry("y", "b.cap")


def test_a_broken_contract_is_never_stored(setup):
    contract, args, where = setup
    contract.write_text(BASE.replace("45 CZK otherwise", "45 EUR otherwise"), encoding="utf-8")
    for _ in range(2):
        result = evaluate(contract, args)
        assert result.exit_code == 1 and "error[" in result.stderr
    assert entries(where) == []


@pytest.mark.parametrize("damage", ["garbage", "truncated", "group-writable", "not ours"])
def test_a_damaged_or_untrusted_entry_is_a_miss(setup, monkeypatch, damage):
    contract, args, where = setup
    first = evaluate(contract, args).stdout
    [entry] = entries(where)
    if damage == "garbage":
        entry.write_bytes(b"not an entry at all")
    elif damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:-40])
    elif damage == "group-writable":
        os.chmod(entry, 0o660)
    else:
        monkeypatch.setattr(os, "getuid", lambda: os.stat(entry).st_uid + 1)
    compiled = []
    real = pipeline.compile_source
    monkeypatch.setattr(pipeline, "compile_source", lambda source: compiled.append(1) or real(source))
    again = evaluate(contract, args)
    assert again.exit_code == 0 and again.stdout == first
    assert compiled == [1]


FLAT = 'contract "x":\n    currency CZK\nend\nline a "Flat fee" = sum of 10 CZK over members\n'


def _edit(entry: Path, old: str, new: str) -> None:
    """Change `old` to `new` in a stored entry, keeping it valid JSON (as a hand edit would)."""
    data = entry.read_bytes()
    assert data.count(old.encode()) == 1, (entry.name, old)
    entry.write_bytes(data.replace(old.encode(), new.encode()))


def test_an_edited_tree_or_query_is_discarded_and_compiled_again(setup):
    """A constant changed in the stored tree (read by --engine python) and in the stored query (read
    by --engine duckdb): both engines still pay the contract's own 10 CZK a member."""
    contract, args, where = setup
    contract.write_text(FLAT, encoding="utf-8")
    first = evaluate(contract, args)
    assert first.exit_code == 0 and first.stdout.count(",200.00,") == 6  # 20 members a practice at 10 CZK
    [tree], [query] = entries(where, "tree"), entries(where, "query")
    _edit(tree, '{"d":"10"}', '{"d":"99999"}')
    _edit(query, "SUM(10)", "SUM(99999)")
    for engine in ("python", "duckdb"):
        again = evaluate(contract, args, "--engine", engine)
        assert again.exit_code == 0, again.output
        assert again.stdout == first.stdout and "99999" not in again.stdout, engine


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_an_edited_label_in_a_contract_entry_is_discarded(setup, engine):
    contract, args, where = setup
    contract.write_text(FLAT, encoding="utf-8")
    first = evaluate(contract, args, "--engine", engine)
    assert first.exit_code == 0 and "Flat fee" in first.stdout
    [entry] = entries(where)
    _edit(entry, '"Flat fee"', '"Free money"')
    again = evaluate(contract, args, "--engine", engine)
    assert again.exit_code == 0 and again.stdout == first.stdout and "Free money" not in again.stdout


@pytest.mark.parametrize("kind", ["contract", "tree", "query"])
def test_a_truncated_entry_of_any_kind_is_a_miss(setup, kind):
    contract, args, where = setup
    contract.write_text(FLAT, encoding="utf-8")
    first = evaluate(contract, args, "--engine", "python" if kind == "tree" else "duckdb")
    [entry] = entries(where, kind)
    entry.write_bytes(entry.read_bytes()[:-40])
    again = evaluate(contract, args, "--engine", "python" if kind == "tree" else "duckdb")
    assert again.exit_code == 0 and again.stdout == first.stdout


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CAPDSL_NO_CACHE", raising=False)
    return tmp_path / "cache"


VALUE = ({"a": (Decimal("10.00"), date(2011, 3, 1))}, "Flat fee")


def test_a_stored_entry_is_read_back(private_cache):
    cache.save("query-a", VALUE)
    assert cache.load("query-a") == VALUE


def test_an_entry_under_another_name_is_a_miss(private_cache):
    """The digest covers the entry's name: a valid entry copied over another (the query of another
    period, say) is not that other entry."""
    cache.save("query-a", VALUE)
    shutil.copy(private_cache / "query-a.json", private_cache / "query-b.json")
    assert cache.load("query-b") is None
    assert cache.load("query-a") == VALUE


def test_an_entry_from_another_cache_directory_is_a_miss(private_cache, monkeypatch, tmp_path):
    """Each directory has its own secret: an entry copied from another cache is not trusted."""
    cache.save("query-a", VALUE)
    monkeypatch.setenv("CAPDSL_CACHE_DIR", str(tmp_path / "other"))
    cache.save("query-b", 1)
    shutil.copy(private_cache / "query-a.json", tmp_path / "other" / "query-a.json")
    assert cache.load("query-a") is None and cache.load("query-b") == 1


@pytest.mark.parametrize("damage", ["no digest", "older format", "digest of other bytes", "flipped byte"])
def test_an_entry_whose_digest_does_not_match_is_a_miss(private_cache, damage):
    cache.save("query-a", VALUE)
    path = private_cache / "query-a.json"
    data = path.read_bytes()
    head, digest, payload = data.split(b"\n", 2)
    if damage == "no digest":
        data = head + b"\n" + payload
    elif damage == "older format":
        data = b"capdsl-cache-2\n" + payload
    elif damage == "digest of other bytes":
        data = head + b"\n" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    else:
        data = data.replace(b"Flat fee", b"Flat fef")
    path.write_bytes(data)
    assert cache.load("query-a") is None
    cache.save("query-a", VALUE)  # what the caller does after a miss: the entry is good again
    assert cache.load("query-a") == VALUE


def test_the_secret_is_private_and_made_only_by_a_store(private_cache):
    assert cache.load("query-a") is None
    assert not private_cache.exists()  # a lookup writes nothing
    cache.save("query-a", VALUE)
    secret = private_cache / store.SECRET
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    cache.save("query-b", VALUE)
    assert len(list(private_cache.iterdir())) == 3  # the same secret serves every entry


@pytest.mark.parametrize("damage", ["removed", "short", "readable by others"])
def test_a_lost_or_exposed_secret_makes_every_entry_a_miss_and_is_replaced(private_cache, damage):
    cache.save("query-a", VALUE)
    secret = private_cache / store.SECRET
    before = secret.read_bytes()
    if damage == "removed":
        secret.unlink()
    elif damage == "short":
        secret.write_bytes(before[:10])
    else:
        os.chmod(secret, 0o644)
    assert cache.load("query-a") is None
    cache.save("query-b", VALUE)  # a new secret, private again
    assert secret.read_bytes() != before and secret.stat().st_mode & 0o777 == 0o600
    assert cache.load("query-b") == VALUE and cache.load("query-a") is None


def test_concurrent_first_stores_agree_on_one_secret(private_cache):
    """The secret appears atomically and only once (a hard link that fails if it exists), so stores
    racing in a new directory never invalidate each other's entries."""
    from concurrent.futures import ThreadPoolExecutor

    for _round in range(5):
        shutil.rmtree(private_cache, ignore_errors=True)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: cache.save(f"query-{i}", i), range(16)))
        assert [cache.load(f"query-{i}") for i in range(16)] == list(range(16))


def test_no_cache_when_turned_off(setup, monkeypatch):
    contract, args, where = setup
    monkeypatch.setenv("CAPDSL_NO_CACHE", "1")
    assert evaluate(contract, args).exit_code == 0
    assert entries(where) == []


def test_an_unwritable_cache_only_costs_time(setup, monkeypatch, tmp_path):
    contract, args, _where = setup
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CAPDSL_CACHE_DIR", str(blocker / "cache"))  # a directory under a file
    result = evaluate(contract, args)
    assert result.exit_code == 0, result.output


def test_the_key_covers_capdsl_code_and_grammar():
    """Editing capdsl (a module or the grammar) must change every key: the fingerprint reads them all."""
    package = Path(pipeline.__file__).parent
    seen = []
    real_stat = Path.stat

    def spy(self, *a, **kw):
        seen.append(self)
        return real_stat(self, *a, **kw)

    store.code_fingerprint.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(Path, "stat", spy)
            store.code_fingerprint()
    finally:
        store.code_fingerprint.cache_clear()
    names = {p.name for p in seen}
    assert {"compile.py", "lower.py", "check.py", "syntax.py", "cache.py", "store.py"} <= names
    assert any(p.suffix == ".lark" for p in seen)
    assert any(p.parent.name == "sql" and package in p.parents for p in seen)
    # and the installed parser and SQL generator: upgrading either may change what is compiled
    for name in store.COMPILERS:
        assert f"{name}-" in store.installed(name) and ".dist-info" in store.installed(name)


CONTRACTS = sorted((Path(__file__).resolve().parent.parent / "contracts").glob("*.cap"))


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.stem)
def test_every_contract_survives_the_entry_format(path):
    """Decoded, the program is the same tree (spans included, which `==` ignores), with the same nodes
    shared, and compiles to the same SQL."""
    from capdsl.evaluation import tree as t
    from capdsl.sql import compile_program

    checked, program = pipeline.compile_file(path)
    data = cache.encode((tuple(checked.warnings), program))
    warnings, again = cache.decode(data)
    assert again == program and warnings == tuple(checked.warnings)
    assert cache.encode((warnings, again)) == data  # spans and every field, not only what `==` compares

    def distinct(p):
        nodes = [n for d in p.definitions.values() for n in t.walk(d.expr)]
        nodes += [n for line in p.lines for root in (line.amount, line.applies) if root is not None
                  for n in t.walk(root)]
        return len(nodes), len({id(n) for n in nodes})

    assert distinct(again) == distinct(program)
    assert compile_program(again, "2011-03") == compile_program(program, "2011-03")
    shape = layout_of(program)  # what a re-run reads instead of the tree
    assert cache.decode(cache.encode(shape)) == shape
    assert pipeline.requirements(shape) == pipeline.requirements(program)


def test_an_entry_cannot_name_a_class_outside_the_tree():
    with pytest.raises(KeyError):
        cache.decode({"c": "subprocess.Popen", "i": 0, "f": [["echo", "hi"]]})
    with pytest.raises(TypeError):
        cache.encode(object())


RUN_AND_REPORT_SQLGLOT = """
import sys
from capdsl.tools.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    for name in ("sqlglot", "lark", "capdsl.evaluation.tree", "capdsl.evaluation.interpret"):
        print(name, "loaded:", name in sys.modules, file=sys.stderr)
"""


def test_a_cached_query_runs_without_loading_the_compiler(setup, tmp_path):
    """The second run of the same contract, period and parameters reads the compiled SQL from the
    cache: sqlglot (a third of a small run's start-up) is never imported, and the output is the same."""
    import subprocess
    import sys

    contract, args, where = setup
    env = {**os.environ, "CAPDSL_CACHE_DIR": str(where)}
    cmd = [sys.executable, "-c", RUN_AND_REPORT_SQLGLOT, "eval", str(contract), *args, "--period", "2011-03",
           "--format", "csv", "-q"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    assert "sqlglot loaded: True" in first.stderr
    # nor the parser, the evaluation tree (the outline is enough) or the interpreter
    for name in ("sqlglot", "lark", "capdsl.evaluation.tree", "capdsl.evaluation.interpret"):
        assert f"{name} loaded: False" in second.stderr
    assert second.stdout == first.stdout and first.stdout.count("\n") > 3
    assert len(entries(where, "query")) == 1


def test_the_tree_is_read_from_its_entry_or_compiled_when_a_query_must_be(setup, monkeypatch):
    """A contract's tree is its own entry, read only to compile a query: with the query gone it is
    read (not compiled again); with the tree gone too, the contract is compiled; same output."""
    contract, args, where = setup
    first = evaluate(contract, args)
    assert first.exit_code == 0 and len(entries(where, "tree")) == 1
    for q in entries(where, "query"):
        q.unlink()
    with monkeypatch.context() as m:
        refuse_to_compile(m)
        assert evaluate(contract, args).stdout == first.stdout
    for e in entries(where, "query") + entries(where, "tree"):
        e.unlink()
    assert evaluate(contract, args).stdout == first.stdout
    assert len(entries(where, "tree")) == 1


DIVIDES_BY_NONE = ('contract "x":\n    currency CZK\nend\n'
                   'line a "A" = 100 CZK / (count of members where member.age > 200)\n')


def test_an_error_from_a_cached_query_is_reported_the_same(setup):
    """A cached query keeps where it may stop (code, message, span) without the tree's nodes."""
    contract, args, where = setup
    contract.write_text(DIVIDES_BY_NONE, encoding="utf-8")
    first, second = evaluate(contract, args), evaluate(contract, args)
    assert len(entries(where, "query")) == 1
    assert first.exit_code == second.exit_code == 1
    assert "E0803" in first.stderr and "c.cap:4" in first.stderr
    assert second.stderr == first.stderr


def test_another_period_or_parameter_is_another_query(setup):
    contract, args, where = setup
    outputs = {evaluate(contract, args).stdout,
               CliRunner().invoke(main, ["eval", str(contract), *args, "--period", "2011-Q1", "--format", "csv"],
                                  catch_exceptions=False).stdout}
    assert len(entries(where, "query")) == 2 and len(outputs) == 2
    # the query for 2011-03 again: no new entry, same output
    assert evaluate(contract, args).stdout in outputs
    assert len(entries(where, "query")) == 2


def test_the_query_key_covers_everything_the_sql_depends_on():
    """A stale query would pay wrong amounts silently: every input of the compiler is in its key."""
    from decimal import Decimal

    from capdsl.evaluation.periods import parse_period
    from capdsl.sql.query import Options

    def _entry(program, *rest):
        return cache.query_entry(cache.tree_identity(program), *rest)

    _checked, program = pipeline.compile_file(CONTRACTS[0])
    other_program = pipeline.compile_file(CONTRACTS[1])[1]
    march, q1 = parse_period("2011-03"), parse_period("2011-Q1")
    base = (program, march, "duckdb", None, {"x": Decimal("250")}, Options())
    key = _entry(*base)
    assert key == _entry(*base)
    variants = [(other_program, march, "duckdb", None, {"x": Decimal("250")}, Options()),
                (program, q1, "duckdb", None, {"x": Decimal("250")}, Options()),
                (program, march, "spark", None, {"x": Decimal("250")}, Options()),
                (program, march, "duckdb", {"members": "m"}, {"x": Decimal("250")}, Options()),
                (program, march, "duckdb", None, {"x": Decimal("250.5")}, Options()),
                (program, march, "duckdb", None, {"x": Decimal("250")}, Options(practices="derive"))]
    assert len({_entry(*v) for v in variants} | {key}) == len(variants) + 1


def test_the_keyed_query_entry_covers_the_contract_and_everything_else(setup, monkeypatch):
    """`CompiledContract.query` names the query by the contract's entry (which covers its text, path
    and capdsl's code) and the rest of the compiler's inputs."""
    from decimal import Decimal

    from capdsl.evaluation.periods import parse_period
    from capdsl.sql import query as q

    _checked, program = pipeline.compile_file(CONTRACTS[0])
    stored: list[str] = []
    monkeypatch.setattr(cache, "save", lambda entry, value: stored.append(entry))
    march, q1 = parse_period("2011-03"), parse_period("2011-Q1")
    calls = [("contract-a", march, "duckdb", None, {"x": Decimal(1)}, q.Options()),
             ("contract-b", march, "duckdb", None, {"x": Decimal(1)}, q.Options()),
             ("contract-a", q1, "duckdb", None, {"x": Decimal(1)}, q.Options()),
             ("contract-a", march, "postgres", None, {"x": Decimal(1)}, q.Options()),
             ("contract-a", march, "duckdb", {"members": "m"}, {"x": Decimal(1)}, q.Options()),
             ("contract-a", march, "duckdb", None, {"x": Decimal(2)}, q.Options()),
             ("contract-a", march, "duckdb", None, {"x": Decimal(1)}, q.Options(practices="derive"))]
    for key, period, dialect, tables, params, options in calls + calls[:1]:
        contract = pipeline.CompiledContract(None, (), layout_of(program), key, program)
        contract.query(period, dialect, tables=tables, params=params, options=options)
    assert len(set(stored)) == len(calls) and stored[0] == stored[-1]


# ─────────────────────────── the size bound ───────────────────────────

def _fill(where: Path, names_sizes, start_ns: int = 1_000_000_000_000_000_000) -> None:
    """Entries with the given sizes, each used one second after the one before."""
    where.mkdir(parents=True, exist_ok=True)
    for i, (name, size) in enumerate(names_sizes):
        path = where / name
        path.write_bytes(b"x" * size)
        os.utime(path, ns=(start_ns + i * 10**9, start_ns + i * 10**9))


def test_the_least_recently_used_entries_go_first_down_to_80_percent(tmp_path):
    where = tmp_path / "cache"
    _fill(where, [(f"query-{i}.json", 1000) for i in range(10)])
    assert store.prune(where, 10_000) == 0  # at the bound: nothing goes
    assert store.prune(where, 9_999, keep="query-0.json") == 3  # 10 000 → 7 000 ≤ 80 % of 9 999
    left = sorted(p.name for p in where.iterdir())
    # the oldest (0) was just written and is kept; 1, 2 and 3 were the least recently used
    assert left == ["query-0.json"] + [f"query-{i}.json" for i in range(4, 10)]


def test_a_hit_makes_its_entry_the_most_recently_used(setup):
    contract, args, where = setup
    assert evaluate(contract, args).exit_code == 0
    [entry] = entries(where)
    os.utime(entry, ns=(1, 1))  # as if last used in 1970
    assert evaluate(contract, args).exit_code == 0  # a hit
    assert entry.stat().st_mtime_ns > 10**18  # touched now: the last to be evicted


def test_a_store_keeps_the_cache_within_its_bound(setup, monkeypatch):
    contract, args, where = setup
    _fill(where, [(f"old-{i:02}.json", 300_000) for i in range(8)])  # 2.4 MB of older entries
    monkeypatch.setenv("CAPDSL_CACHE_MAX_MB", "1")
    result = evaluate(contract, args)
    assert result.exit_code == 0, result.output
    sizes = [p.stat().st_size for p in where.iterdir()]
    assert sum(sizes) <= 2**20
    assert entries(where) and entries(where, "query") and entries(where, "tree")  # what this run stored
    assert not (where / "old-00.json").exists()  # the least recently used went first


@pytest.mark.parametrize("raw, expected", [("", 256), ("64", 64), ("0", 0), ("lots", 256), ("-5", 256)])
def test_the_bound_comes_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv("CAPDSL_CACHE_MAX_MB", raw)
    assert store.max_bytes() == expected * 2**20


def test_a_killed_writers_temporary_file_is_removed_once_stale(tmp_path):
    where = tmp_path / "cache"
    _fill(where, [("query-a.json", 10)])
    stale, fresh = where / ".query-b.json.x1.tmp", where / ".query-c.json.x2.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    os.utime(stale, ns=(1, 1))
    assert store.prune(where, 2**20) == 1
    assert not stale.exists() and fresh.exists() and (where / "query-a.json").exists()


def test_cache_info_and_clear(setup):
    contract, args, where = setup
    assert evaluate(contract, args).exit_code == 0
    info = CliRunner().invoke(main, ["cache", "info"])
    assert info.exit_code == 0, info.output
    assert f"directory: {where}" in info.output
    n = len(list(where.glob("*.json")))
    assert f"entries:   {n} (" in info.output and "contract 1, query 1, tree 1" in info.output
    (where / ("0" * 64 + ".json")).write_bytes(b"{}")  # an entry of an older capdsl, named by its hash alone
    assert "contract 1, other 1, query 1, tree 1" in CliRunner().invoke(main, ["cache", "info"]).output
    n += 1
    cleared = CliRunner().invoke(main, ["cache", "clear"])
    assert cleared.exit_code == 0 and f"removed {n} files" in cleared.output
    assert list(where.glob("*.json")) == []
    assert "entries:   0 (0 bytes" in CliRunner().invoke(main, ["cache", "info"]).output


def test_cache_commands_when_the_cache_is_off(setup, monkeypatch):
    monkeypatch.setenv("CAPDSL_NO_CACHE", "1")
    for sub in ("info", "clear"):
        result = CliRunner().invoke(main, ["cache", sub])
        assert result.exit_code == 0 and "the cache is off" in result.output


# ─────────────────────────── the store's allow-list ───────────────────────────

def test_each_user_of_the_store_names_the_classes_it_may_build(private_cache):
    """The allow-list belongs to the caller: the panel memo's plain codec builds no dataclass, so an
    entry holding a tree node is a miss for it even though the compiled-contract cache reads it."""
    from capdsl.evaluation import tree as t

    value = {"rows": [(1, Decimal("2.50"), date(2011, 3, 1))], "node": t.ParamDecl("money")}
    cache.save("panel-x", value)
    assert cache.load("panel-x") == value
    assert store.load("panel-x") is None  # store.PLAIN: no module allowed
    store.save("panel-y", {"rows": [(1, "a")]})
    assert store.load("panel-y") == {"rows": [(1, "a")]}
    with pytest.raises(TypeError):
        store.PLAIN.encode(value)
    assert set(cache.MODULES) == {"capdsl.evaluation.tree", "capdsl.errors", "capdsl.evaluation.layout",
                                  "capdsl.sql.query"}


def test_a_tree_in_memory_has_its_queries_cached_under_the_tree(private_cache, monkeypatch):
    """`CompiledContract.of(program)` (no contract entry) keys its queries by the encoded tree: the
    second ask reads the query, a changed tree compiles its own."""
    import capdsl.sql.compile as compiler
    from capdsl.evaluation.periods import parse_period

    program = pipeline.compile_file(CONTRACTS[0])[1]
    march = parse_period("2011-03")
    first = pipeline.CompiledContract.of(program).query(march, "duckdb")
    compiled = []
    real = compiler.compile_query
    monkeypatch.setattr(compiler, "compile_query", lambda *a, **kw: compiled.append(1) or real(*a, **kw))
    again = pipeline.CompiledContract.of(program).query(march, "duckdb")
    assert again == first and compiled == []
    other = pipeline.compile_file(CONTRACTS[1])[1]
    pipeline.CompiledContract.of(other).query(march, "duckdb")
    assert compiled == [1]
