"""Values as a run's messages name them, alike whichever engine stopped (the interpreter, or a SQL
backend reading them back from its failure's payload). Imports no tree: a cached query's errors
are read without it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal


def shown(values) -> str:
    """Values as a failure's message names them, alike whichever engine stopped: text in quotes,
    numbers without trailing zeros, `missing` for no value."""
    def one(v) -> str:
        if v is None:
            return "missing"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, (int, Decimal)):
            text = f"{Decimal(v).normalize():f}"
            return "0" if text in ("-0", "0") else text
        if isinstance(v, date):
            return v.isoformat()
        return str(v)

    return ", ".join(one(v) for v in values)
