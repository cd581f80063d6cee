"""The language's built-in vocabulary in one table: the attributes every panel provides, the panel
columns with a fixed meaning, the age rules and the exposure rules.

The checker, the lowering, the panel loader's requirements, the language server and the SQL
compiler read these tables; `capdsl.evaluation.months` gives the age and exposure rules their
meaning for every engine. A new built-in is added here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

#: The kinds of value the evaluation tree and the panel loader know (a declared input's type, as
#: `capdsl.evaluation.lower.kind_of` maps it, is one of them).
KINDS = ("bool", "text", "date", "integer", "decimal")
#: The scopes an attribute is written in (`member.age`, `param.rate`), as the grammar's SCOPE spells them.
SCOPES = ("member", "practice", "event", "measure", "param", "calendar")
#: The panel file each scope's attributes come from.
TABLE_OF_SCOPE = {"member": "members", "practice": "practices", "event": "events", "measure": "measures"}
#: The start of the names capdsl keeps for itself (its internal columns and tables): no author's name
#: may begin with it (E0212).
RESERVED_PREFIX = "_"
#: The words an expression always reads as the language's (an aggregate, a condition, a boolean, a
#: scope), so a definition, table or line of that name could never be read (E0212). Every other
#: keyword is a name wherever a name is expected.
UNREADABLE_NAMES = ("sum", "count", "if", "not", "true", "false") + SCOPES


@dataclass(frozen=True, slots=True)
class Builtin:
    """An attribute a contract reads without declaring it (`member.age`, `event.code`)."""

    scope: str
    name: str
    kind: str  # the evaluation tree's kind: text | date | integer | decimal
    column: str | None  # the panel column read; None for a value capdsl derives (member.age)
    doc: str
    #: For an optional field, what an empty value means; None: the value is always there.
    missing: str | None = None
    #: For an optional date, where an empty value sorts: -1 before every date (an enrolment open at its
    #: start), 1 after every date (open at its end); 0: it has no place, a comparison has no answer.
    open_end: int = 0
    #: Whether an embedded example may set it on a member or event (`with sex = "F"`); the others are
    #: given by the example's own clauses (`born`, `of`) or derived.
    settable: bool = False

    @property
    def written(self) -> str:
        return f"{self.scope}.{self.name}"

    @property
    def tree_column(self) -> str:
        """The name the evaluation tree's `Col` reads it under: its panel column, or for a value capdsl
        derives, its own name (`Col("member", "age")`)."""
        return self.column or self.name


@dataclass(frozen=True, slots=True)
class StandardColumn:
    """A panel column with a meaning of its own. A contract reads it through `read_as` (a built-in
    or, for `points`, a declared input of the given type), never under the column's name."""

    table: str
    name: str
    kind: str
    required: bool = False
    default: Decimal | None = None
    read_as: str | None = None  # how a contract reads it, e.g. "member.id"; None: not at all
    doc: str = ""
    #: Whether every evaluation reads it, whether a contract names it or not: the member-month and
    #: event frames are built from it (enrolment, age, the practice), or, in measures, the lookup.
    always_read: bool = True

    @property
    def meaning(self) -> str:
        """What the column holds: its own description, or that of the built-in it is read as."""
        if self.doc or self.read_as is None:
            return self.doc
        scope, name = self.read_as.split(".")
        return BUILTINS[(scope, name)].doc


BUILTIN_LIST = (
    Builtin("member", "id", "text", "member_id", "the member's id"),
    Builtin("member", "age", "integer", None, "the member's age in completed years on the contract's age day"),
    Builtin("member", "birth_date", "date", "birth_date", "the member's date of birth"),
    Builtin("member", "enrolled_from", "date", "enrolled_from", "the first day of the member's registration",
            missing="the member has been enrolled since always", open_end=-1),
    Builtin("member", "enrolled_to", "date", "enrolled_to", "the last day of the member's registration",
            missing="the member is still enrolled", open_end=1),
    Builtin("member", "sex", "text", "sex", "the member's sex", missing="the member's sex is not recorded",
            settable=True),
    Builtin("practice", "id", "text", "practice_id", "the practice's id"),
    Builtin("event", "code", "text", "code", "the service's code in the fee schedule"),
    Builtin("event", "date", "date", "date", "the day the service was given"),
    Builtin("event", "quantity", "decimal", "quantity", "how many times the service was given (1 when empty)",
            settable=True),
    Builtin("event", "member", "text", "member_id", "the event's patient",
            missing="the event's patient is not known", settable=True),
)
BUILTINS: dict[tuple[str, str], Builtin] = {(b.scope, b.name): b for b in BUILTIN_LIST}
#: Built-ins whose value may be empty, so that a contract must say what an empty value does (in the
#: order messages list them). Declared inputs never are: without a default their column and every
#: value are required; with one, an empty value takes the default.
OPTIONAL_FIELDS: dict[tuple[str, str], str] = {k: b.missing for k, b in BUILTINS.items() if b.missing}

_C = StandardColumn
STANDARD_COLUMNS: dict[str, tuple[StandardColumn, ...]] = {
    "members": (_C("members", "member_id", "text", True, read_as="member.id"),
                _C("members", "practice_id", "text", True, read_as="practice.id",
                   doc="the practice the member is registered with"),
                _C("members", "birth_date", "date", True, read_as="member.birth_date"),
                _C("members", "sex", "text", read_as="member.sex", always_read=False),
                _C("members", "enrolled_from", "date", read_as="member.enrolled_from"),
                _C("members", "enrolled_to", "date", read_as="member.enrolled_to")),
    "practices": (_C("practices", "practice_id", "text", True, read_as="practice.id"),),
    "events": (_C("events", "practice_id", "text", True, read_as="practice.id",
                  doc="the practice the event is paid to"),
               _C("events", "member_id", "text", read_as="event.member"),
               _C("events", "date", "date", True, read_as="event.date"),
               _C("events", "code", "text", True, read_as="event.code"),
               _C("events", "points", "decimal", doc="fee-schedule points", always_read=False),
               _C("events", "quantity", "decimal", default=Decimal(1), read_as="event.quantity")),
    "measures": (_C("measures", "practice_id", "text", True), _C("measures", "period", "text", True),
                 _C("measures", "measure", "text", True), _C("measures", "value", "text", True)),
}
#: Standard columns a contract may declare as an input of its own, as the number the panel checks
#: them to be, with what they hold.
DECLARABLE_COLUMNS: dict[tuple[str, str], str] = {("event", "points"): "fee-schedule points"}
#: The functions an expression may call, with their least and greatest number of arguments (None:
#: any number).
FUNCTIONS: dict[str, tuple[int, int | None]] = {"min": (2, None), "max": (2, None), "clamp": (3, 3), "abs": (1, 1),
                                                 "round": (2, 3), "years_between": (2, 2),
                                                 "months_between": (2, 2), "days_between": (2, 2)}
#: What each function does, for hover and completion (and the docs' table).
FUNCTION_DOCS: dict[str, str] = {
    "min": "min(a, b, …): the least of two or more values of one unit",
    "max": "max(a, b, …): the greatest of two or more values of one unit",
    "clamp": "clamp(x, low, high): x held between low and high",
    "abs": "abs(x): x without its sign",
    "round": "round(x, quantum[, mode]): x rounded to a multiple of the positive constant `quantum` "
             "with the contract's rounding mode, or the mode named (half_up, half_even, down, up)",
    "years_between": "years_between(a, b): the completed years from date a to date b, as `member.age` "
                     "counts them (a birthday on 29 February completes its year on 1 March in other "
                     "years); negative when b is before a",
    "months_between": "months_between(a, b): the completed months from date a to date b (a month is "
                      "complete on b's day of the month reaching a's); negative when b is before a",
    "days_between": "days_between(a, b): the days from date a to date b (b − a)",
}
#: The rounding modes `round(x, q, mode)` and the header's `rounding` clause name.
ROUNDING_MODES = ("half_up", "half_even", "down", "up")
#: The functions whose arguments are dates, with the unit `tree.DateDiff` counts in.
DATE_FUNCTIONS: dict[str, str] = {"years_between": "year", "months_between": "month", "days_between": "day"}


@dataclass(frozen=True, slots=True)
class CalendarValue:
    """A value of the evaluated month that any expression reads (`calendar.quarter`). In a pool,
    which is evaluated once a year, the month is December."""

    name: str
    kind: str  # integer | date
    doc: str

    @property
    def written(self) -> str:
        return f"calendar.{self.name}"


CALENDAR: dict[str, CalendarValue] = {c.name: c for c in (
    CalendarValue("month", "integer", "the evaluated month's number, 1 (January) to 12"),
    CalendarValue("quarter", "integer", "the evaluated month's quarter, 1 to 4"),
    CalendarValue("half", "integer", "the evaluated month's half-year, 1 (January–June) or 2"),
    CalendarValue("year", "integer", "the evaluated month's year"),
    CalendarValue("month_start", "date", "the first day of the evaluated month"),
    CalendarValue("month_end", "date", "the last day of the evaluated month"),
    CalendarValue("quarter_start", "date", "the first day of the evaluated month's quarter"),
    CalendarValue("year_start", "date", "1 January of the evaluated month's year"),
)}


def standard_column(scope: str, name: str) -> StandardColumn | None:
    """The standard column a declared input `scope.name` would read, if it is one."""
    for c in STANDARD_COLUMNS.get(TABLE_OF_SCOPE.get(scope, ""), ()):
        if c.name == name:
            return c
    return None


# ───────────────────────────── payment times ─────────────────────────────

MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December")
#: The months a payment can be written to fall in (`paid in June`, `50% in Q2`, `rest in H2`): a month
#: by its name, a quarter or a half-year by its last month (installments are paid in arrears).
PAY_TIMES: dict[str, int] = {**{name: i + 1 for i, name in enumerate(MONTH_NAMES)},
                             **{f"Q{q}": 3 * q for q in range(1, 5)}, **{f"H{h}": 6 * h for h in (1, 2)}}
#: `paid monthly` / `paid quarterly`: the months paid in.
FREQUENCIES: dict[str, tuple[int, ...]] = {"monthly": tuple(range(1, 13)), "quarterly": (3, 6, 9, 12)}
#: `rate per month|quarter|year`, and `member events during …`: the months of each period.
PERIOD_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}


def month_label(month: int) -> str:
    return MONTH_NAMES[month - 1]


#: What `paid monthly` / `paid quarterly` mean, for hover and completion.
FREQUENCY_DOCS: dict[str, str] = {
    "monthly": "paid every month (a line's default); a pool: in twelve equal parts, January to December",
    "quarterly": "paid in March, June, September and December, each quarter's last month; a pool: in four "
                 "equal parts",
}
#: What `rate per month|quarter|year` means, for hover and completion.
RATE_DOCS: dict[str, str] = {
    "month": "the amount is a rate per month (the default): in a month the line is paid it pays the rate once "
             "for each month since its previous payment",
    "quarter": "the amount is a rate per quarter: in a month the line is paid it pays the rate × the months since "
               "its previous payment ÷ 3 — with `paid quarterly`, the quarter's fee once a quarter",
    "year": "the amount is a rate per year: in a month the line is paid it pays the rate × the months since its "
            "previous payment ÷ 12 — a twelfth each month, or with `paid in December` the whole amount once",
}
#: What `member events during month|quarter|year` reads, for hover and completion.
EVENT_WINDOW_DOCS: dict[str, str] = {
    "month": "the member's own events (any practice) dated in the evaluated month (the default window)",
    "quarter": "the member's own events (any practice) dated in the evaluated month's quarter",
    "year": "the member's own events (any practice) dated in the evaluated month's year",
}


def pay_time_doc(word: str) -> str:
    """What a payment month word means (`June`, `Q2`, `H1`), for hover and completion."""
    month = month_label(PAY_TIMES[word])
    if word[0] == "Q" and word[1:].isdigit():
        return f"the last month of quarter {word[1]}: {month}"
    if word[0] == "H" and word[1:].isdigit():
        return f"the last month of the {'first' if word == 'H1' else 'second'} half-year: {month}"
    return month


# ───────────────────────────── age and exposure rules ─────────────────────────────

@dataclass(frozen=True, slots=True)
class AgeRule:
    """`age as of <name>`: the day in a month's period on which a member's age is taken."""

    name: str
    period: str  # the period whose first or last day it is: month | quarter | year
    end: str  # start | end
    doc: str


@dataclass(frozen=True, slots=True)
class ExposureRule:
    """`exposure <name>`: whether a member counts in a month, and for how much."""

    name: str
    counts: str  # first_day: enrolled on the first day of `period`; any_day: on at least one day of the month
    weight: str  # whole: 1 for a month counted; days: the share of the month's days enrolled
    doc: str
    #: first_day only: the period whose first day the list is taken on (month, or for a list held for
    #: the months of a quarter or year, `list as of quarter_start`, that period)
    period: str = "month"


AGE_RULES: dict[str, AgeRule] = {r.name: r for r in (
    AgeRule("month_start", "month", "start", "the age on the first day of the month"),
    AgeRule("month_end", "month", "end", "the age on the last day of the month"),
    AgeRule("quarter_start", "quarter", "start", "the age on the first day of the month's quarter"),
    AgeRule("year_start", "year", "start", "the age on 1 January of the month's year"),
)}
EXPOSURE_RULES: dict[str, ExposureRule] = {r.name: r for r in (
    ExposureRule("first_day", "first_day", "whole", "a member counts for a month enrolled on its first day"),
    ExposureRule("any_day", "any_day", "whole", "a member counts for a month enrolled on any day of it"),
    ExposureRule("pro_rata", "any_day", "days", "a member counts for the share of the month's days enrolled"),
    ExposureRule("quarter_start", "first_day", "whole", "`list as of quarter_start`: a member counts in each month "
                 "of a quarter enrolled on the quarter's first day", "quarter"),
    ExposureRule("year_start", "first_day", "whole", "`list as of year_start`: a member counts in each month of a "
                 "year enrolled on 1 January", "year"),
)}
#: `list as of <day>`: the exposure rule it sets (and the age rule it implies, unless `age as of` is given).
LIST_DAYS: dict[str, str] = {"month_start": "first_day", "quarter_start": "quarter_start", "year_start": "year_start"}
DEFAULT_AGE_RULE = "month_start"
DEFAULT_EXPOSURE = "first_day"
