# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""OTLP/JSON data points written straight from a collection's snapshot.

``json_data_points(data)`` returns the UTF-8 JSON array of a Sum, Gauge or
Histogram's ``dataPoints`` when its data still holds the collection's Snapshot
(otlp_wire.pxi's ``_records_of``: the records its points would be built from), or None
when there are points to encode (``otelmetrics/export/otlp_json.py`` encodes those, and
writes the rest of the request around this array).

Invariants:
- The bytes are exactly those ``otlp_json.py`` gives for the points the records would
  build: its field names and order, proto3 defaults left out, the numbers as ``json``
  writes them (a double as ``repr`` does, NaN and the infinities as strings, 64-bit
  integers and timestamps as decimal strings), strings escaped as ``json.dumps`` with
  ``ensure_ascii=False`` escapes them, then UTF-8 with lone surrogates as "?".
- No Python object per point: the array is written into the bytes object returned.
- It writes the attribute values a stream stores (attributes.pxi: exact str, bool,
  int64, float, and tuples of those with None), none of which OTLP drops; anything else
  (an int beyond int64, another type: none reaches a stream) gives None, and the points,
  which ``otlp_json`` encodes and drops attributes from, are the data.
"""
from libc.math cimport INFINITY
from libc.string cimport strlen


cdef extern from "Python.h":
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags,
                                int* ptype) except NULL
    int Py_DTSF_ADD_DOT_0


cdef enum:
    VALUE_OK = 0
    VALUE_UNSUPPORTED = 1      # not written here: the metric's points are encoded instead


cdef inline int _lit(Writer* w, const char* s) except -1:
    return _raw(w, s, strlen(s))


cdef inline int _comma(Writer* w) except -1:
    """The separator before a field or an item: none first in its object or array."""
    cdef uint8_t last = w.buf[w.pos - 1]
    if last != c'{' and last != c'[':
        _reserve(w, 1)
        w.buf[w.pos] = c','
        w.pos += 1
    return 0


cdef int _j_u64(Writer* w, uint64_t v) except -1:
    cdef char digits[20]
    cdef int n = 0
    while True:
        digits[19 - n] = <char>(c'0' + v % 10)
        v //= 10
        n += 1
        if not v:
            break
    return _raw(w, digits + 20 - n, n)


cdef int _j_i64(Writer* w, int64_t v) except -1:
    if v < 0:
        _lit(w, b"-")
        return _j_u64(w, <uint64_t>0 - <uint64_t>v)
    return _j_u64(w, <uint64_t>v)


cdef int _j_quoted_i64(Writer* w, int64_t v) except -1:
    """An int64 as OTLP/JSON carries it: a decimal string."""
    _lit(w, b'"')
    _j_i64(w, v)
    return _lit(w, b'"')


cdef int _j_double(Writer* w, double d) except -1:
    """``repr(d)``, as ``json`` writes a float; NaN and the infinities as strings."""
    cdef char* s
    if d != d:
        return _lit(w, b'"NaN"')
    if d == INFINITY:
        return _lit(w, b'"Infinity"')
    if d == -INFINITY:
        return _lit(w, b'"-Infinity"')
    s = PyOS_double_to_string(d, c'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        _lit(w, s)
    finally:
        PyMem_Free(s)
    return 0


cdef const char* HEX_DIGITS = b"0123456789abcdef"


cdef int _j_escaped(Writer* w, const uint8_t* p, Py_ssize_t n) except -1:
    """UTF-8 text as a JSON string: '"' and '\\' escaped, control characters too
    (\\n, \\r, \\t, \\b, \\f, else \\u00xx), every other byte as is."""
    cdef Py_ssize_t i, run = 0
    cdef uint8_t c
    cdef char second
    cdef uint8_t* q
    _reserve(w, n + 2)
    w.buf[w.pos] = c'"'
    w.pos += 1
    for i in range(n):
        c = p[i]
        if c >= 0x20 and c != 0x22 and c != 0x5C:
            continue
        _raw(w, <const char*>p + run, i - run)
        run = i + 1
        second = (c if c == 0x22 or c == 0x5C else c'n' if c == 0x0A else c'r' if c == 0x0D
                  else c't' if c == 0x09 else c'b' if c == 0x08 else c'f' if c == 0x0C else 0)
        _reserve(w, 6)
        q = w.buf + w.pos
        q[0] = 0x5C
        if second:
            q[1] = <uint8_t>second
            w.pos += 2
        else:
            q[1], q[2], q[3] = c'u', c'0', c'0'
            q[4] = <uint8_t>HEX_DIGITS[c >> 4]
            q[5] = <uint8_t>HEX_DIGITS[c & 15]
            w.pos += 6
    _raw(w, <const char*>p + run, n - run)
    return _lit(w, b'"')


cdef int _j_str(Writer* w, str s) except -1:
    cdef Py_ssize_t n
    cdef const char* data
    if PyUnicode_IS_COMPACT_ASCII(s):
        return _j_escaped(w, <const uint8_t*>PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s))
    try:
        data = PyUnicode_AsUTF8AndSize(s, &n)
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8: "?" for each, as otlp_json's final encode gives.
        b = s.encode("utf-8", "replace")
        return _j_escaped(w, <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
    return _j_escaped(w, <const uint8_t*>data, n)


cdef int _j_any_value(Writer* w, object v) except -1:
    """otlp_json's AnyValue object for a value a stream stores (an exact str, bool,
    int64, float, None inside a sequence, or a tuple or list of those); else
    VALUE_UNSUPPORTED, part of it written."""
    cdef int overflow = 0, r
    cdef int64_t i
    t = type(v)
    if t is str:
        _lit(w, b'{"stringValue":')
        _j_str(w, <str>v)
    elif t is bool:
        if v is True:
            _lit(w, b'{"boolValue":true')
        else:
            _lit(w, b'{"boolValue":false')
    elif t is int:
        i = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow:
            return VALUE_UNSUPPORTED
        _lit(w, b'{"intValue":')
        _j_quoted_i64(w, i)
    elif t is float:
        _lit(w, b'{"doubleValue":')
        _j_double(w, <double>v)
    elif v is None:
        _lit(w, b'{')
    elif t is tuple or t is list:
        _lit(w, b'{"arrayValue":{"values":[')
        for item in v:
            _comma(w)
            r = _j_any_value(w, item)
            if r != VALUE_OK:
                return r
        _lit(w, b']}')
    else:
        return VALUE_UNSUPPORTED
    _lit(w, b'}')
    return VALUE_OK


cdef int _j_attributes(Writer* w, tuple flat) except -1:
    """The "attributes" field of a stream's stored set (k0, v0, k1, v1, ...), in its
    order, left out when empty; VALUE_UNSUPPORTED for a key or value a stream does not
    store."""
    cdef Py_ssize_t j
    if not flat:
        return VALUE_OK
    _comma(w)
    _lit(w, b'"attributes":[')
    for j in range(0, len(flat), 2):
        key = flat[j]
        if type(key) is not str:
            return VALUE_UNSUPPORTED
        _comma(w)
        _lit(w, b'{"key":')
        _j_str(w, <str>key)
        _lit(w, b',"value":')
        if _j_any_value(w, flat[j + 1]) != VALUE_OK:
            return VALUE_UNSUPPORTED
        _lit(w, b'}')
    _lit(w, b']')
    return VALUE_OK


cdef int _j_times(Writer* w, int64_t start, int64_t now) except -1:
    """startTimeUnixNano and timeUnixNano, each left out when 0."""
    if start:
        _comma(w)
        _lit(w, b'"startTimeUnixNano":')
        _j_quoted_i64(w, start)
    if now:
        _comma(w)
        _lit(w, b'"timeUnixNano":')
        _j_quoted_i64(w, now)
    return 0


cdef int _j_number(Writer* w, const NumSnap* s, int64_t start, int64_t now, tuple attrs) except -1:
    """otlp_json's number point for the point make_point would build (``start`` 0: none)."""
    _lit(w, b'{')
    if _j_attributes(w, attrs) != VALUE_OK:
        return VALUE_UNSUPPORTED
    _j_times(w, start, now)
    _comma(w)
    if s.isfloat:
        _lit(w, b'"asDouble":')
        _j_double(w, s.d)
    else:
        _lit(w, b'"asInt":')
        _j_quoted_i64(w, s.i)
    _lit(w, b'}')
    return VALUE_OK


cdef int _j_histogram(Writer* w, HistogramStream h, const HistSnap* s, int64_t start, int64_t now,
                      tuple attrs, Py_ssize_t* bounds) except -1:
    """otlp_json's histogram point for the point make_point would build. ``bounds``: where
    and how long the explicitBounds field is in the body, once a point has written it
    (every point of the stream has the same)."""
    cdef const uint64_t* counts = <const uint64_t*>(<const char*>s + sizeof(HistSnap))
    cdef Py_ssize_t j
    _lit(w, b'{')
    if _j_attributes(w, attrs) != VALUE_OK:
        return VALUE_UNSUPPORTED
    _j_times(w, start, now)
    if s.count:
        _comma(w)
        _lit(w, b'"count":"')
        _j_u64(w, s.count)
        _lit(w, b'"')
    _comma(w)
    _lit(w, b'"sum":')
    _j_double(w, _record_sum(s))
    _lit(w, b',"min":')
    _j_double(w, _record_extreme(h, s, s.vmin))
    _lit(w, b',"max":')
    _j_double(w, _record_extreme(h, s, s.vmax))
    _lit(w, b',"bucketCounts":[')
    for j in range(h.nb + 1):
        _comma(w)
        _lit(w, b'"')
        _j_u64(w, counts[j])
        _lit(w, b'"')
    _lit(w, b']')
    if h.nb:
        if bounds[1]:
            _reserve(w, bounds[1])
            memcpy(w.buf + w.pos, w.buf + bounds[0], bounds[1])
            w.pos += bounds[1]
        else:
            bounds[0] = w.pos
            _lit(w, b',"explicitBounds":[')
            for j in range(h.nb):
                _comma(w)
                _j_double(w, h.bounds[j])
            _lit(w, b']')
            bounds[1] = w.pos - bounds[0]
    _lit(w, b'}')
    return VALUE_OK


def json_data_points(data):
    """The OTLP/JSON ``dataPoints`` array (UTF-8 bytes) of ``data``, a Sum, Gauge or
    Histogram, written from its collection's snapshot; None when its points are to be
    encoded instead."""
    cdef int kind = _kind(data)
    cdef Snapshot snap = _records_of(data, kind)
    cdef Writer w
    cdef Py_ssize_t i
    cdef Py_ssize_t bounds[2]
    cdef char* rec
    cdef int r
    if snap is None:
        return None
    bounds[0] = bounds[1] = 0
    _writer_init(&w)
    try:
        _writer_body(&w, 64 + snap.count * (128 if kind != KIND_HISTOGRAM else
                                            192 + 24 * (<HistogramStream>snap.stream).nb))
        _lit(&w, b'[')
        for i in range(snap.count):
            rec = snap.buf + i * snap.rec
            _comma(&w)
            if kind == KIND_HISTOGRAM:
                r = _j_histogram(&w, <HistogramStream>snap.stream, <HistSnap*>(rec + sizeof(int64_t)),
                                 _record_start(snap, rec, kind), snap.now, <tuple>snap.attrs[i], bounds)
            else:
                r = _j_number(&w, <NumSnap*>(rec + sizeof(int64_t)), _record_start(snap, rec, kind),
                              snap.now, <tuple>snap.attrs[i])
            if r != VALUE_OK:
                return None
        _lit(&w, b']')
        return _finish(&w)
    finally:
        Py_XDECREF(w.body)
