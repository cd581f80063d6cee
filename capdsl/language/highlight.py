"""Syntax highlighting for `.cap` files: a Pygments lexer and a helper that
shows source lines highlighted in the terminal (`capdsl explain`).

The lexer is registered as the Pygments entry point `cap`, so MkDocs code
blocks fenced with ```cap and `pygmentize -l cap` use it. It follows
grammar/cap.lark by word lists, not by parsing, so it also colours
half-written contracts in an editor. editors/vscode/syntaxes/cap.tmLanguage.json
is its TextMate twin; keep the word lists of both in step.
"""

from __future__ import annotations

from typing import Iterable

from pygments.lexer import RegexLexer, bygroups, include, words
from pygments.token import (Comment, Keyword, Literal, Name, Number, Operator, Punctuation, String, Text,
                            Whitespace)

DECLARATIONS = ("contract", "inputs", "define", "bands", "cells", "tier", "modifier", "schedule", "line", "pool",
                "settlement", "example")
KEYWORDS = ("end", "payer", "provider", "currency", "period", "age", "as", "exposure", "rounding", "per",
            "report", "at", "ref", "by", "to", "under", "over", "when", "otherwise", "combine", "amount",
            "applies", "basis", "paid", "rest", "set", "aged", "born", "enrolled", "from", "code", "on",
            "expect", "if", "then", "else", "sum", "count", "with", "for", "where", "present", "missing", "any",
            "list", "rate", "during", "until", "total", "cap", "floor", "corridor", "around", "within", "share",
            "retroactive")
WORD_OPERATORS = ("and", "or", "not", "in", "is", "of")
SCOPES = ("member", "practice", "event", "measure", "param", "calendar")
TYPES = ("bool", "text", "date", "number", "integer", "percent", "money")
UNITS = ("points", "point", "hours", "hour", "days", "day", "members", "member", "events", "year", "months")
#: The months a payment falls in (`paid in June`, `50% in H1`), as the grammar's PAY_TIME spells them.
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December")
CONSTANTS = ("month_start", "month_end", "quarter_start", "year_start", "first_day", "pro_rata", "any_day",
             "half_up", "half_even", "down", "up", "month", "quarter", "highest", "lowest", "multiply", "add",
             "first", "monthly", "quarterly", "Q1", "Q2", "Q3", "Q4", "H1", "H2") + MONTH_NAMES
FUNCTIONS = ("min", "max", "clamp", "abs", "round", "years_between", "months_between", "days_between")


class CapLexer(RegexLexer):
    """Pygments lexer for capdsl contracts (`.cap`)."""

    name = "cap"
    aliases = ["cap", "capdsl"]
    filenames = ["*.cap"]
    mimetypes = ["text/x-capdsl"]

    tokens = {
        "root": [
            (r"[ \t\f]+", Whitespace),
            (r"\r?\n", Whitespace),
            (r"\\[ \t\f]*(?=\r?\n)", Punctuation),  # line continuation
            (r"#.*?$", Comment.Single),
            (r'"', String.Double, "string"),
            (r"(per)([ \t\f]+)(line)(?![\w])", bygroups(Keyword, Whitespace, Keyword)),  # rounding … per line
            # the name a declaration introduces
            (r"(define|bands|cells|tier|modifier|schedule)([ \t\f]+)(\w+)", bygroups(Keyword.Declaration, Whitespace,
                                                                        Name.Function)),
            (r"(line|pool|settlement)([ \t\f]+)(\w+)", bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (words(DECLARATIONS, prefix=r"(?<![\w.])", suffix=r"(?![\w])"), Keyword.Declaration),
            # member.age: the scope, the dot, the attribute
            (r"(?<![\w.])(member|practice|event|measure|param|calendar)(\.)(\w+)",
             bygroups(Name.Builtin, Punctuation, Name.Attribute)),
            (r"(per)([ \t\f]+)(?!line(?![\w]))(\w+)", bygroups(Keyword, Whitespace, Keyword.Type)),  # CZK per member
            # an input declaration: `event points: points`
            (r"(?<![\w.])(member|practice|event|measure|param)([ \t\f]+)(\w+)([ \t\f]*)(:)",
             bygroups(Name.Builtin, Whitespace, Name.Variable, Whitespace, Punctuation)),
            # `over member events during year`: the member's own events, a source like `members`, and its window
            (r"(?<![\w.])(member)([ \t\f]+)(events)(?![\w])", bygroups(Keyword.Type, Whitespace, Keyword.Type)),
            (r"(?<![\w.])(during)([ \t\f]+)(month|quarter|year)(?![\w])", bygroups(Keyword, Whitespace, Keyword.Type)),
            (words(SCOPES, prefix=r"(?<![\w.])", suffix=r"(?![\w])"), Name.Builtin),
            include("literals"),
            (words(("true", "false"), prefix=r"(?<![\w.])", suffix=r"(?![\w])"), Keyword.Constant),
            (words(WORD_OPERATORS, prefix=r"(?<![\w.])", suffix=r"(?![\w])"), Operator.Word),
            (words(KEYWORDS, prefix=r"(?<![\w.])", suffix=r"(?![\w])"), Keyword),
            (words(TYPES + UNITS, prefix=r"(?<![\w.])", suffix=r"(?![\w])"), Keyword.Type),
            (r"(?<![\w.])[A-Z]{3}(?![\w])", Keyword.Type),  # currency codes
            (words(CONSTANTS, prefix=r"(?<![\w.])", suffix=r"(?![\w])"), Name.Constant),
            (r"(\w+)(?=[ \t\f]*\()", Name.Function),
            (r"(?![0-9])\w+", Name),
            (r">=|<=|!=|==|[-+*/=<>]", Operator),
            (r"[(),:.]", Punctuation),
            (r".", Text),
        ],
        "literals": [
            (r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?![\w])", Literal.Date),
            (r"[0-9]{4}-(Q[1-4]|0[1-9]|1[0-2])(?![\w.])", Literal.Date),
            (r"[0-9]+(\.[0-9]+)?[ \t]*%", Number.Float),
            (r"[0-9]+\.[0-9]+(?![\w.])", Number.Float),
            (r"[0-9]+(?![\w.])", Number.Integer),
        ],
        "string": [
            (r'\\.', String.Escape),
            (r'[^"\\\n]+', String.Double),
            (r'"', String.Double, "#pop"),
            (r"\n", Text, "#pop"),  # an unclosed string ends with its line
        ],
    }


def _runs(lines: Iterable[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for line in sorted(set(lines)):
        if out and line == out[-1][1] + 1:
            out[-1][1] = line
        else:
            out.append([line, line])
    return [(a, b) for a, b in out]


def highlight_lines(text: str, lines: Iterable[int], *, theme: str = "ansi_dark", context: int = 0):
    """A rich renderable showing `lines` (1-based) of `text`, highlighted, with
    line numbers; runs of adjacent lines are shown together. The whole text is
    lexed, so a line inside a string or after a continuation is coloured right."""
    from rich.console import Group
    from rich.syntax import Syntax

    total = max(1, len(text.splitlines()))
    wanted = {max(1, min(total, n + d)) for n in lines for d in range(-context, context + 1)}
    lexer = CapLexer()
    return Group(*(Syntax(text, lexer, theme=theme, line_numbers=True, line_range=(a, b), word_wrap=True,
                          background_color="default")
                   for a, b in _runs(wanted)))


def to_ansi(renderable, width: int = 120) -> str:
    """Render a rich renderable to a string with ANSI colours."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=True, color_system="standard").print(renderable)
    return buffer.getvalue()
