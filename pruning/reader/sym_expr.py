"""Symbolic size expressions, parsed as data and bounded before sympy ever sees them.

torch writes a symbolic size with `sympy.srepr`, e.g.
`Mul(Integer(2), Symbol('s77', positive=True, integer=True))`, and reads it back with
`sympy.sympify`, which is `eval` and evaluates while it builds: `Pow(Integer(3),
Integer(10**8))` alone computes a 160-million-bit integer, and nested powers run for hours.
So an expression is parsed here, without evaluating anything, with a grammar of srepr's
form only (calls of allowlisted classes, integer literals, symbol names as strings, keyword
flags), and refused when it is unlike anything torch writes: too long, too deep, too many
terms, an integer literal past int64, a power of a literal (sympy folds those, so torch
never writes one), an exponent that is not a small integer literal, or a polynomial degree
past `MAX_DEGREE`. Whatever passes costs little to build and to evaluate at any size hint
(at most `MAX_DEGREE` factors of int64 values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pruning.errors import UnsafeModel

MAX_LENGTH = 2000
MAX_DEPTH = 24
MAX_NODES = 200
MAX_DEGREE = 16
MAX_EXPONENT = 8
_INT64 = 2**63

_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]{0,40})|(?P<int>[0-9]{1,20})"
    r"|(?P<str>'[^'\\]{0,40}')|(?P<punct>[-(),=]))"
)
SYMBOL = re.compile(r"^[a-z]{1,4}[0-9]{1,9}$")
_DECIMAL = re.compile(r"^-?[0-9]{1,20}(\.[0-9]{0,20})?(e[-+]?[0-9]{1,3})?$")
_CONSTANTS = frozenset({"oo", "zoo", "nan", "true", "false", "True", "False"})
_ASSUMPTIONS = frozenset(
    "positive negative nonnegative nonpositive integer real finite zero nonzero".split()
)
_POWERS = frozenset({"Pow", "PowByNatural", "FloatPow"})
_SUMS = frozenset({"Mul"})  # degree adds up; every other function keeps the largest degree
_FUNCTIONS = frozenset(
    """Add Mul Pow Max Min Abs Eq Ne Lt Le Gt Ge Equality Unequality StrictLessThan LessThan
    StrictGreaterThan GreaterThan And Or Not FloorDiv CeilDiv ModularIndexing Where PythonMod
    Mod CleanDiv CeilToInt FloorToInt IntTrueDiv FloatTrueDiv PowByNatural FloatPow
    TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat Identity""".split()
)


@dataclass(frozen=True)
class _Node:
    kind: str  # "int", "symbol", "const", "number" (Rational/Float), "call"
    degree: int
    value: int = 0  # for "int"


class _Parser:
    """A recursive-descent parser over srepr's grammar, bounded in depth and size."""

    def __init__(self, text: str, where: str) -> None:
        self.tokens = _tokenize(text, where)
        self.pos = 0
        self.nodes = 0
        self.where = where

    def fail(self, what: str) -> UnsafeModel:
        return UnsafeModel(f"{self.where}: refused symbolic expression ({what})")

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, kind: str, text: str | None = None) -> str:
        tok_kind, tok = self.peek()
        if tok_kind != kind or (text is not None and tok != text):
            raise self.fail(f"expected {text or kind}, found {tok[:20]!r}")
        self.pos += 1
        return tok

    def expr(self, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise self.fail("nested too deeply")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail("too many terms")
        kind, tok = self.peek()
        if kind == "punct" and tok == "-":  # srepr writes -oo
            self.pos += 1
            self.take("name", "oo")
            return _Node("const", 0)
        name = self.take("name")
        if name in _CONSTANTS:
            return _Node("const", 0)
        self.take("punct", "(")
        if name == "Symbol":
            node = self.symbol()
        elif name == "Integer":
            node = _Node("int", 0, self.integer())
        elif name == "Rational":
            self.integer()
            self.take("punct", ",")
            if self.integer() == 0:
                raise self.fail("zero denominator")
            node = _Node("number", 0)
        elif name == "Float":
            self.decimal()
            node = _Node("number", 0)
        elif name in _FUNCTIONS:
            node = self.call(name, depth)
        else:
            raise self.fail(f"name {name!r} is not allowed")
        self.take("punct", ")")
        return node

    def symbol(self) -> _Node:
        if not SYMBOL.match(self.take("str").strip("'")):
            raise self.fail("symbol name")
        while self.peek() == ("punct", ","):
            self.pos += 1
            if self.take("name") not in _ASSUMPTIONS:
                raise self.fail("symbol assumption")
            self.take("punct", "=")
            if self.take("name") not in ("True", "False"):
                raise self.fail("symbol assumption value")
        return _Node("symbol", 1)

    def integer(self) -> int:
        sign = 1
        if self.peek() == ("punct", "-"):
            self.pos += 1
            sign = -1
        value = sign * int(self.take("int"))
        if not -_INT64 <= value < _INT64:
            raise self.fail("integer literal out of range")
        return value

    def decimal(self) -> None:
        if not _DECIMAL.match(self.take("str").strip("'")):
            raise self.fail("float literal")
        if self.peek() == ("punct", ","):
            self.pos += 1
            self.take("name", "precision")
            self.take("punct", "=")
            if not 1 <= self.integer() <= 113:
                raise self.fail("float precision")

    def call(self, name: str, depth: int) -> _Node:
        args = [self.expr(depth + 1)]
        while self.peek() == ("punct", ","):
            self.pos += 1
            args.append(self.expr(depth + 1))
        if name in _POWERS:
            return self.power(args)
        degrees = [a.degree for a in args]
        degree = sum(degrees) if name in _SUMS else max(degrees)
        if degree > MAX_DEGREE:
            raise self.fail(f"degree above {MAX_DEGREE}")
        return _Node("call", degree)

    def power(self, args: list[_Node]) -> _Node:
        if len(args) != 2:
            raise self.fail("a power takes two arguments")
        base, exponent = args
        if base.kind in ("int", "number", "const"):
            raise self.fail("power of a literal")
        if exponent.kind != "int" or abs(exponent.value) > MAX_EXPONENT:
            raise self.fail(f"exponent must be an integer literal of at most {MAX_EXPONENT}")
        degree = base.degree * abs(exponent.value)
        if degree > MAX_DEGREE:
            raise self.fail(f"degree above {MAX_DEGREE}")
        return _Node("call", degree)


def _tokenize(text: str, where: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.lastgroup is None:
            raise UnsafeModel(f"{where}: refused symbolic expression {text[:80]!r}")
        tokens.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return tokens


def check_expr(text: object, where: str) -> str:
    """A symbolic expression in srepr's form, refused unless small and cheap to evaluate.

    Raises:
        UnsafeModel: the text is not of srepr's form or exceeds a bound.
    """
    if not isinstance(text, str) or not 0 < len(text) <= MAX_LENGTH:
        raise UnsafeModel(f"{where}: symbolic expression missing or too long")
    parser = _Parser(text, where)
    parser.expr(0)
    if parser.pos != len(parser.tokens):
        raise parser.fail("trailing text")
    return text
