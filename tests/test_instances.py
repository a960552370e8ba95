"""`vigil.instances.decode_table`: named rows, strings, missing values and what stays a 400 (DESIGN §8)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.events import PayloadError, decode_instances
from vigil.instances import REASONS, Decoded, InputSchema, decode_table
from vigil.spec import SchemaSpec

SCHEMA = InputSchema(("age", "sex", "income", "level"), {1: ("F", "M"), 3: 3})


def _nan_eq(a: np.ndarray, b) -> bool:
    return bool(np.array_equal(a, np.asarray(b, dtype=np.float64), equal_nan=True))


def _reason(body, schema=SCHEMA, strict=True) -> str:
    with pytest.raises(PayloadError) as exc:
        decode_table(body, schema, strict=strict)
    assert exc.value.status == 400
    return exc.value.reason


# -- shapes of body --------------------------------------------------------------------------------------


def test_v1_named_rows_in_any_key_order_with_strings():
    d = decode_table({"instances": [{"sex": "M", "age": 41, "income": 2.5, "level": 2},
                                    {"level": 0, "income": 1.0, "age": 30, "sex": "F"}]}, SCHEMA)
    assert _nan_eq(d.rows, [[41, 1, 2.5, 2], [30, 0, 1.0, 0]])
    assert not d.missing.any() and not d.unseen.any() and d.extra == [[], []]


def test_v1_lists_codes_and_strings_mixed_and_a_flat_row():
    assert _nan_eq(decode_table({"instances": [[41, "M", 2.5, 2], [30, 0, 1.0, 1]]}, SCHEMA).rows,
                   [[41, 1, 2.5, 2], [30, 0, 1.0, 1]])
    assert _nan_eq(decode_table({"instances": [41, "F", 2.5, 2]}, SCHEMA).rows, [[41, 0, 2.5, 2]])


def test_seldon_ndarray_with_and_without_names():
    assert _nan_eq(decode_table({"data": {"ndarray": [[1, "F", 2, 0]]}}, SCHEMA).rows, [[1, 0, 2, 0]])
    d = decode_table({"data": {"names": ["level", "sex", "age", "other"], "ndarray": [[2, "M", 5, 9]]}}, SCHEMA)
    assert _nan_eq(d.rows, [[5, 1, np.nan, 2]]) and d.absent[0].tolist() == [False, False, True, False]
    assert d.extra == [["other"]]


def test_v2_single_tensor_and_stacked_columns():
    one = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 4], "data": [1, 0, 2, 1, 3, 1, 4, 2]}]}
    assert _nan_eq(decode_table(one, SCHEMA).rows, [[1, 0, 2, 1], [3, 1, 4, 2]])
    cols = {"inputs": [{"name": f"c{j}", "datatype": "FP64", "shape": [2], "data": [j % 2, j]} for j in range(3)]
                    + [{"name": "c3", "datatype": "INT64", "shape": [2, 1], "data": [2, 0]}]}
    assert _nan_eq(decode_table(cols, SCHEMA).rows, [[0, 1, 0, 2], [0, 1, 2, 0]])


def test_v2_one_1d_tensor_is_one_instance():
    one = {"inputs": [{"name": "x", "datatype": "INT16", "shape": [4], "data": [1, 0, 2, 1]}]}
    assert _nan_eq(decode_table(one, SCHEMA).rows, [[1, 0, 2, 1]])


def test_v2_one_named_input_per_feature_bytes_for_strings():
    body = {"inputs": [
        {"name": "sex", "datatype": "BYTES", "shape": [2], "data": ["M", "F"]},
        {"name": "level", "datatype": "INT64", "shape": [2, 1], "data": [[2], [1]]},
        {"name": "age", "datatype": "FP64", "shape": [2], "data": [41, None]},
        {"name": "comment", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
    ]}
    d = decode_table(body, SCHEMA)
    assert _nan_eq(d.rows, [[41, 1, np.nan, 2], [np.nan, 0, np.nan, 1]])
    assert d.absent[:, 2].all() and not d.absent[:, 0].any() and d.missing[1, 0]
    assert d.extra == [["comment"], ["comment"]]


def test_v2_named_numeric_inputs_take_the_fast_path_in_feature_order():
    body = {"inputs": [{"name": n, "datatype": "FP64", "shape": [1], "data": [v]}
                       for n, v in (("level", 1), ("income", 3.5), ("sex", 0), ("age", 9))]}
    assert _nan_eq(decode_table(body, SCHEMA).rows, [[9, 0, 3.5, 1]])


# -- missing values, categories, extra keys ------------------------------------------------------------------


def test_null_nan_and_absent_are_missing_not_errors():
    body = json.loads('{"instances": [[null, "F", NaN, 1], {"sex": "M"}]}')
    d = decode_table(body, SCHEMA)
    assert d.missing.tolist() == [[True, False, True, False], [True, False, True, True]]
    assert d.absent.tolist() == [[False] * 4, [True, False, True, True]]
    assert d.incomplete.tolist() == [True, True]
    assert np.isnan(d.rows[d.missing]).all() and _nan_eq(d.rows[:, 1], [0, 1])


def test_unseen_category_flagged_nan_and_coded_k():
    d = decode_table({"instances": [[1, "X", 1, 7], [1, "F", 1, -1], [1, 1, 1, 2]]}, SCHEMA)
    assert d.unseen.tolist() == [[False, True, False, True], [False, False, False, True], [False] * 4]
    assert not d.missing.any() and np.isnan(d.rows[d.unseen]).all()
    assert _nan_eq(d.coded(SCHEMA), [[1, 2, 1, 3], [1, 0, 1, 3], [1, 1, 1, 2]])


def test_a_value_list_of_numbers_maps_values_to_codes():
    schema = InputSchema(("grade",), {0: (10, 20, 40)})
    d = decode_table({"instances": [[20], [40], [10.0], [30], ["40"]]}, schema)
    assert _nan_eq(d.rows[:, 0], [1, 2, 0, np.nan, 2]) and d.unseen[:, 0].tolist() == [0, 0, 0, 1, 0]


def test_codes_of_a_numeric_value_list_go_back_to_their_values():
    schema = InputSchema(("x", "grade", "sex"), {1: (10, 20, 40), 2: ("F", "M")})
    rows = np.array([[1.5, 0, 1], [2.5, 2, 0], [3.5, 3, 1]])
    sent = schema.to_values(rows)
    assert _nan_eq(sent, [[1.5, 10, 1], [2.5, 40, 0], [3.5, np.nan, 1]])
    assert _nan_eq(decode_table({"instances": sent.tolist()}, schema).rows, [[1.5, 0, 1], [2.5, 2, 0], [3.5, np.nan, 1]])


def test_non_integer_codes_are_400_strict_and_wrong_type_lax():
    body = {"instances": [[1, 0.5, 1, 1]]}
    assert _reason(body) == "bad_category"
    d = decode_table(body, SCHEMA, strict=False)
    assert d.wrong_type[0].tolist() == [False, True, False, False] and np.isnan(d.rows[0, 1])


def test_extra_keys_recorded_never_refused():
    d = decode_table({"instances": [{"age": 1, "sex": "F", "income": 2, "level": 0, "zip": "123", "id": 7}]}, SCHEMA)
    assert d.extra == [["zip", "id"]] and not d.missing.any()


# -- what stays a 400 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, reason", [
    ('{"instances": [[' + "9" * 400 + ', "F", 1, 1]]}', "out_of_range"),
    ('{"instances": [[1, "F", Infinity, 1]]}', "non_numeric"),
    ('{"instances": [[1, "F", 1e400, 1]]}', "non_numeric"),
    ('{"instances": [["abc", "F", 1, 1]]}', "non_numeric"),
    ('{"instances": [[1, "F", 1, "low"]]}', "non_numeric"),  # a count-only categorical takes codes
    ('{"instances": [[1, "F", 1, 1], [1, 2]]}', "bad_shape"),
    ('{"instances": [[1, "F"]]}', "feature_count"),
    ('{"instances": [[[1], "F", 1, 1]]}', "bad_shape"),
    ('{"instances": [[{"a": 1}, "F", 1, 1]]}', "bad_shape"),
    ('{"instances": [[[[1, 0, 1, 1]]]]}', "bad_shape"),
    ('{"instances": []}', "bad_shape"),
    ('{"instances": 3}', "bad_shape"),
    ('{"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "data": [1, 2]}]}', "bad_shape"),
    ('{"inputs": [{"name": "x", "datatype": "STRING", "data": [1]}]}', "non_numeric"),
    ('{"inputs": [{"name": "age", "data": [1, 2]}, {"name": "sex", "data": ["F"]}]}', "bad_shape"),
    ('{"inputs": []}', "bad_body"),
    ('[1, 2]', "bad_body"),
    ('{"nothing": 1}', "bad_body"),
])
def test_still_400_with_a_bounded_reason(raw, reason):
    assert _reason(json.loads(raw)) == reason


def test_lax_records_wrong_types_instead_of_raising():
    raw = '{"instances": [["abc", "F", Infinity, 1], [' + "9" * 400 + ', "M", [1], 2, 5]]}'
    d = decode_table(json.loads(raw), SCHEMA, strict=False)
    assert d.wrong_type.tolist() == [[True, False, True, False], [True, False, True, False]]
    assert d.extra == [[], ["[4]"]] and np.isnan(d.rows[d.wrong_type]).all()
    short = decode_table({"instances": [[1, "F"]]}, SCHEMA, strict=False)
    assert short.absent[0].tolist() == [False, False, True, True]
    assert _reason({"no": "body"}, strict=False) == "bad_body"


def test_named_rows_need_feature_names():
    assert _reason({"instances": [{"a": 1}]}, InputSchema(None, {})) == "bad_body"


def test_schema_from_spec_and_from_settings_agree():
    spec = SchemaSpec(featureNames=["age", "sex", "income", "level"], categorical={"sex": ["F", "M"], "level": 3})
    assert InputSchema.from_spec(spec) == SCHEMA
    assert InputSchema.from_settings(["age", "sex", "income", "level"], '{"1": ["F", "M"], "3": 3}') == SCHEMA
    assert InputSchema.from_settings(None, {}).n_features is None


# -- properties ------------------------------------------------------------------------------------------------------

_finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_finite, min_size=3, max_size=3), min_size=1, max_size=8))
def test_numbers_arrive_bit_exact_as_decode_instances_reads_them(rows):
    body = json.loads(json.dumps({"instances": rows}))
    d = decode_table(body, InputSchema(("a", "b", "c"), {}))
    assert d.rows.tobytes() == np.asarray(rows, dtype=np.float64).tobytes()
    assert d.rows.tobytes() == decode_instances(body, 3).tobytes()


_cell = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 400), max_value=10 ** 400),
                  st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["F", "M", "X", "1", "nan", "", "inf"]),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
_row = st.one_of(st.lists(_cell, min_size=0, max_size=6),
                 st.dictionaries(st.sampled_from(["age", "sex", "income", "level", "zip"]), _cell, max_size=5))


def _consistent(d: Decoded, n_features: int) -> None:
    n = len(d)
    for m in (d.missing, d.absent, d.unseen, d.wrong_type):
        assert m.shape == (n, n_features) and m.dtype == bool
    assert not (d.absent & ~d.missing).any()
    assert np.isnan(d.rows[d.missing | d.unseen | d.wrong_type]).all()
    assert np.isfinite(d.rows[~(d.missing | d.unseen | d.wrong_type)]).all()
    assert len(d.extra) == n
    codes = d.rows[:, 1][~np.isnan(d.rows[:, 1])]
    assert set(codes.tolist()) <= {0.0, 1.0}


@settings(max_examples=400, deadline=None)
@given(st.lists(_row, min_size=0, max_size=5), st.booleans())
def test_any_rows_decode_consistently_or_raise_a_bounded_400(rows, strict):
    try:
        d = decode_table({"instances": rows}, SCHEMA, strict=strict)
    except PayloadError as exc:
        assert exc.reason in REASONS and exc.status == 400
        return
    _consistent(d, 4)
    if strict:
        assert not d.wrong_type.any()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["age", "sex", "income", "level", "zip"]),
                          st.lists(_cell, min_size=2, max_size=2)), min_size=1, max_size=5), st.booleans())
def test_any_named_v2_inputs_decode_consistently_or_raise_a_bounded_400(inputs, strict):
    body = {"inputs": [{"name": n, "datatype": "BYTES", "shape": [2], "data": data} for n, data in inputs]}
    try:
        d = decode_table(body, SCHEMA, strict=strict)
    except PayloadError as exc:
        assert exc.reason in REASONS
        return
    _consistent(d, 4)


def test_nan_in_rows_is_only_ever_flagged():
    d = decode_table({"instances": [[math.nan, "F", 1, 1]]}, SCHEMA)
    assert d.missing[0, 0] and not d.unseen.any()


_cells = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(0, 3),
                   st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["F", "M", "X", "3.5", "", "nan"]),
                   st.just(10**400), st.lists(st.integers(0, 2), max_size=2))


@settings(max_examples=600, deadline=None, database=None)
@given(rows=st.lists(st.dictionaries(st.sampled_from(["a", "sex", "n", "zz"]), _cells, max_size=4), min_size=1,
                     max_size=6),
       strict=st.booleans(), uniform=st.sampled_from([None, 1.5, 7, "F", None]))
def test_named_rows_column_by_column_equal_the_cell_by_cell_reading(rows, strict, uniform):
    """Named (object) rows are decoded a column at a time where a column holds only numbers or
    listed strings (besides nulls and gaps); every body must read exactly as the cell-by-cell path
    reads it — the same rows, masks and extras, or the same refusal."""
    import vigil.instances as inst

    if uniform is not None:  # a column of one kind (the column path's case), with some gaps
        for i, r in enumerate(rows):
            if i % 3:
                r["sex" if isinstance(uniform, str) else "a"] = uniform
    schema = InputSchema(("a", "sex", "n"), {1: ("F", "M")})
    body = {"instances": rows}

    def read():
        try:
            d = decode_table(body, schema, strict=strict)
        except PayloadError as exc:
            return ("refused", exc.reason)
        return (d.rows.tobytes(), d.missing.tolist(), d.absent.tolist(), d.unseen.tolist(), d.wrong_type.tolist(),
                d.extra)

    fast = read()
    column = inst._column
    inst._column = lambda *a: False  # the cell loop for every column
    try:
        slow = read()
    finally:
        inst._column = column
    assert fast == slow
