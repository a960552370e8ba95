"""The detector's hot-path CloudEvents codec (`vigil_detectors.frame.wire`) against the SDK.

The fast reader must accept only what the SDK accepts and give the same attributes and
data; numbers decoded by orjson must equal `json.loads` bit for bit (the reference file vs
JSON rule); replies must carry the SDK's headers and an equal body.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from cloudevents.core.bindings import http as ce_http
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil_detectors.frame import wire


def _sdk(headers, body):
    event = ce_http.from_http_event(ce_http.HTTPMessage(headers=headers, body=body))
    return event.get_attributes(), event.get_data()


def _same(headers, body):
    """read_event and the SDK agree: both refuse, or both give the same attributes and data."""
    try:
        want = _sdk(dict(headers), body)
    except Exception as exc:  # noqa: BLE001 - whatever the SDK raises, the fast path must raise too
        with pytest.raises(type(exc)):
            wire.read_event(dict(headers), body)
        return None
    got = wire.read_event(dict(headers), body)
    w_attrs, g_attrs = dict(want[0]), dict(got[0])
    w_time, g_time = w_attrs.pop("time"), g_attrs.pop("time")
    assert type(w_time) is type(g_time)  # now() on both sides when absent
    if "ce-time" in {k.lower() for k in headers}:  # sent: the same instant, offset and microseconds
        assert g_time == w_time and g_time.isoformat() == w_time.isoformat()
    assert g_attrs == w_attrs
    assert repr(got[1]) == repr(want[1])  # repr: NaN equals NaN, bytes and str stay apart
    return got


BASE = {"ce-specversion": "1.0", "ce-id": "e1", "ce-source": "/vigil/m/logger", "ce-type": "dev.vigil.inference.request",
        "content-type": "application/json", "ce-inferenceid": "i-1", "ce-modelname": "iris"}


def test_the_usual_event_takes_the_fast_path_and_equals_the_sdk():
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
    assert wire._fast(dict(BASE), body) is not None
    attrs, data = _same(BASE, body)
    assert attrs["inferenceid"] == "i-1" and data == {"instances": [[5.1, 3.5, 1.4, 0.2]]}


@pytest.mark.parametrize("change", [
    {"ce-specversion": "0.3"}, {"ce-Bad_Name": "x"}, {"ce-bad_name": "x"},
    {"ce-data": "x"}, {"ce-source": "%2Fsrc%20x"}, {"ce-subject": ""}, {"content-type": "text/json"},
    {"content-type": "application/json; charset=utf-8"}, {"ce-id": ""},
])
def test_unusual_events_give_what_the_sdk_gives(change):
    _same({**BASE, **change}, b'{"instances": [[1, 2]]}')


#: time values: the logger's and the SDK's forms (fast path), and forms only the SDK reads or refuses
TIMES = ["2026-01-01T00:00:00Z", "2026-12-02T16%3A17%3A00.123456%2B00%3A00", "2026-12-02T16:17:00.123+05:30",
         "2026-12-02T16:17:00.123456-08:00", "2026-12-02T16:17:00.5Z", "2026-12-02T16:17:00.123456789Z",
         "2026-12-02T24:00:00Z", "2026-13-02T16:17:00Z", "2026-12-02T16:17:60Z", "2026-12-02T16:17:00",
         "2026-12-02 16:17:00Z", "20261202T161700Z", "2026-12-02", "yesterday", ""]


@pytest.mark.parametrize("value", TIMES)
def test_a_sent_time_reads_as_the_sdk_reads_it(value):
    _same({**BASE, "ce-time": value}, b'{"instances": [[1, 2]]}')


@pytest.mark.parametrize("ts", [1796227296.359232, 1796227296.0, 1796227296.5])
def test_the_loggers_events_take_the_fast_path_and_equal_the_sdk(ts):
    """Every event the logger sends carries `time` (its sinks encode it with the SDK): it must not fall back."""
    from vigil.logger.sinks import Event

    attrs = {"id": "e1", "source": "/vigil/m/logger", "type": "dev.vigil.inference.request", "time": ts,
             "datacontenttype": "application/json", "inferenceid": "i-1", "modelname": "iris"}
    msg = Event("request", attrs, b'{"instances": [[5.1, 3.5]]}').message()
    headers = {k.lower(): v for k, v in msg.headers.items()}
    assert "ce-time" in headers and wire._fast(dict(headers), msg.body) is not None
    got = _same(headers, msg.body)
    assert got is not None and got[0]["time"].timestamp() == pytest.approx(ts, abs=1e-6)


@pytest.mark.parametrize("body", [b"", b"NaN", b'{"instances": [[NaN, 1]]}', b'{"x": ' + b"9" * 400 + b"}",
                                  b'"\\ud800"', b"[1, 2", b"\xff\xfe", b'{"a": 1, "a": 2}', b"1e400",
                                  b"-9223372036854775809", b"18446744073709551616", b"[1.00000000000000000001]",
                                  b"[12345678901234567890123]", b'{"a": [0.5, -12345678901234567890]}',
                                  b"1e1234567890123456789", b"[1,9223372036854775808]"])
def test_bodies_orjson_refuses_or_reads_differently_fall_back_to_the_sdk(body):
    _same(BASE, body)


@pytest.mark.parametrize("body", [b'{"inputs": [{"data": [[0.0012345678901234567, -1.23456789012345678901234]]}]}',
                                  b"[12345678901234567890.5, 12345678901234567890e-3, 1234567890123456789012E2]",
                                  b"[0.1, 922337203685477580, -922337203685477580]"])
def test_long_fractions_and_floats_stay_on_the_fast_path_and_equal_the_sdk(body):
    """Only integer tokens of 19+ digits need the SDK (orjson would make them floats); a float's
    long digit runs (fraction, mantissa) read the same in both, so they keep the fast path."""
    assert wire._fast(dict(BASE), body) is not None
    _same(BASE, body)


_digits = st.text("0123456789", min_size=1, max_size=30)


@st.composite
def _number_tokens(draw):
    """JSON number tokens with long digit runs in every place: integer, fraction, exponent."""
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(_digits).lstrip("0") or "0"
    frac = "." + draw(_digits) if draw(st.booleans()) else ""
    exp = draw(st.sampled_from(["e", "E", "e-", "E+"])) + draw(st.text("0123456789", min_size=1, max_size=3)) \
        if draw(st.booleans()) else ""
    return sign + whole + frac + exp


@settings(max_examples=600, deadline=None, database=None)
@given(tokens=st.lists(_number_tokens(), min_size=1, max_size=6))
def test_fuzz_number_tokens_read_as_the_sdk_reads_them_bit_for_bit(tokens):
    """Fast path or not, every number of a body equals the SDK's (``json``) bit for bit; an
    integer token of 19+ digits always takes the SDK's path."""
    body = ("[" + ", ".join(tokens) + "]").encode()
    got = _same(BASE, body)
    if got is None:
        return
    sdk = json.loads(body)
    for a, b in zip(got[1], sdk, strict=True):
        assert type(a) is type(b) and (struct.pack("<d", a) == struct.pack("<d", b) if isinstance(b, float) else a == b)
    if any("." not in t and "e" not in t.lower() and len(t.lstrip("-")) >= 19 for t in tokens):
        assert wire._fast(dict(BASE), body) is None


_names = st.sampled_from(["ce-id", "ce-source", "ce-type", "ce-specversion", "ce-time", "ce-subject", "ce-x",
                          "ce-inferenceid", "ce-data", "ce-a_b", "content-type", "x-other"])
_values = st.one_of(st.sampled_from(["1.0", "0.3", "", "application/json", "text/plain", "%41", "%zz", "a b",
                                     *TIMES]),
                    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=6))
_json_bodies = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5)),
                            lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                            max_leaves=15)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(extra=st.dictionaries(_names, _values, max_size=5), doc=_json_bodies, raw=st.booleans(), junk=st.binary(max_size=8))
def test_fuzz_read_event_equals_the_sdk(extra, doc, raw, junk):
    _same({**BASE, **extra}, junk if raw else json.dumps(doc).encode())


@settings(max_examples=2000, deadline=None, database=None)
@given(bits=st.integers(0, 2**64 - 1))
def test_orjson_floats_equal_json_loads_bit_for_bit(bits):
    x = struct.unpack("<d", struct.pack("<Q", bits))[0]
    if not math.isfinite(x):
        return
    for text in (repr(x), f"{x:.17g}", f"{x:.6e}", f"{x:.3f}"):
        a, b = wire.orjson.loads(text), json.loads(text)
        assert struct.pack("<d", float(a)) == struct.pack("<d", float(b)), text


def test_reply_equals_the_sdks_but_for_the_time():
    attrs = {"type": "dev.vigil.detection.drift", "source": "/vigil/iris/drift", "id": "e 1/2",
             "datacontenttype": "application/json", "inferenceid": "i-1"}
    data = {"drift": {"detected": False, "pValue": 0.41, "features": {"a": {"score": np.float64(0.1)}}},
            "scores": [0.5, 1e-300, 123456789012345678]}
    headers, body = wire.reply(attrs, data)
    sdk_headers, sdk_body = wire.reply_sdk(attrs, data)
    assert headers.pop("ce-time") and sdk_headers.pop("ce-time")
    assert headers == sdk_headers
    assert json.loads(body) == json.loads(sdk_body)
