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
from libc.math cimport INFINITY, signbit
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


cdef const char* DIGIT_PAIRS = (b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                b"8081828384858687888990919293949596979899")


cdef inline int _u64_digits(uint64_t v, char* end) noexcept:
    """The decimal digits of ``v`` written backwards from ``end``; their count."""
    cdef char* p = end
    cdef uint64_t r
    while v >= 100:
        r = v % 100
        v //= 100
        p -= 2
        p[0], p[1] = DIGIT_PAIRS[2 * r], DIGIT_PAIRS[2 * r + 1]
    if v >= 10:
        p -= 2
        p[0], p[1] = DIGIT_PAIRS[2 * v], DIGIT_PAIRS[2 * v + 1]
    else:
        p -= 1
        p[0] = <char>(c'0' + v)
    return <int>(end - p)


ctypedef struct Stamp:                 # an int64 as a JSON string, kept to be copied
    int64_t v
    int n                              # its length, quotes included; 0: nothing kept yet
    char text[22]                      # the string in the last n bytes


cdef inline void _stamp(Stamp* kept, int64_t v) noexcept:
    """``v`` as a quoted decimal string in ``kept``, unless it holds it already."""
    cdef int start
    if kept.n and kept.v == v:
        return
    start = 21 - _u64_digits(<uint64_t>0 - <uint64_t>v if v < 0 else <uint64_t>v, kept.text + 21)
    if v < 0:
        start -= 1
        kept.text[start] = c'-'
    start -= 1
    kept.text[start] = c'"'
    kept.text[21] = c'"'
    kept.v = v
    kept.n = 22 - start


cdef int _j_quoted_i64(Writer* w, int64_t v, Stamp* kept) except -1:
    """An int64 as OTLP/JSON carries it: a decimal string; ``kept`` holds the last one
    written (the same timestamp repeats in every point of a collection)."""
    _stamp(kept, v)
    return _raw(w, kept.text + 22 - kept.n, kept.n)


cdef inline int _j_i64_string(Writer* w, int64_t v) except -1:
    cdef Stamp own
    own.n = 0
    return _j_quoted_i64(w, v, &own)


cdef int _j_i64(Writer* w, int64_t v) except -1:
    """An int64 as a JSON number."""
    cdef Stamp own
    own.n = 0
    _stamp(&own, v)
    return _raw(w, own.text + 23 - own.n, own.n - 2)


cdef int _j_quoted_u64(Writer* w, uint64_t v) except -1:
    """A uint64 (a count) as OTLP/JSON carries it: a decimal string."""
    cdef char text[22]
    cdef int n = _u64_digits(v, text + 21)
    text[21] = c'"'
    text[20 - n] = c'"'
    return _raw(w, text + 20 - n, n + 2)


cdef int _j_double(Writer* w, double d) except -1:
    """``repr(d)``, as ``json`` writes a float; NaN and the infinities as strings."""
    if d != d:
        return _lit(w, b'"NaN"')
    if d == INFINITY:
        return _lit(w, b'"Infinity"')
    if d == -INFINITY:
        return _lit(w, b'"-Infinity"')
    return _j_finite(w, d)


cdef int _j_finite(Writer* w, double d) except -1:
    """``repr(d)`` of a finite double. An integral double below 2**53 in magnitude is
    its integer and ".0", as repr writes it, without the shortest-digits search."""
    cdef char* s
    if -9007199254740992.0 < d < 9007199254740992.0 and d == <double><int64_t>d:
        if d == 0.0 and signbit(d):
            return _lit(w, b"-0.0")
        _j_i64(w, <int64_t>d)
        return _lit(w, b".0")
    s = PyOS_double_to_string(d, c'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        _lit(w, s)
    finally:
        PyMem_Free(s)
    return 0


cdef int _j_double_or_copy(Writer* w, double d, double prev, Py_ssize_t at, Py_ssize_t n) except -1:
    """``_j_double(d)``, or a copy of ``prev``'s text (``n`` bytes at ``at``) when ``d`` is
    ``prev`` bit for bit (a histogram of one measurement: its sum, min and max)."""
    if _double_bits(d) != _double_bits(prev):
        return _j_double(w, d)
    _reserve(w, n)
    memcpy(w.buf + w.pos, w.buf + at, n)
    w.pos += n
    return 0


cdef const char* HEX_DIGITS = b"0123456789abcdef"


cdef inline int _put_escape(uint8_t* q, uint32_t c) noexcept:
    """``json``'s escape of the character ``c`` (below U+10000) at ``q``: \\" \\\\ \\n
    \\r \\t \\b \\f, else \\uXXXX; its length."""
    cdef char second = (c if c == 0x22 or c == 0x5C else c'n' if c == 0x0A else c'r' if c == 0x0D
                        else c't' if c == 0x09 else c'b' if c == 0x08 else c'f' if c == 0x0C else 0)
    q[0] = c'\\'
    if second:
        q[1] = <uint8_t>second
        return 2
    q[1] = c'u'
    q[2] = <uint8_t>HEX_DIGITS[(c >> 12) & 15]
    q[3] = <uint8_t>HEX_DIGITS[(c >> 8) & 15]
    q[4] = <uint8_t>HEX_DIGITS[(c >> 4) & 15]
    q[5] = <uint8_t>HEX_DIGITS[c & 15]
    return 6


cdef int _j_escaped(Writer* w, const uint8_t* p, Py_ssize_t n) except -1:
    """UTF-8 text as a JSON string: '"' and '\\' escaped, control characters too
    (\\n, \\r, \\t, \\b, \\f, else \\u00xx), every other byte as is; one pass."""
    cdef Py_ssize_t i, k = 1
    cdef uint8_t c
    cdef uint8_t* q
    _reserve(w, n + 2)
    q = w.buf + w.pos
    q[0] = c'"'
    for i in range(n):
        c = p[i]
        if c >= 0x20 and c != 0x22 and c != 0x5C:
            q[k] = c
            k += 1
            continue
        # Room for this escape (6 bytes at most), the rest and the closing quote.
        w.pos += k
        _reserve(w, 6 + n - i)
        q = w.buf + w.pos
        k = _put_escape(q, c)
    q[k] = c'"'
    w.pos += k + 1
    return 0


cdef int _j_str(Writer* w, str s) except -1:
    """``s`` as a JSON string, in UTF-8 (a lone surrogate as "?")."""
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
        _j_i64_string(w, i)
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


cdef int _j_times(Writer* w, int64_t start, int64_t now, Stamp* kept) except -1:
    """startTimeUnixNano and timeUnixNano, each left out when 0; ``kept[0]`` and
    ``kept[1]``: the last of each written."""
    if start:
        _comma(w)
        _lit(w, b'"startTimeUnixNano":')
        _j_quoted_i64(w, start, &kept[0])
    if now:
        _comma(w)
        _lit(w, b'"timeUnixNano":')
        _j_quoted_i64(w, now, &kept[1])
    return 0


cdef int _j_number(Writer* w, const NumSnap* s, int64_t start, int64_t now, tuple attrs,
                   Stamp* kept) except -1:
    """otlp_json's number point for the point make_point would build (``start`` 0: none)."""
    _lit(w, b'{')
    if _j_attributes(w, attrs) != VALUE_OK:
        return VALUE_UNSUPPORTED
    _j_times(w, start, now, kept)
    _comma(w)
    if s.isfloat:
        _lit(w, b'"asDouble":')
        _j_double(w, s.d)
    else:
        _lit(w, b'"asInt":')
        _j_i64_string(w, s.i)
    _lit(w, b'}')
    return VALUE_OK


cdef int _j_histogram(Writer* w, HistogramStream h, const HistSnap* s, int64_t start, int64_t now,
                      tuple attrs, Stamp* kept, Py_ssize_t* bounds) except -1:
    """otlp_json's histogram point for the point make_point would build. ``bounds``: where
    and how long the explicitBounds field is in the body, once a point has written it
    (every point of the stream has the same)."""
    cdef uint64_t count
    cdef double total = _record_sum(s)
    cdef Py_ssize_t j, at, n
    _lit(w, b'{')
    if _j_attributes(w, attrs) != VALUE_OK:
        return VALUE_UNSUPPORTED
    _j_times(w, start, now, kept)
    if s.count:
        _comma(w)
        _lit(w, b'"count":')
        _j_quoted_u64(w, s.count)
    _comma(w)
    _lit(w, b'"sum":')
    at = w.pos
    _j_double(w, total)
    n = w.pos - at
    _lit(w, b',"min":')
    _j_double_or_copy(w, hist_extreme(s, True), total, at, n)
    _lit(w, b',"max":')
    _j_double_or_copy(w, hist_extreme(s, False), total, at, n)
    _lit(w, b',"bucketCounts":[')
    for j in range(h.nb + 1):
        _comma(w)
        count = hist_bucket(s, j)
        if count:
            _j_quoted_u64(w, count)
        else:
            _lit(w, b'"0"')
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
    # The OTLP/JSON ``dataPoints`` array (UTF-8 bytes) of ``data``, a Sum, Gauge or
    # Histogram, written from its collection's snapshot; None when its points are to be
    # encoded instead.
    cdef int kind = _kind(data)
    cdef Snapshot snap = _records_of(data, kind)
    cdef Writer w
    cdef Py_ssize_t i
    cdef Py_ssize_t bounds[2]
    cdef Stamp kept[2]
    cdef char* rec
    cdef int r
    if snap is None:
        return None
    bounds[0] = bounds[1] = 0
    kept[0].n = kept[1].n = 0
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
                                 _record_start(snap, rec, kind), snap.now, <tuple>snap.attrs[i], kept,
                                 bounds)
            else:
                r = _j_number(&w, <NumSnap*>(rec + sizeof(int64_t)), _record_start(snap, rec, kind),
                              snap.now, <tuple>snap.attrs[i], kept)
            if r != VALUE_OK:
                return None
        _lit(&w, b']')
        return _finish(&w)
    finally:
        Py_XDECREF(w.body)
