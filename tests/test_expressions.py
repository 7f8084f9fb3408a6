"""Tests for the expression language: semantics, rejections with offsets, pydantic, speed."""

from __future__ import annotations

import math
import pickle
import time
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from edgewax.errors import ExpressionError
from edgewax.operators.transforms.expressions import (
    FUNCTIONS,
    MAX_INT_EXPONENT,
    Expression,
    ExpressionField,
    compile_expression,
)

EVENT: dict[str, Any] = {
    "ts": 1700000000.5,
    "key": "a",
    "temperature": 72.5,
    "n": 7,
    "name": "probe-1",
    "flag": True,
    "missing": None,
    "values": [3, 1, 2],
    "meta": {"site": "north", "depth": 2},
}


def run(source: str, event: dict[str, Any] | None = None) -> Any:
    return compile_expression(source)(EVENT if event is None else event)


def rejection(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    return caught.value


# --- literals and names -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1", 1),
        ("-2.5", -2.5),
        ("'text'", "text"),
        ('"double"', "double"),
        ("True", True),
        ("False", False),
        ("None", None),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1, 2, n]", [1, 2, 7]),
        ("(1, key)", (1, "a")),
        ("{1, 2, 2}", {1, 2}),
        ("{'k': n, key: 1}", {"k": 7, "a": 1}),
        ("[]", []),
        ("{}", {}),
    ],
)
def test_literals(source: str, expected: Any) -> None:
    assert run(source) == expected


def test_yaml_aliases_are_constants_not_fields() -> None:
    expression = compile_expression("true and not false and null is None")
    assert expression.fields == frozenset()
    assert expression({}) is True


def test_names_read_event_fields() -> None:
    assert run("ts") == EVENT["ts"]
    assert run("key") == "a"
    assert run("temperature") == 72.5


def test_fields_lists_every_name_read() -> None:
    expression = compile_expression(
        "temperature > 70 and key in ['a', 'b'] or sqrt(n) > ts and values[0] == len(meta)"
    )
    assert expression.fields == frozenset({"temperature", "key", "n", "ts", "values", "meta"})


def test_fields_excludes_function_names_and_literals() -> None:
    assert compile_expression("round(x, 1) + len('abc')").fields == frozenset({"x"})


def test_unicode_field_name() -> None:
    assert run("température + 1", {"température": 1}) == 2


# --- operators ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("n + 1", 8),
        ("n - 10", -3),
        ("n * 2", 14),
        ("n / 2", 3.5),
        ("n // 2", 3),
        ("n % 4", 3),
        ("n ** 2", 49),
        ("2 ** -1", 0.5),
        ("2 ** 3 ** 2", 512),
        ("-n", -7),
        ("+n", 7),
        ("~n", -8),
        ("not flag", False),
        ("name + '!'", "probe-1!"),
        ("(n + 1) * 2", 16),
        ("n + 1 * 2", 9),
    ],
)
def test_arithmetic_and_unary(source: str, expected: Any) -> None:
    assert run(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("temperature > 70", True),
        ("temperature <= 70", False),
        ("n == 7", True),
        ("n != 7", False),
        ("0 < n < 10", True),
        ("0 < n < 5", False),
        ("1 <= n <= 7 < temperature", True),
        ("key in ['a', 'b']", True),
        ("key not in ('a', 'b')", False),
        ("'site' in meta", True),
        ("missing is None", True),
        ("missing is not null", False),
        ("None is missing", True),
        ("n is not None", True),
    ],
)
def test_comparisons(source: str, expected: Any) -> None:
    assert run(source) is expected


def test_chained_comparison_evaluates_middle_once() -> None:
    calls = []

    class Counting(dict[str, Any]):
        def __getitem__(self, name: str) -> Any:
            calls.append(name)
            return super().__getitem__(name)

    assert compile_expression("0 < n < 10")(Counting(n=5)) is True
    assert calls == ["n"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("flag and n", 7),
        ("missing and n", None),
        ("missing or n", 7),
        ("flag or undefined_field", True),
        ("'hot' if temperature > 70 else 'cold'", "hot"),
        ("'hot' if temperature > 80 else 'warm' if temperature > 70 else 'cold'", "warm"),
    ],
)
def test_boolean_and_conditional(source: str, expected: Any) -> None:
    assert run(source) == expected


def test_short_circuit_does_not_read_later_fields() -> None:
    assert run("n > 100 and absent > 1") is False


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("values[0]", 3),
        ("values[-1]", 2),
        ("values[1:3]", [1, 2]),
        ("values[::-1]", [2, 1, 3]),
        ("values[:n // 3]", [3, 1]),
        ("meta['site']", "north"),
        ('meta["depth"] * 2', 4),
        ("name[:5]", "probe"),
        ("{'a': 1}[key]", 1),
    ],
)
def test_subscripts_and_slices(source: str, expected: Any) -> None:
    assert run(source) == expected


def test_numpy_multi_axis_indexing() -> None:
    grid = np.arange(6).reshape(2, 3)
    assert run("grid[1, 2]", {"grid": grid}) == 5
    np.testing.assert_array_equal(run("grid[:, 0]", {"grid": grid}), [0, 3])


# --- functions ----------------------------------------------------------------------------


def test_whitelist() -> None:
    assert set(FUNCTIONS) == {
        "abs", "min", "max", "round", "len", "sum", "mean", "sqrt", "log", "log10", "exp",
        "floor", "ceil", "int", "float", "str", "bool", "get",
    }  # fmt: skip
    with pytest.raises(TypeError):
        FUNCTIONS["open"] = open  # type: ignore[index]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("abs(-3)", 3),
        ("min(3, 1, 2)", 1),
        ("min(values)", 1),
        ("max(3, 1, 2)", 3),
        ("max(values)", 3),
        ("round(2.567, 1)", 2.6),
        ("round(2.5)", 2),
        ("len(values)", 3),
        ("len(name)", 7),
        ("sum(values)", 6),
        ("sum(values, 10)", 16),
        ("mean(values)", 2.0),
        ("mean([0.1, 0.2, 0.3])", 0.2),
        ("sqrt(16)", 4.0),
        ("log(math_e)", 1.0),
        ("log(8, 2)", 3.0),
        ("log10(1000)", 3.0),
        ("exp(0)", 1.0),
        ("floor(2.7)", 2),
        ("ceil(2.1)", 3),
        ("int('42')", 42),
        ("float('1.5')", 1.5),
        ("str(n)", "7"),
        ("bool(0)", False),
        ("round(temperature * 9 / 5 + 32, 1)", 162.5),
    ],
)
def test_functions_on_python_values(source: str, expected: Any) -> None:
    result = run(source, {**EVENT, "math_e": math.e})
    assert result == pytest.approx(expected)
    assert type(result) is type(expected)


def test_functions_on_numpy_arrays() -> None:
    event = {"x": np.array([1.0, 4.0, 9.0]), "y": np.array([2.0, 2.0, 10.0])}
    np.testing.assert_allclose(run("sqrt(x)", event), [1.0, 2.0, 3.0])
    assert run("mean(x)", event) == pytest.approx(14 / 3)
    assert run("max(x)", event) == 9.0
    assert run("min(x)", event) == 1.0
    assert run("sum(x)", event) == 14.0
    np.testing.assert_allclose(run("max(x, y)", event), [2.0, 4.0, 10.0])
    np.testing.assert_allclose(run("min(x, 3)", event), [1.0, 3.0, 3.0])
    np.testing.assert_allclose(run("log(x, 3)", event), [0.0, math.log(4, 3), 2.0])
    np.testing.assert_allclose(run("log10(x * 10)", event), np.log10([10.0, 40.0, 90.0]))
    np.testing.assert_allclose(run("exp(x - x)", event), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(run("floor(x / 2)", event), [0.0, 2.0, 4.0])
    np.testing.assert_allclose(run("ceil(x / 2)", event), [1.0, 2.0, 5.0])
    np.testing.assert_allclose(run("round(x / 3, 2)", event), [0.33, 1.33, 3.0])
    np.testing.assert_allclose(run("abs(-x)", event), [1.0, 4.0, 9.0])
    np.testing.assert_allclose(run("x ** 2", event), [1.0, 16.0, 81.0])
    assert run("len(x)", event) == 3
    assert run("mean(sqrt(x)) > 1.9", event)


def test_array_reductions_return_python_scalars() -> None:
    event = {"x": np.array([1, 2, 3], dtype=np.int32)}
    for source in ("max(x)", "min(x)", "sum(x)", "mean(x)"):
        assert type(run(source, event)) in (int, float), source


def test_mean_of_empty_raises() -> None:
    with pytest.raises(ValueError):
        run("mean(values)", {"values": []})
    with pytest.raises(ValueError):
        run("mean(values)", {"values": np.array([])})


def test_get_reads_optional_and_non_identifier_fields() -> None:
    expression = compile_expression('get("temp-1", 0) + get("bonus", n)')
    assert expression({"temp-1": 5, "n": 1}) == 6
    assert expression({"bonus": 2, "n": 1}) == 2
    assert expression.fields == frozenset({"n"})
    assert run('get("absent")') is None
    assert run("get('key')") == "a"


def test_get_stub_explains_itself_outside_expressions() -> None:
    with pytest.raises(TypeError, match="only works inside an expression"):
        FUNCTIONS["get"]("x")


@pytest.mark.parametrize(
    ("source", "offset", "message"),
    [
        ("get(name)", 4, "quoted field name"),
        ("get(1)", 4, "quoted field name"),
        ("get()", 0, "field name and an optional default"),
        ("get('a', 1, 2)", 0, "field name and an optional default"),
    ],
)
def test_get_rejections(source: str, offset: int, message: str) -> None:
    error = rejection(source)
    assert error.offset == offset
    assert message in error.message


def test_field_named_like_a_function() -> None:
    assert run("len + 1", {"len": 3}) == 4
    assert run("len(len)", {"len": [1, 2]}) == 2
    assert run("sqrt + sqrt(sqrt)", {"sqrt": 4}) == 6.0
    assert compile_expression("len(x) + max").fields == frozenset({"x", "max"})


def test_field_named_like_the_event_parameter() -> None:
    assert run("e + 1", {"e": 1}) == 2


# --- runtime errors -----------------------------------------------------------------------


def test_missing_field_raises_key_error() -> None:
    with pytest.raises(KeyError, match="pressure"):
        run("pressure > 1")


def test_type_errors_raise_as_python_does() -> None:
    with pytest.raises(TypeError):
        run("name + 1")
    with pytest.raises(ValueError):
        run("sqrt(-1)")


def test_pow_guard() -> None:
    with pytest.raises(ValueError, match="too large"):
        run("10 ** 10 ** 10")
    with pytest.raises(ValueError, match="too large"):
        run(f"2 ** -{MAX_INT_EXPONENT + 1}")
    with pytest.raises(ValueError, match="bits"):
        run("(10 ** 10000) ** 10000")
    assert run(f"2 ** {MAX_INT_EXPONENT}") == 2**MAX_INT_EXPONENT
    assert run("2.0 ** 0.5") == pytest.approx(math.sqrt(2))
    with pytest.raises(OverflowError):
        run("10.0 ** 100000")


# --- rejections ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "offset", "message"),
    [
        ("a + b.c", 4, "attribute access is not allowed"),
        ("name.upper()", 0, "attribute access is not allowed"),
        ("open('x')", 0, "function `open` is not allowed"),
        ("a + __import__('os')", 4, "function `__import__` is not allowed"),
        ("values[0](1)", 0, "only the allowed functions can be called"),
        ("lambda: 1", 0, "`lambda` is not allowed in expressions"),
        ("a + (lambda x: x)(1)", 5, "`lambda` is not allowed"),
        ("[x for x in values]", 0, "list comprehension is not allowed"),
        ("{x for x in values}", 0, "set comprehension is not allowed"),
        ("{x: 1 for x in values}", 0, "dict comprehension is not allowed"),
        # A lone generator argument shares the call's parentheses, so it starts at "(".
        ("sum(x for x in values)", 3, "generator expression is not allowed"),
        ("(y := 1)", 1, "`:=` (assignment) is not allowed"),
        ("f'{n}'", 0, "f-string is not allowed"),
        ("[1, *values]", 4, "`*` unpacking is not allowed"),
        ("max(*values)", 4, "`*` unpacking is not allowed"),
        ("round(x, ndigits=1)", 9, "keyword arguments are not allowed"),
        ("max(values, **opts)", 12, "`**` unpacking is not allowed"),
        ("{'a': 1, **meta}", 9, "`**` unpacking is not allowed"),
        ("a is b", 0, "`is` is only allowed with None"),
        ("n > 0 is not a", 4, "`is not` is only allowed with None"),
        ("a & b", 0, "operator `&` is not allowed"),
        ("a | b", 0, "operator `|` is not allowed"),
        ("a ^ b", 0, "operator `^` is not allowed"),
        ("1 << n", 0, "operator `<<` is not allowed"),
        ("n >> 1", 0, "operator `>>` is not allowed"),
        ("a @ b", 0, "operator `@` is not allowed"),
        ("b'raw'", 0, "bytes literals are not allowed"),
        ("1j", 0, "complex numbers are not allowed"),
        ("...", 0, "`...` is not allowed"),
        ("_secret", 0, "names starting with '_' are reserved"),
        ("n + __class__", 4, "names starting with '_' are reserved"),
        ("_pow(2, 3)", 0, "function `_pow` is not allowed"),
        ("_f_len(x)", 0, "function `_f_len` is not allowed"),
    ],
)
def test_forbidden_constructs(source: str, offset: int, message: str) -> None:
    error = rejection(source)
    assert message in error.message
    assert error.offset == offset
    assert str(error) == error.message


def test_await_and_yield_are_rejected() -> None:
    # Outside a function these do not parse at all; either way they never compile.
    for source in ("await x", "(yield x)"):
        assert rejection(source).message


def test_attribute_hint_names_the_mapping_form() -> None:
    assert rejection("a + b.c").hint == "fields are plain names; use b['c'] for a mapping field"


def test_is_hint() -> None:
    assert rejection("a is b").hint == "use == / !="


def test_unknown_function_hint_lists_allowed_functions() -> None:
    hint = rejection("open('x')").hint
    assert hint is not None
    assert "did you mean" not in hint
    for name in FUNCTIONS:
        assert name in hint


@pytest.mark.parametrize(
    ("source", "suggestion"), [("sqr(x)", "sqrt"), ("maen(x)", "mean"), ("rond(x)", "round")]
)
def test_did_you_mean(source: str, suggestion: str) -> None:
    error = rejection(source)
    assert error.message == f"function `{source.split('(')[0]}` is not allowed"
    assert error.hint is not None
    assert error.hint.startswith(f"did you mean `{suggestion}`?")


def test_keyword_argument_hint() -> None:
    assert rejection("round(x, ndigits=1)").hint == "pass arguments by position, e.g. round(x, 1)"


# --- syntax errors and offsets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "offset"),
    [
        ("a b", 2),
        ("n > > 1", 4),
        ("x = 1", 2),
        ("(a + b", 0),
        ("round(x, 1", 5),
    ],
)
def test_syntax_errors_point_into_the_source(source: str, offset: int) -> None:
    error = rejection(source)
    assert error.offset == offset
    assert error.message


def test_syntax_error_at_the_end() -> None:
    error = rejection("a +")
    assert error.message == "invalid syntax"
    assert error.offset == 3


def test_statements_are_syntax_errors() -> None:
    assert rejection("import os").offset == 0


@pytest.mark.parametrize("source", ["", "   ", "\n\t"])
def test_empty_expression(source: str) -> None:
    error = rejection(source)
    assert error.message == "expression is empty"
    assert error.offset == 0


def test_leading_whitespace_is_accepted_and_counted_in_offsets() -> None:
    assert run("   n + 1") == 8
    assert rejection("   a + b.c").offset == 7
    assert rejection("  a b").offset == 4


def test_multi_line_offsets() -> None:
    source = "(a\n + b.c)"
    assert rejection(source).offset == source.index("b.c")
    crlf = "(a +\r\n   open(1))"
    assert rejection(crlf).offset == crlf.index("open")
    indented = "\n  (a +\n  b.c)"
    assert rejection(indented).offset == indented.index("b.c")


def test_multi_line_expression_in_parentheses_compiles() -> None:
    assert run("(n +\n 1)") == 8


def test_offsets_count_characters_not_bytes() -> None:
    source = "'héllo wörld' + b.c"
    assert rejection(source).offset == source.index("b.c")
    multi = "('ü' +\n 'ö' + open(1))"
    assert rejection(multi).offset == multi.index("open")
    assert rejection("'é' b").offset == 4


def test_nul_character() -> None:
    assert rejection("a\x00").offset == 1


def test_pathological_nesting_is_an_expression_error() -> None:
    assert rejection("1 + " * 100_000 + "1").message == "expression is too deeply nested"
    assert rejection("(" * 500 + "1" + ")" * 500).message


def test_non_string_source() -> None:
    error = rejection(True)  # type: ignore[arg-type]
    assert error.message == "an expression must be a string, got bool"


# --- the Expression object ----------------------------------------------------------------


def test_expression_object() -> None:
    expression = compile_expression("n * 2")
    assert expression.source == "n * 2"
    assert expression(EVENT) == expression.fn(EVENT) == 14
    assert repr(expression) == "Expression('n * 2')"
    assert expression == compile_expression("n * 2")
    assert expression != compile_expression("n*2")
    assert expression != "n * 2"
    assert len({expression, compile_expression("n * 2")}) == 1


def test_source_is_kept_verbatim() -> None:
    assert compile_expression("  n\n").source == "  n\n"


def test_pickle_round_trip() -> None:
    expression = compile_expression("round(sqrt(len) + get('a-b', 1), 2)")
    clone = pickle.loads(pickle.dumps(expression))
    assert isinstance(clone, Expression)
    assert clone == expression
    assert clone.fields == expression.fields
    assert clone({"len": 4}) == expression({"len": 4}) == 3.0


def test_no_builtins_are_reachable() -> None:
    assert compile_expression("n").fn.__globals__["__builtins__"] == {}
    for source in ("__builtins__", "globals()", "eval('1')", "getattr(n, 'x')", "type(n)"):
        with pytest.raises(ExpressionError):
            compile_expression(source)


# --- pydantic -----------------------------------------------------------------------------


class Filter(BaseModel):
    where: ExpressionField
    otherwise: ExpressionField | None = None


def test_pydantic_valid_string() -> None:
    model = Filter(where="temperature > 70")
    assert isinstance(model.where, Expression)
    assert model.where(EVENT) is True
    assert model.where.fields == frozenset({"temperature"})


def test_pydantic_invalid_string_carries_offset() -> None:
    with pytest.raises(ValidationError) as caught:
        Filter(where="a + b.c")
    (error,) = caught.value.errors()
    assert error["type"] == "expression"
    assert error["msg"] == "attribute access is not allowed"
    assert error["loc"] == ("where",)
    assert error["ctx"]["offset"] == 4
    assert error["ctx"]["hint"] == "fields are plain names; use b['c'] for a mapping field"


def test_pydantic_non_string_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        Filter(where=70)
    assert caught.value.errors()[0]["type"] == "expression_type"


def test_pydantic_passes_compiled_expression_through() -> None:
    expression = compile_expression("n > 1")
    assert Filter(where=expression).where is expression


def test_pydantic_serializes_to_source() -> None:
    model = Filter(where="n > 1", otherwise="n")
    assert model.model_dump() == {"where": "n > 1", "otherwise": "n"}
    assert model.model_dump_json() == '{"where":"n > 1","otherwise":"n"}'
    assert Filter.model_validate_json(model.model_dump_json()) == model


def test_pydantic_json_schema_is_string() -> None:
    for mode in ("validation", "serialization"):
        schema = Filter.model_json_schema(mode=mode)
        where = schema["properties"]["where"]
        assert where["type"] == "string"
        assert "description" in where


# --- speed --------------------------------------------------------------------------------


def best_time(fn: Any, events: list[dict[str, Any]], repeats: int = 5) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in filter(fn, events):
            pass
        best = min(best, time.perf_counter() - start)
    return best


def test_speed_matches_a_hand_written_lambda() -> None:
    # Not a timing assertion (CI machines are noisy); run with -s to see the ratio.
    pool = [{"ts": float(i), "key": "a", "temperature": float(i % 140)} for i in range(1000)]
    events = [pool[i % 1000] for i in range(1_000_000)]
    expression = compile_expression("temperature > 70")
    hand_written = lambda e: e["temperature"] > 70  # noqa: E731
    assert sum(map(expression.fn, events)) == sum(map(hand_written, events))
    native = best_time(hand_written, events)
    compiled = best_time(expression.fn, events)
    called = best_time(expression, events)
    print(
        f"\n1e6 events: hand-written {native:.3f}s, compiled .fn {compiled:.3f}s "
        f"(ratio {compiled / native:.2f}), Expression.__call__ {called:.3f}s "
        f"(ratio {called / native:.2f})"
    )
