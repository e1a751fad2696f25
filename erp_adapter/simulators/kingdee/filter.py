"""ExecuteBillQuery's FilterString and OrderString: the SQL-like subset clients send, parsed."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

Row = dict[str, Any]
"""One query row: lower-cased field key -> value."""
Predicate = Callable[[Row], bool]


class FilterError(ValueError):
    """The filter or order string does not parse, or names an unknown field."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|>=|<=|=|>|<)"
    r"|(?P<punct>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_KEYWORDS = {"and", "or", "not", "in", "like", "is", "null"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            raise FilterError(f"cannot parse the filter near {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value.lower() in _KEYWORDS:
            kind = "kw"
            value = value.lower()
        out.append(_Tok(kind, value))
        pos = match.end()
    return out


def coerce(sample: Any, literal: Any) -> Any:
    """The literal in the type of the stored value (SQL Server converts the same way)."""
    if literal is None or sample is None:
        return literal
    if isinstance(sample, bool):
        return str(literal).lower() in ("1", "true")
    if isinstance(sample, dt.datetime | dt.date):
        text = str(literal).strip().replace("T", " ")
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise FilterError(f"从字符串转换日期和/或时间时，转换失败: {literal!r}") from None
        return value if isinstance(sample, dt.datetime) else value.date()
    if isinstance(sample, int | Decimal):
        try:
            return Decimal(str(literal))
        except InvalidOperation:
            raise FilterError(f"在将 varchar 值 {literal!r} 转换成数据类型 int 时失败") from None
    return str(literal)


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        return False  # SQL: comparisons with NULL are unknown
    if isinstance(left, int) and not isinstance(left, bool):
        left = Decimal(left)
    if op == "=":
        return bool(left == right)
    if op in ("<>", "!="):
        return bool(left != right)
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


def _like(value: Any, pattern: str) -> bool:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return value is not None and re.fullmatch(regex, str(value), re.IGNORECASE | re.S) is not None


class _Parser:
    """Recursive descent: or_expr := and_expr (OR and_expr)*; and_expr := unary (AND unary)*."""

    def __init__(self, text: str, known: Callable[[str], bool]) -> None:
        self.toks = _tokens(text)
        self.pos = 0
        self.known = known
        self.fields: set[str] = set()

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, kind: str, text: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or tok.kind != kind or (text is not None and tok.text != text):
            found = "the end" if tok is None else repr(tok.text)
            raise FilterError(f"expected {text or kind} in the filter, found {found}")
        self.pos += 1
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == kind and (text is None or tok.text == text)

    def parse(self) -> Predicate:
        if not self.toks:
            return lambda row: True
        pred = self.or_expr()
        if self.peek() is not None:
            raise FilterError(f"unexpected {self.toks[self.pos].text!r} in the filter")
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.at("kw", "or"):
            self.pos += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else lambda row: any(p(row) for p in parts)

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while self.at("kw", "and"):
            self.pos += 1
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else lambda row: all(p(row) for p in parts)

    def unary(self) -> Predicate:
        if self.at("kw", "not"):
            self.pos += 1
            inner = self.unary()
            return lambda row: not inner(row)
        if self.at("punct", "("):
            self.pos += 1
            inner = self.or_expr()
            self.take("punct", ")")
            return inner
        return self.condition()

    def literal(self) -> Any:
        tok = self.peek()
        if tok is not None and tok.kind == "str":
            self.pos += 1
            return tok.text[1:-1].replace("''", "'")
        if tok is not None and tok.kind == "num":
            self.pos += 1
            return Decimal(tok.text)
        raise FilterError(f"expected a value in the filter, found {tok.text if tok else 'the end'}")

    def condition(self) -> Predicate:
        name = self.take("word").text
        key = name.lower()
        if not self.known(key):
            raise FilterError(f"字段“{name}”不存在")
        self.fields.add(key)
        if self.at("kw", "is"):
            self.pos += 1
            negate = self.at("kw", "not")
            if negate:
                self.pos += 1
            self.take("kw", "null")
            return lambda row: (row.get(key) is None) != negate
        negate = self.at("kw", "not")
        if negate:
            self.pos += 1
        if self.at("kw", "in"):
            self.pos += 1
            self.take("punct", "(")
            values = [self.literal()]
            while self.at("punct", ","):
                self.pos += 1
                values.append(self.literal())
            self.take("punct", ")")
            return lambda row: (
                any(_compare("=", row.get(key), coerce(row.get(key), v)) for v in values) != negate
            )
        if self.at("kw", "like"):
            self.pos += 1
            pattern = str(self.literal())
            return lambda row: _like(row.get(key), pattern) != negate
        op = self.take("op").text
        value = self.literal()
        return lambda row: _compare(op, row.get(key), coerce(row.get(key), value))


def parse_filter(text: str, known: Callable[[str], bool]) -> tuple[Predicate, set[str]]:
    """A predicate over rows, and the (lower-cased) fields the filter names."""
    parser = _Parser(text or "", known)
    return parser.parse(), parser.fields


def parse_order(text: str, known: Callable[[str], bool]) -> list[tuple[str, bool]]:
    """`FDate DESC, FID` -> [(field, descending)]."""
    out: list[tuple[str, bool]] = []
    for part in (text or "").split(","):
        words = part.split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise FilterError(f"cannot parse the order string part {part.strip()!r}")
        if not known(words[0].lower()):
            raise FilterError(f"字段“{words[0]}”不存在")
        out.append((words[0].lower(), len(words) == 2 and words[1].lower() == "desc"))
    return out
