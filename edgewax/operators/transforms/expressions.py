"""Safe expressions over events, compiled once into native Python lambdas.

Pipeline authors write expressions in YAML (`where: "temperature > 70"`,
`set: {temp_f: "round(temperature * 9 / 5 + 32, 1)"}`). The text is parsed with
`ast`, every node is checked against a whitelist, each free name becomes a read of the
event dict (`e["name"]`), and the result is compiled as `lambda e: ...`, so evaluating
an expression costs the same as a hand-written lambda.

>>> compile_expression("round(t * 9 / 5 + 32, 1)")({"t": 21.5})
70.7
>>> where = compile_expression("temperature > 70 and key in ['a', 'b']")
>>> sorted(where.fields)
['key', 'temperature']
>>> where({"ts": 0.0, "key": "a", "temperature": 71})
True
>>> compile_expression('get("temp-1", 0) + 1')({"ts": 0.0})
1
>>> compile_expression("a + b.c")
Traceback (most recent call last):
    ...
edgewax.errors.ExpressionError: attribute access is not allowed

The language: int/float/str literals, `True`/`False`/`None` and their YAML spellings
`true`/`false`/`null`; list, tuple, set and dict literals; names (event fields);
`+ - * / // % **`; unary `- + not ~`; comparisons (chained, `in`, `not in`, and
`is`/`is not` against None only); `and`/`or`; `a if c else b`; subscripts and slices;
and calls by plain name, positional arguments only, to the functions in `FUNCTIONS`.
"""

from __future__ import annotations

import ast
import difflib
import functools
import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any

import numpy as np
from pydantic import PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from edgewax.errors import ExpressionError

__all__ = ["FUNCTIONS", "Expression", "ExpressionField", "compile_expression"]

# Largest |exponent| for int ** int; bigger ones can take minutes (10**10**10).
MAX_INT_EXPONENT = 10_000
# Largest int result of ** in bits; stops nesting allowed powers, e.g. (10**10000)**10000.
MAX_POW_BITS = 1_000_000

_EVENT = "e"
_POW = "_pow"
_FUNCTION_PREFIX = "_f_"
_ALIASES: dict[str, bool | None] = {"true": True, "false": False, "null": None}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _pow(base: Any, exponent: Any) -> Any:
    """`base ** exponent`, refusing int powers big enough to hang the worker."""
    if isinstance(base, int) and isinstance(exponent, int):
        if abs(exponent) > MAX_INT_EXPONENT:
            raise ValueError(
                f"exponent {exponent} is too large (at most {MAX_INT_EXPONENT} for integers)"
            )
        if exponent > 0 and base.bit_length() * exponent > MAX_POW_BITS:
            raise ValueError(f"result of ** would exceed {MAX_POW_BITS} bits")
    return base**exponent


def _round(value: Any, ndigits: int | None = None) -> Any:
    """round(value[, ndigits]); elementwise on arrays."""
    if isinstance(value, np.ndarray):
        return np.round(value, ndigits or 0)
    return round(value, ndigits)


def _min(*values: Any) -> Any:
    """min(iterable) or min(a, b, ...); the smallest element of an array, elementwise on arrays."""
    if len(values) == 1 and isinstance(values[0], np.ndarray):
        return values[0].min().item()
    for value in values:
        if isinstance(value, np.ndarray):
            return functools.reduce(np.minimum, values)
    return min(*values)


def _max(*values: Any) -> Any:
    """max(iterable) or max(a, b, ...); the largest element of an array, elementwise on arrays."""
    if len(values) == 1 and isinstance(values[0], np.ndarray):
        return values[0].max().item()
    for value in values:
        if isinstance(value, np.ndarray):
            return functools.reduce(np.maximum, values)
    return max(*values)


def _sum(values: Any, start: Any = 0) -> Any:
    """sum(values[, start]); the sum of all elements of an array."""
    if isinstance(values, np.ndarray):
        return (values.sum() + start).item()
    return sum(values, start)


def _mean(values: Any) -> float:
    """Arithmetic mean of a list, tuple or array."""
    if isinstance(values, np.ndarray):
        if values.size == 0:
            raise ValueError("mean() of an empty array")
        return float(values.mean())
    items = list(values)
    if not items:
        raise ValueError("mean() of an empty sequence")
    return math.fsum(items) / len(items)


def _sqrt(value: Any) -> Any:
    """Square root; elementwise on arrays."""
    return np.sqrt(value) if isinstance(value, np.ndarray) else math.sqrt(value)


def _log(value: Any, base: float | None = None) -> Any:
    """Natural logarithm, or logarithm to `base`; elementwise on arrays."""
    if isinstance(value, np.ndarray):
        return np.log(value) if base is None else np.log(value) / math.log(base)
    return math.log(value) if base is None else math.log(value, base)


def _log10(value: Any) -> Any:
    """Base-10 logarithm; elementwise on arrays."""
    return np.log10(value) if isinstance(value, np.ndarray) else math.log10(value)


def _exp(value: Any) -> Any:
    """e ** value; elementwise on arrays."""
    return np.exp(value) if isinstance(value, np.ndarray) else math.exp(value)


def _floor(value: Any) -> Any:
    """Largest integer <= value (an int for numbers); elementwise on arrays."""
    return np.floor(value) if isinstance(value, np.ndarray) else math.floor(value)


def _ceil(value: Any) -> Any:
    """Smallest integer >= value (an int for numbers); elementwise on arrays."""
    return np.ceil(value) if isinstance(value, np.ndarray) else math.ceil(value)


def _get(name: str, default: Any = None) -> Any:
    """The event field `name` (any string, e.g. "temp-1"), or `default` when it is missing."""
    # Listed for documentation only: the compiler inlines get() as event.get(name, default).
    raise TypeError("get() reads the current event; it only works inside an expression")


FUNCTIONS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "abs": abs,
        "min": _min,
        "max": _max,
        "round": _round,
        "len": len,
        "sum": _sum,
        "mean": _mean,
        "sqrt": _sqrt,
        "log": _log,
        "log10": _log10,
        "exp": _exp,
        "floor": _floor,
        "ceil": _ceil,
        "int": int,
        "float": float,
        "str": str,
        "bool": bool,
        "get": _get,
    }
)

# Private global names keep functions apart from fields: `len + 1` reads the field `len`.
_GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    _POW: _pow,
    **{_FUNCTION_PREFIX + name: fn for name, fn in FUNCTIONS.items() if name != "get"},
}

_BINARY_OPERATORS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_REJECTED_OPERATORS: dict[type[ast.operator], tuple[str, str | None]] = {
    ast.MatMult: ("@", None),
    ast.BitAnd: ("&", "use `and` for logic"),
    ast.BitOr: ("|", "use `or` for logic"),
    ast.BitXor: ("^", "use `**` for powers, `!=` for exclusive or"),
    ast.LShift: ("<<", None),
    ast.RShift: (">>", None),
}
_REJECTED_NODES: dict[type[ast.AST], tuple[str, str | None]] = {
    ast.Lambda: ("`lambda`", None),
    ast.ListComp: ("a list comprehension", "use sum(), mean(), min(), max() or len() on a list"),
    ast.SetComp: ("a set comprehension", None),
    ast.DictComp: ("a dict comprehension", None),
    ast.GeneratorExp: (
        "a generator expression",
        "use sum(), mean(), min(), max() or len() on a list",
    ),
    ast.NamedExpr: ("`:=` (assignment)", "expressions cannot assign; use == to compare"),
    ast.JoinedStr: ("an f-string", "build strings with str(x) and +"),
    ast.FormattedValue: ("an f-string", "build strings with str(x) and +"),
    ast.Starred: ("`*` unpacking", None),
    ast.Await: ("`await`", None),
    ast.Yield: ("`yield`", None),
    ast.YieldFrom: ("`yield from`", None),
}


class Expression:
    """A compiled expression: `fn(event)` evaluates it; equal when the sources are equal.

    Hot loops should call `fn` directly: it is the bare lambda, while `__call__` adds a
    method call.
    """

    __slots__ = ("fields", "fn", "source")

    def __init__(
        self, source: str, fields: frozenset[str], fn: Callable[[dict[str, Any]], Any]
    ) -> None:
        self.source = source
        self.fields = fields
        self.fn = fn

    def __call__(self, event: dict[str, Any]) -> Any:
        return self.fn(event)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expression):
            return NotImplemented
        return self.source == other.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __reduce__(self) -> tuple[Callable[[str], Expression], tuple[str]]:
        # Code objects built from an AST do not pickle; recompiling the source does.
        return compile_expression, (self.source,)


class _Positions:
    """Turns the parser's (line, UTF-8 byte column) into a character offset into the source."""

    def __init__(self, text: str, base: int) -> None:
        self._text = text
        self._base = base
        self._starts = [0] + [match.end() for match in _LINE_BREAK.finditer(text)]

    def _line(self, lineno: int) -> str:
        start = self._starts[lineno - 1]
        end = self._starts[lineno] if lineno < len(self._starts) else len(self._text)
        return self._text[start:end]

    def of_node(self, node: ast.expr | ast.keyword) -> int:
        line = self._line(node.lineno)
        column = len(line.encode("utf-8")[: node.col_offset].decode("utf-8", "ignore"))
        return self._base + self._starts[node.lineno - 1] + column

    def of_syntax_error(self, error: SyntaxError) -> int:
        # The parser reports 1-based character columns; 0 or None means "at the end".
        if not error.lineno or not error.offset or error.lineno > len(self._starts):
            return self._base + len(self._text.rstrip())
        column = min(error.offset - 1, len(self._line(error.lineno)))
        return self._base + self._starts[error.lineno - 1] + column

    def find_before(self, needle: str, node: ast.expr) -> int:
        end = self.of_node(node) - self._base
        found = self._text.rfind(needle, 0, end)
        return self._base + found if found >= 0 else self._base + end


class _Compiler:
    """Checks each node against the whitelist and rewrites names into event reads."""

    def __init__(self, positions: _Positions) -> None:
        self._positions = positions
        self.fields: set[str] = set()

    def error(
        self, node: ast.expr | ast.keyword, message: str, hint: str | None = None
    ) -> ExpressionError:
        return ExpressionError(message, self._positions.of_node(node), hint)

    def visit(self, node: ast.expr) -> ast.expr:
        method: Callable[[Any], ast.expr] | None = getattr(
            self, "visit_" + type(node).__name__, None
        )
        if method is not None:
            return method(node)
        construct, hint = _REJECTED_NODES.get(type(node), (f"`{type(node).__name__}`", None))
        raise self.error(node, f"{construct} is not allowed in expressions", hint)

    def visit_all(self, nodes: list[ast.expr]) -> list[ast.expr]:
        return [self.visit(node) for node in nodes]

    def visit_Constant(self, node: ast.Constant) -> ast.expr:
        if node.value is None or isinstance(node.value, (bool, int, float, str)):
            return node
        kind = {bytes: "bytes literals are", complex: "complex numbers are"}.get(
            type(node.value), "`...` is"
        )
        raise self.error(node, f"{kind} not allowed in expressions")

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in _ALIASES:
            return ast.copy_location(ast.Constant(_ALIASES[node.id]), node)
        if node.id.startswith("_"):
            raise self.error(
                node,
                "names starting with '_' are reserved",
                f'use get("{node.id}") to read a field with that name',
            )
        self.fields.add(node.id)
        return ast.copy_location(
            ast.Subscript(
                value=ast.Name(_EVENT, ast.Load()), slice=ast.Constant(node.id), ctx=ast.Load()
            ),
            node,
        )

    def visit_List(self, node: ast.List) -> ast.expr:
        node.elts = self.visit_all(node.elts)
        return node

    def visit_Tuple(self, node: ast.Tuple) -> ast.expr:
        node.elts = self.visit_all(node.elts)
        return node

    def visit_Set(self, node: ast.Set) -> ast.expr:
        node.elts = self.visit_all(node.elts)
        return node

    def visit_Dict(self, node: ast.Dict) -> ast.expr:
        keys: list[ast.expr | None] = []
        values: list[ast.expr] = []
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                raise ExpressionError(
                    "`**` unpacking is not allowed in expressions",
                    self._positions.find_before("**", value),
                )
            keys.append(self.visit(key))
            values.append(self.visit(value))
        node.keys, node.values = keys, values
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        operator = type(node.op)
        if operator in _REJECTED_OPERATORS:
            symbol, hint = _REJECTED_OPERATORS[operator]
            raise self.error(node, f"operator `{symbol}` is not allowed in expressions", hint)
        if operator not in _BINARY_OPERATORS:
            raise self.error(node, f"operator `{operator.__name__}` is not allowed in expressions")
        left, right = self.visit(node.left), self.visit(node.right)
        if operator is ast.Pow:
            return ast.copy_location(
                ast.Call(func=ast.Name(_POW, ast.Load()), args=[left, right], keywords=[]), node
            )
        node.left, node.right = left, right
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        node.operand = self.visit(node.operand)
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.expr:
        node.values = self.visit_all(node.values)
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        operands = [node.left, *node.comparators]
        for index, operator in enumerate(node.ops):
            left, right = operands[index], operands[index + 1]
            if isinstance(operator, (ast.Is, ast.IsNot)) and not (
                _is_none(left) or _is_none(right)
            ):
                word = "is" if isinstance(operator, ast.Is) else "is not"
                raise self.error(
                    left, f"`{word}` is only allowed with None (or null)", "use == / !="
                )
        node.left = self.visit(node.left)
        node.comparators = self.visit_all(node.comparators)
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.expr:
        node.body = self.visit(node.body)
        node.test = self.visit(node.test)
        node.orelse = self.visit(node.orelse)
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        node.value = self.visit(node.value)
        node.slice = self.visit(node.slice)
        return node

    def visit_Slice(self, node: ast.Slice) -> ast.expr:
        node.lower = self.visit(node.lower) if node.lower else None
        node.upper = self.visit(node.upper) if node.upper else None
        node.step = self.visit(node.step) if node.step else None
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        owner = node.value.id if isinstance(node.value, ast.Name) else "x"
        raise self.error(
            node,
            "attribute access is not allowed",
            f"fields are plain names; use {owner}['{node.attr}'] for a mapping field",
        )

    def visit_Call(self, node: ast.Call) -> ast.expr:
        if isinstance(node.func, ast.Attribute):
            return self.visit_Attribute(node.func)
        if not isinstance(node.func, ast.Name):
            self.visit(node.func)  # A forbidden callee (e.g. a lambda) deserves its own message.
            raise self.error(
                node.func,
                "only the allowed functions can be called, by name",
                _allowed_functions_hint(None),
            )
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.error(
                node.func, f"function `{name}` is not allowed", _allowed_functions_hint(name)
            )
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self.error(keyword, "`**` unpacking is not allowed in expressions")
            raise self.error(
                keyword,
                f"keyword arguments are not allowed (`{keyword.arg}=`)",
                f"pass arguments by position, e.g. {name}(x, 1)",
            )
        args = self.visit_all(node.args)
        if name == "get":
            return self.get(node, args)
        node.func = ast.copy_location(ast.Name(_FUNCTION_PREFIX + name, ast.Load()), node.func)
        node.args = args
        return node

    def get(self, node: ast.Call, args: list[ast.expr]) -> ast.expr:
        if not 1 <= len(args) <= 2:
            raise self.error(
                node, "get() takes a field name and an optional default", 'e.g. get("temp-1", 0)'
            )
        if not (isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)):
            raise self.error(
                node.args[0],
                "the first argument of get() must be a quoted field name",
                'e.g. get("temp-1", 0)',
            )
        # The field may be absent, so it is not listed in `fields`.
        read = ast.Attribute(value=ast.Name(_EVENT, ast.Load()), attr="get", ctx=ast.Load())
        return ast.copy_location(ast.Call(func=read, args=args, keywords=[]), node)


def _is_none(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and node.value is None) or (
        isinstance(node, ast.Name) and node.id == "null"
    )


def _allowed_functions_hint(name: str | None) -> str:
    allowed = "allowed functions: " + ", ".join(sorted(FUNCTIONS))
    close = difflib.get_close_matches(name, FUNCTIONS, n=1) if name else []
    return f"did you mean `{close[0]}`? {allowed}" if close else allowed


def compile_expression(source: str) -> Expression:
    """Parse, check and compile `source`; raises ExpressionError pointing into the source."""
    if not isinstance(source, str):
        raise ExpressionError(
            f"an expression must be a string, got {type(source).__name__}",
            hint='quote it in YAML, e.g. where: "true"',
        )
    # ast.parse rejects leading whitespace in eval mode, which YAML block strings can carry.
    text = source.lstrip()
    positions = _Positions(text, len(source) - len(text))
    if not text.strip():
        raise ExpressionError("expression is empty", 0)
    if "\x00" in text:
        raise ExpressionError("expression contains a NUL character", source.index("\x00"))
    compiler = _Compiler(positions)
    try:
        tree = ast.parse(text, mode="eval")
        body = compiler.visit(tree.body)
        signature = ast.arguments(
            posonlyargs=[],
            args=[ast.arg(_EVENT)],
            vararg=None,
            kwonlyargs=[],
            kw_defaults=[],
            kwarg=None,
            defaults=[],
        )
        lambda_tree = ast.Expression(ast.copy_location(ast.Lambda(signature, body), tree.body))
        code = compile(ast.fix_missing_locations(lambda_tree), "<expression>", "eval")
    except SyntaxError as exc:
        raise ExpressionError(exc.msg or "invalid syntax", positions.of_syntax_error(exc)) from None
    except (RecursionError, MemoryError):
        # The parser and compile() recurse per nesting level; a pathological input runs out.
        raise ExpressionError("expression is too deeply nested", 0) from None
    fn: Callable[[dict[str, Any]], Any] = eval(code, dict(_GLOBALS))
    return Expression(source, frozenset(compiler.fields), fn)


def _validate(value: object) -> Expression:
    if isinstance(value, Expression):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "expression_type",
            "an expression must be a string, got {type}",
            {"type": type(value).__name__},
        )
    try:
        return compile_expression(value)
    except ExpressionError as exc:
        raise PydanticCustomError(
            "expression",
            "{message}",
            {"message": exc.message, "offset": exc.offset, "hint": exc.hint},
        ) from exc


ExpressionField = Annotated[
    Expression,
    PlainValidator(_validate),
    PlainSerializer(lambda expression: expression.source, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "x-edgewax-type": "expression",
            "description": (
                "An expression over event fields, e.g. "
                "\"temperature > 70 and key in ['a', 'b']\"; functions: "
                + ", ".join(sorted(FUNCTIONS))
            ),
        }
    ),
]
"""Pydantic field type: a string compiled into an Expression, serialized back to its source."""
