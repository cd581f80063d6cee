"""A lean LALR driver over Lark's own tables: the fast path of `syntax.parse`.

Lark builds the grammar, the parse table and the contextual lexer's
per-state scanners; this module only runs them, without the per-token and
per-node objects Lark's general driver allocates (`Token` with line
counting, `Tree` with propagated positions), which are two thirds of its
time. Reductions call the AST builder directly with the node's span.

It is a pure optimisation and never decides anything on its own: on any
input it cannot take without a question (a character no scanner accepts, a
token the table has no action for, a builder error, nesting deeper than the
limits allow) it raises `Fallback`, and `syntax.parse` re-runs the input
through Lark so that every diagnostic comes from one place, the same way.
`tests/test_lalr.py` checks both paths give the same AST.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

from lark import Lark
from lark.lexer import _create_unless
from lark.parsers.lalr_analysis import Shift

from capdsl.errors import NO_SPAN, Span

# Three times the expression nesting limit of `syntax` (MAX_NESTING): a
# node's height counts 1 per level and 3 per if/sum/count form, so any tree
# the exact check would reject exceeds it and takes the slow path.
MAX_HEIGHT = 300
_OPENING = frozenset({"if_expr", "sum_over", "count_of"})


class Fallback(Exception):
    """The fast path declines this input; the Lark path decides."""


class Tok(str):
    """A token's text, its terminal name and where it starts and ends (character offsets)."""

    type: str
    start_pos: int
    end_pos: int


class _Inline:
    """The result of an inlined `_rule`: its children join the parent's."""

    __slots__ = ("children",)

    def __init__(self, children):
        self.children = children


@dataclass(frozen=True, slots=True)
class _Rule:
    size: int
    origin: str
    name: str                  # builder method (alias or rule name)
    include: tuple             # (index, expand_inline, nones_before) per kept child
    append_none: int
    expand1: bool              # `?rule`: a single kept child passes through
    inline: bool               # `_rule`: children are spliced into the parent
    opening: int               # extra height for if/sum/count
    passthrough: bool          # one child, kept as it is: value, extent and height unchanged
    simple: tuple | None       # indexes of the kept children, when none is inlined or absent


class Driver:
    """Parse tables and scanners, taken once from a built Lark parser."""

    def __init__(self, lark: Lark):
        frontend = lark.parser
        table = frontend.parser.parser.parse_table
        self.start = table.start_states["start"]
        self.end = table.end_states["start"]
        rules: dict[int, _Rule] = {}
        reduced = []
        self.actions: dict[int, dict[str, tuple[bool, object]]] = {}
        self.goto: dict[int, dict[str, int]] = {}
        for state, row in table.states.items():
            acts = {}
            gotos = {}
            for symbol, (action, arg) in row.items():
                if action is Shift:  # for a terminal a shift, for a rule name the goto
                    acts[symbol] = (True, arg)
                    gotos[symbol] = arg
                else:
                    key = id(arg)
                    if key not in rules:
                        rules[key] = _describe_rule(arg)
                        reduced.append(arg)
                    acts[symbol] = (False, rules[key])
            self.actions[state] = acts
            self.goto[state] = gotos
        # Terminals whose text the builder reads; the rest (keywords, punctuation,
        # newlines) Lark filters out of every rule.
        self.kept = frozenset(sym.name for rule in reduced for sym in rule.expansion
                              if sym.is_term and (rule.options.keep_all_tokens or not sym.filter_out))
        self.chains: dict[tuple[int, int, str], int] = {}
        # Scanners are built on first use: a contract visits a fraction of the states.
        self._lexers = frontend.lexer.lexers
        self._built: dict[int, tuple] = {}
        self.scanners: dict[int, tuple] = {}

    def _scanner(self, state: int) -> tuple:
        """The state's scanner: the alternation Lark built for the terminals the
        state accepts, and Lark's keyword-unless rules."""
        basic = self._lexers[state]
        built = self._built.get(id(basic))
        if built is None:
            # What Lark's BasicLexer._build_scanner does, compiled once with our prefix.
            terminals, callbacks = _create_unless(basic.terminals, basic.g_regex_flags, basic.re, basic.use_bytes)
            unless = {}
            for type_, callback in callbacks.items():
                words = callback.scanner.terminals
                if any(t.pattern.flags for t in words):
                    raise RuntimeError(f"unsupported lexer callback for {type_}")  # pragma: no cover
                unless[type_] = {t.pattern.value: t.name for t in words}
            # White space is ignored everywhere and starts no other terminal, so a
            # possessive prefix skips it inside the match instead of as a token of its own.
            alternation = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terminals)
            mre = re.compile(r"[\t \f]*+(?:" + alternation + ")", basic.g_regex_flags)
            built = self._built[id(basic)] = (mre, unless, frozenset(basic.ignore_types))
        self.scanners[state] = built
        return built

    def _chain(self, below: int, top: int, type_: str) -> int:
        """The top state after every pass-through reduction `type_` triggers over `below`."""
        while True:
            act = self.actions[top].get(type_)
            if act is None or act[0] or not act[1].passthrough:
                return top
            top = self.goto[below][act[1].origin]

    def parse(self, text: str, builder):
        """The builder's result for `text` (which ends with a newline), or `Fallback`."""
        line_starts = [0]
        find = text.find
        i = find("\n")
        while i >= 0:
            line_starts.append(i + 1)
            i = find("\n", i + 1)

        def span(start: int, end: int) -> Span:
            line = bisect_right(line_starts, start)
            end_line = bisect_right(line_starts, end)
            return Span(line, start - line_starts[line - 1] + 1, end_line, end - line_starts[end_line - 1] + 1)

        builder.span_of = span
        methods: dict[str, object] = {}
        chains = self.chains
        actions = self.actions
        goto = self.goto
        scanners = self.scanners
        end_state = self.end
        states = [self.start]
        # One entry per parsed symbol: (value, start, end, height). `start`/`end`
        # are the character extent (None for an empty rule), `height` bounds nesting.
        entries: list[tuple] = []
        kept = self.kept
        pos = 0
        length = len(text)
        try:
            while True:
                # ── next token, scanned with the current state's terminals
                if pos < length:
                    mre, unless, ignore = scanners.get(states[-1]) or self._scanner(states[-1])
                    while True:
                        m = mre.match(text, pos)
                        if m is None:
                            raise Fallback
                        type_ = m.lastgroup
                        start, pos = m.span(type_)
                        if type_ not in ignore:
                            break
                        if pos >= length:
                            type_ = "$END"
                            break
                    words = unless.get(type_)
                    if words is not None:
                        type_ = words.get(m.group(type_), type_)
                else:
                    type_, start = "$END", pos
                # ── reduce as long as the table says so, then shift
                while True:
                    act = actions[states[-1]].get(type_)
                    if act is None:
                        raise Fallback
                    shift, arg = act
                    if shift:
                        states.append(arg)
                        if type_ in kept:  # keywords and punctuation never reach the builder
                            tok = Tok(m.group(type_))
                            tok.type = type_
                            tok.start_pos = start
                            tok.end_pos = pos
                            entries.append((tok, start, pos, 0))
                        else:
                            entries.append((None, start, pos, 0))
                        break
                    rule = arg
                    if rule.passthrough:
                        # `?sum: product` and the like change only the state, and a run of
                        # them depends only on the two top states and the lookahead.
                        key = (states[-2], states[-1], type_)
                        top = chains.get(key)
                        if top is None:
                            top = chains[key] = self._chain(*key)
                        states[-1] = top
                        continue
                    size = rule.size
                    if size:
                        children = entries[-size:]
                        del entries[-size:], states[-size:]
                        first = children[0][1]
                        if first is None:
                            first = next((c[1] for c in children if c[1] is not None), None)
                        last = children[-1][2]
                        if last is None:
                            last = next((c[2] for c in reversed(children) if c[2] is not None), None)
                        height = children[0][3] if size == 1 else max([c[3] for c in children])
                    else:
                        children = ()
                        height = 0
                        first = last = None
                    if rule.simple is not None:
                        items = [children[i][0] for i in rule.simple]
                    else:
                        items = []
                        for index, expand, nones in rule.include:
                            if nones:
                                items += [None] * nones
                            if expand:
                                items += children[index][0].children
                            else:
                                items.append(children[index][0])
                        if rule.append_none:
                            items += [None] * rule.append_none
                    if rule.inline:
                        value = _Inline(items)
                    elif rule.expand1 and len(items) == 1:
                        value = items[0]
                    else:
                        height += 1 + rule.opening
                        if height > MAX_HEIGHT:
                            raise Fallback
                        method = methods.get(rule.name)
                        if method is None:
                            method = methods[rule.name] = getattr(builder, rule.name, None)
                            if method is None:
                                raise Fallback
                        value = method(span(first, last) if first is not None else NO_SPAN, items)
                    state = goto[states[-1]][rule.origin]
                    if state == end_state and type_ == "$END":
                        return value
                    states.append(state)
                    entries.append((value, first, last, height))
        except Fallback:
            raise
        except Exception as exc:  # a builder error: the Lark path reports it in the usual order
            raise Fallback from exc


def _describe_rule(rule) -> _Rule:
    expansion = rule.expansion
    options = rule.options
    empty = options.empty_indices
    if empty:
        bits = "".join(str(int(b)) for b in empty)
        nones_at = [len(ones) for ones in bits.split("0")]
    else:
        nones_at = [0] * (len(expansion) + 1)
    include = []
    pending = 0
    for i, sym in enumerate(expansion):
        pending += nones_at[i]
        if options.keep_all_tokens or not (sym.is_term and sym.filter_out):
            include.append((i, (not sym.is_term) and sym.name.startswith("_"), pending))
            pending = 0
    pending += nones_at[len(expansion)]
    origin = rule.origin.name
    name = rule.alias or options.template_source or origin
    expand1 = bool(options.expand1) and not rule.alias
    return _Rule(
        simple=tuple(i for i, _, _ in include)
        if pending == 0 and not any(expand or nones for _, expand, nones in include) else None,
        passthrough=expand1 and len(expansion) == 1 and include == [(0, False, 0)] and pending == 0,
        size=len(expansion),
        origin=origin,
        name=name,
        include=tuple(include),
        append_none=pending,
        expand1=expand1,
        inline=origin.startswith("_"),
        opening=2 if name in _OPENING else 0,
    )
