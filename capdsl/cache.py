"""The compiled-contract cache: a contract is parsed, checked and lowered once,
not on every run, and its SQL compiled once per period, dialect and parameters.

Entries live in the signed store (capdsl/store.py: where, trust, size bound,
`CAPDSL_NO_CACHE=1`). Only contracts that check without errors are stored; a
broken contract is parsed every time and reports its errors every time. A
contract is three kinds of entries, so that a run reads only what it needs:

- `contract-…` (`contract_entry`): the checker's warnings and the layout
  (capdsl/evaluation/layout.py), keyed by the contract's text and the path
  statements name it by;
- `tree-…` (`tree_entry`): the evaluation tree, read only when an engine
  needs it;
- `query-…` (`query_entry`): a compiled query, keyed by the contract's entry
  (or, for a tree with no contract entry, the encoded tree), the period, the
  dialect, the tables, the parameters and the options.

Every key also covers capdsl's code and the compilers' versions
(`store.entry_key`), so editing either makes new entries.
`CompiledContract` (capdsl/pipeline.py) decides when each is read and written.
"""

from __future__ import annotations

import json

from capdsl import store

# The only modules whose dataclasses a cache entry may build: the evaluation tree, diagnostics, the
# layout and compiled queries.


def _tree():
    from capdsl.evaluation import tree
    return tree


def _errors():
    from capdsl import errors
    return errors


def _layout():
    from capdsl.evaluation import layout
    return layout


def _query():
    from capdsl.sql import query
    return query


CODEC = store.Codec({"capdsl.evaluation.tree": _tree, "capdsl.errors": _errors,
                     "capdsl.evaluation.layout": _layout, "capdsl.sql.query": _query})
MODULES = tuple(CODEC.modules)


def load(entry: str):
    """The value of a cache entry, or None (a miss: absent, damaged, untrusted, or the cache is off)."""
    return store.load(entry, CODEC)


def save(entry: str, value) -> None:
    store.save(entry, value, CODEC)


def encode(value) -> object:
    return CODEC.encode(value)


def decode(data) -> object:
    return CODEC.decode(data)


def contract_entry(text: str, path: str) -> str:
    """A contract's entry: its text and the path statements name it by."""
    return store.entry_key("contract", path.encode("utf-8", "surrogateescape") + b"\0" + text.encode("utf-8"))


def tree_entry(contract: str) -> str:
    """The entry of the tree of the contract whose entry is `contract`."""
    return "tree-" + contract.removeprefix("contract-")


def tree_identity(program) -> bytes:
    """What names a tree that has no contract entry (one built in memory): its encoding."""
    return json.dumps(encode(program), separators=(",", ":")).encode()


def query_entry(contract: bytes, period, dialect: str, tables, params, options) -> str | None:
    """The entry of the query for `contract` (a contract entry's name or `tree_identity`) and
    everything else the compiler reads; None when a parameter value cannot be written (such a
    query is compiled every time)."""
    try:
        described = encode((period.text, tuple(period.months), dialect, sorted((tables or {}).items()),
                            sorted((params or {}).items()), options))
    except TypeError:
        return None
    return store.entry_key("query", contract + b"\0" + json.dumps(described, separators=(",", ":")).encode())
