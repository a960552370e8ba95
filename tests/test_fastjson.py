"""vigil.fastjson: orjson's speed, `json`'s values and errors, bit for bit."""

from __future__ import annotations

import json
import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_wire import _number_tokens
from vigil import fastjson


def _same_value(a, b) -> bool:
    """Equal values of equal types, floats bit for bit; iterative, since `json` may read a
    document nested deeper than Python's recursion limit allows a recursive walk."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if struct.pack("<d", x) != struct.pack("<d", y) and not (math.isnan(x) and math.isnan(y)):
                return False
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif isinstance(x, dict):
            if list(x) != list(y):
                return False
            pending.extend((x[k], y[k]) for k in x)
        elif x != y:
            return False
    return True


def test_same_value_tells_values_apart_at_any_depth():
    nested, other = [1.5], [1.5]
    for _ in range(5000):
        nested, other = [nested], [other]
    assert _same_value(nested, other)
    assert not _same_value([0.0], [-0.0]) and not _same_value([1], [1.0]) and not _same_value({"a": 1}, {"b": 1})
    assert _same_value([float("nan")], [float("nan")])


def _outcome(f, raw):
    try:
        return "ok", f(raw)
    except RecursionError:
        return "error", RecursionError
    except Exception as exc:  # noqa: BLE001 - the exception class is what is compared
        return "error", type(exc)


def assert_reads_as_json(raw):
    got, want = _outcome(fastjson.loads, raw), _outcome(json.loads, raw)
    assert got[0] == want[0], (raw[:80], got, want)
    if got[0] == "ok":
        assert _same_value(got[1], want[1]), raw[:80]
    else:
        assert got[1] is want[1], (raw[:80], got, want)


EDGES = [b"1e400", b"[-1e400]", b"NaN", b"[Infinity, -Infinity]", b'"\\ud800"', b"\xef\xbb\xbf{}", b" {} ",
         b"[" * 1100 + b"]" * 1100, b"[" * 5000 + b"]" * 5000, b"123456789012345678901234", b"-9223372036854775809",
         b"18446744073709551615", b"18446744073709551616", b"0.00123456789012345678901", b"1.0e-400", b'"\x00"',
         b'{"a":1,"a":2}', b'{"a":"\\u0000"}', b"", b"  ", b"[1,]", b"{'a': 1}", b"\xff", b"[1] x", b"-0.0", b"1E+2",
         "[1, 2]", "\"é\"", "\"\ud800\"", b"\x00"]


def test_the_edges_where_orjson_and_json_differ_read_as_json_reads_them():
    for raw in EDGES:
        assert_reads_as_json(raw)


_docs = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**80, 2**80), st.floats(),
                               st.text(max_size=6)),
                     lambda inner: st.one_of(st.lists(inner, max_size=4),
                                             st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                     max_leaves=20)


@settings(max_examples=600, deadline=None, database=None)
@given(doc=_docs, ascii_only=st.booleans())
def test_fuzz_documents_read_as_json_reads_them(doc, ascii_only):
    assert_reads_as_json(json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


@settings(max_examples=600, deadline=None, database=None)
@given(raw=st.one_of(st.binary(max_size=40), st.text("0123456789.eE-+ ,[]{}:\"\\uaxNI", max_size=40).map(str.encode),
                     st.lists(_number_tokens(), min_size=1, max_size=6).map(lambda t: ("[" + ",".join(t) + "]").encode())))
def test_fuzz_bytes_read_as_json_reads_them(raw):
    assert_reads_as_json(raw)


@settings(max_examples=800, deadline=None, database=None)
@given(body=st.one_of(st.lists(_number_tokens(), max_size=6).map(lambda t: ", ".join(t).encode()),
                      st.text("0123456789.eE-+ ,[]\"ax", max_size=60).map(str.encode)))
def test_has_long_integer_equals_its_regex_definition(body):
    assert fastjson.has_long_integer(body) == bool(fastjson.LONG_INTEGER.search(body)), body
