# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""Protobuf wire format for OTLP metrics, written straight from the collected data.

``encode_request(metrics_data)`` returns the bytes of an ``ExportMetricsServiceRequest``
(opentelemetry-proto's collector/metrics/v1/metrics_service.proto) without any protobuf
runtime. It reads the data model by attribute, so opentelemetry-sdk's ``MetricsData``
encodes the same way as ours; our compiled point types take a faster typed path, and a
metric whose points were never built (its data still holds the collection's snapshot,
table.pxd) is written straight from the copied cells, with no Python object per point.

Length prefixes are never computed by encoding twice:
- small messages (points, attributes, exemplars) get a one-byte placeholder that is
  patched when the message closes; the rare body of 128 bytes or more is shifted right
  by the extra length bytes;
- the four outer levels (resource, scope, metric, data container) can span the whole
  payload, so their tag and length are kept aside and spliced in at the end, in place,
  by one backward pass that moves every byte once.
The body is written into the bytes object that is returned, so no second copy of it is
ever in memory.

``decode_fields(data)`` is the small reader the exporter needs for response bodies
(``ExportMetricsServiceResponse``, ``google.rpc.Status``).

otlp_json.pxi writes OTLP/JSON data points with the same Writer and the same readers of
a snapshot's records (``_records_of``, ``_record_start``, ``_record_sum``; aggregations.pxd's ``hist_extreme``).
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove


cdef enum:
    # Wire types.
    VARINT = 0
    I64 = 1
    LEN = 2

    # Field numbers, from opentelemetry-proto (metrics.proto, common.proto, resource.proto).
    REQ_RESOURCE_METRICS = 1
    RM_RESOURCE = 1
    RM_SCOPE_METRICS = 2
    RM_SCHEMA_URL = 3
    RES_ATTRIBUTES = 1
    SM_SCOPE = 1
    SM_METRICS = 2
    SM_SCHEMA_URL = 3
    SCOPE_NAME = 1
    SCOPE_VERSION = 2
    SCOPE_ATTRIBUTES = 3
    M_NAME = 1
    M_DESCRIPTION = 2
    M_UNIT = 3
    M_GAUGE = 5
    M_SUM = 7
    M_HISTOGRAM = 9
    M_EXP_HISTOGRAM = 10
    DATA_POINTS = 1            # Gauge, Sum, Histogram, ExponentialHistogram
    DATA_TEMPORALITY = 2
    SUM_IS_MONOTONIC = 3
    NDP_START = 2
    NDP_TIME = 3
    NDP_AS_DOUBLE = 4
    NDP_EXEMPLARS = 5
    NDP_AS_INT = 6
    NDP_ATTRIBUTES = 7
    NDP_FLAGS = 8
    HDP_START = 2
    HDP_TIME = 3
    HDP_COUNT = 4
    HDP_SUM = 5
    HDP_BUCKET_COUNTS = 6
    HDP_EXPLICIT_BOUNDS = 7
    HDP_EXEMPLARS = 8
    HDP_ATTRIBUTES = 9
    HDP_FLAGS = 10
    HDP_MIN = 11
    HDP_MAX = 12
    EDP_ATTRIBUTES = 1
    EDP_START = 2
    EDP_TIME = 3
    EDP_COUNT = 4
    EDP_SUM = 5
    EDP_SCALE = 6
    EDP_ZERO_COUNT = 7
    EDP_POSITIVE = 8
    EDP_NEGATIVE = 9
    EDP_FLAGS = 10
    EDP_EXEMPLARS = 11
    EDP_MIN = 12
    EDP_MAX = 13
    EDP_ZERO_THRESHOLD = 14
    BUCKETS_OFFSET = 1
    BUCKETS_COUNTS = 2
    EX_TIME = 2
    EX_AS_DOUBLE = 3
    EX_SPAN_ID = 4
    EX_TRACE_ID = 5
    EX_AS_INT = 6
    EX_FILTERED_ATTRIBUTES = 7
    KV_KEY = 1
    KV_VALUE = 2
    AV_STRING = 1
    AV_BOOL = 2
    AV_INT = 3
    AV_DOUBLE = 4
    AV_ARRAY = 5
    AV_KVLIST = 6
    AV_BYTES = 7
    LIST_VALUES = 1            # ArrayValue.values, KeyValueList.values

    KIND_GAUGE = 1
    KIND_SUM = 2
    KIND_HISTOGRAM = 3
    KIND_EXP_HISTOGRAM = 4

    MIN_BODY = 1 << 16         # bytes a body starts with (the last body's size when larger)

cdef dict _KIND_BY_NAME = {
    "Gauge": KIND_GAUGE,
    "Sum": KIND_SUM,
    "Histogram": KIND_HISTOGRAM,
    "ExponentialHistogram": KIND_EXP_HISTOGRAM,
}


class _Invalid(Exception):
    """An attribute value OTLP cannot carry; the attribute is dropped, not the point."""


cdef struct Deferred:
    Py_ssize_t offset       # position in the body where tag + length go
    Py_ssize_t inner        # bytes of deferred headers nested inside, at open time
    uint64_t length
    uint32_t tag


cdef extern from "Python.h":
    int _PyBytes_Resize(PyObject** bytes, Py_ssize_t newsize) except -1


cdef struct Writer:
    PyObject* body          # the bytes object being written (buf is its data)
    uint8_t* buf
    Py_ssize_t pos
    Py_ssize_t cap
    Deferred* hdr
    Py_ssize_t nhdr
    Py_ssize_t caphdr
    Py_ssize_t inserted     # total bytes of closed deferred headers


# ---------------------------------------------------------------- primitives

cdef int _grow(Writer* w, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = w.cap * 2
    while cap < w.pos + need:
        cap *= 2
    _PyBytes_Resize(&w.body, cap)
    w.buf = <uint8_t*>PyBytes_AS_STRING(<object>w.body)
    w.cap = cap
    return 0


cdef inline int _reserve(Writer* w, Py_ssize_t need) except -1:
    if w.pos + need > w.cap:
        _grow(w, need)
    return 0


cdef inline int _varint_size(uint64_t v) noexcept nogil:
    cdef int n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline void _put_varint(uint8_t* p, uint64_t v) noexcept nogil:
    while v >= 0x80:
        p[0] = <uint8_t>(v | 0x80)
        v >>= 7
        p += 1
    p[0] = <uint8_t>v


cdef inline int _varint(Writer* w, uint64_t v) except -1:
    _reserve(w, 10)
    cdef uint8_t* p = w.buf + w.pos
    while v >= 0x80:
        p[0] = <uint8_t>(v | 0x80)
        v >>= 7
        p += 1
    p[0] = <uint8_t>v
    w.pos = (p - w.buf) + 1
    return 0


cdef inline int _tag(Writer* w, uint32_t field, uint32_t wiretype) except -1:
    return _varint(w, (field << 3) | wiretype)


cdef inline void _put_le64(uint8_t* p, uint64_t v) noexcept nogil:
    # Byte by byte: the wire is little-endian whatever the host is.
    cdef int i
    for i in range(8):
        p[i] = <uint8_t>(v >> (8 * i))


cdef inline uint64_t _double_bits(double d) noexcept nogil:
    cdef uint64_t bits
    memcpy(&bits, &d, 8)
    return bits


cdef inline int _fixed64(Writer* w, uint32_t field, uint64_t v) except -1:
    _tag(w, field, I64)
    _reserve(w, 8)
    _put_le64(w.buf + w.pos, v)
    w.pos += 8
    return 0


cdef inline int _double(Writer* w, uint32_t field, double d) except -1:
    return _fixed64(w, field, _double_bits(d))


cdef inline int _raw(Writer* w, const char* data, Py_ssize_t n) except -1:
    _reserve(w, n)
    memcpy(w.buf + w.pos, data, n)
    w.pos += n
    return 0


cdef inline int _bytes(Writer* w, uint32_t field, const char* data, Py_ssize_t n) except -1:
    _tag(w, field, LEN)
    _varint(w, <uint64_t>n)
    return _raw(w, data, n)


cdef int _string(Writer* w, uint32_t field, object s, bint always) except -1:
    """UTF-8 string field; ``None`` and, unless ``always``, "" are left out (proto3 default)."""
    cdef Py_ssize_t n
    cdef const char* data
    if s is None:
        return 0
    if type(s) is not str:
        # a str subclass (a (str, Enum) member) is its text, not its str(); anything else str()
        s = str.__str__(s) if isinstance(s, str) else str(s)
    try:
        data = PyUnicode_AsUTF8AndSize(s, &n)
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8; send the text with replacement characters.
        b = (<str>s).encode("utf-8", "replace")
        return _bytes(w, field, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
    if n or always:
        _bytes(w, field, data, n)
    return 0


cdef inline Py_ssize_t _open(Writer* w, uint32_t field) except -1:
    """Start a small embedded message; returns where its one-byte length placeholder is."""
    _tag(w, field, LEN)
    _reserve(w, 1)
    w.pos += 1
    return w.pos - 1


cdef inline int _close(Writer* w, Py_ssize_t at) except -1:
    cdef Py_ssize_t n = w.pos - at - 1
    cdef int extra
    if n < 0x80:
        w.buf[at] = <uint8_t>n
        return 0
    extra = _varint_size(<uint64_t>n) - 1
    _reserve(w, extra)
    memmove(w.buf + at + 1 + extra, w.buf + at + 1, n)
    _put_varint(w.buf + at, <uint64_t>n)
    w.pos += extra
    return 0


cdef Py_ssize_t _open_deferred(Writer* w, uint32_t field) except -1:
    cdef Deferred* nh
    if w.nhdr == w.caphdr:
        nh = <Deferred*>PyMem_Realloc(w.hdr, sizeof(Deferred) * w.caphdr * 2)
        if nh == NULL:
            raise MemoryError()
        w.hdr = nh
        w.caphdr *= 2
    w.hdr[w.nhdr].offset = w.pos
    w.hdr[w.nhdr].inner = w.inserted
    w.hdr[w.nhdr].tag = (field << 3) | LEN
    w.hdr[w.nhdr].length = 0
    w.nhdr += 1
    return w.nhdr - 1


cdef inline void _close_deferred(Writer* w, Py_ssize_t i) noexcept:
    cdef Deferred* h = &w.hdr[i]
    h.length = <uint64_t>(w.pos - h.offset + (w.inserted - h.inner))
    w.inserted += _varint_size(h.tag) + _varint_size(h.length)


cdef inline void _rollback(Writer* w, Py_ssize_t pos, Py_ssize_t nhdr, Py_ssize_t inserted) noexcept:
    w.pos = pos
    w.nhdr = nhdr
    w.inserted = inserted


cdef inline void _writer_init(Writer* w) noexcept:
    """An empty writer, no body yet (what the caller's ``finally`` frees is NULL)."""
    w.body = NULL
    w.buf = NULL
    w.pos = 0
    w.cap = 0
    w.hdr = NULL
    w.nhdr = 0
    w.caphdr = 0
    w.inserted = 0


cdef int _writer_body(Writer* w, Py_ssize_t cap) except -1:
    """Give the writer its body: a bytes object of ``cap`` bytes, written in place."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, cap)
    Py_INCREF(out)
    w.body = <PyObject*>out
    w.buf = <uint8_t*>PyBytes_AS_STRING(out)
    w.cap = cap
    return 0


cdef bytes _finish(Writer* w):
    """The body with the deferred headers spliced in by offset, in place: the segments
    move right, last first, each header written in front of its segment (an outer
    header before an inner one at the same offset). Takes the writer's body."""
    cdef Py_ssize_t total = w.pos + w.inserted
    cdef Py_ssize_t src_end = w.pos, dst_end = total, i, n, k
    cdef Deferred* h
    cdef bytes out
    _reserve(w, w.inserted)
    for i in range(w.nhdr - 1, -1, -1):
        h = &w.hdr[i]
        n = src_end - h.offset
        memmove(w.buf + dst_end - n, w.buf + h.offset, n)
        dst_end -= n
        k = _varint_size(h.length)
        dst_end -= k
        _put_varint(w.buf + dst_end, h.length)
        k = _varint_size(h.tag)
        dst_end -= k
        _put_varint(w.buf + dst_end, h.tag)
        src_end = h.offset
    _PyBytes_Resize(&w.body, total)
    out = <bytes>w.body
    Py_XDECREF(w.body)      # `out` holds it now
    w.body = NULL
    return out


# ---------------------------------------------------------------- attributes

cdef int _any_value(Writer* w, object v) except -1:
    """The AnyValue body for ``v`` (the caller frames it). Raises _Invalid for a type OTLP lacks."""
    cdef Py_ssize_t at
    cdef int64_t i
    t = type(v)
    if t is str:
        _string(w, AV_STRING, v, True)
    elif t is bool:
        _tag(w, AV_BOOL, VARINT)
        _varint(w, 1 if v else 0)
    elif t is int:
        try:
            i = v
        except OverflowError:
            raise _Invalid("integer out of int64 range")
        _tag(w, AV_INT, VARINT)
        _varint(w, <uint64_t>i)
    elif t is float:
        _double(w, AV_DOUBLE, v)
    elif t is list or t is tuple:
        at = _open(w, AV_ARRAY)
        for item in v:
            _framed_any(w, LIST_VALUES, item)
        _close(w, at)
    elif v is None:
        pass  # an empty AnyValue, as the reference sends it
    elif isinstance(v, (bytes, bytearray)):
        b = bytes(v)
        _bytes(w, AV_BYTES, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
    elif isinstance(v, str):
        _string(w, AV_STRING, v, True)
    elif isinstance(v, bool):
        _tag(w, AV_BOOL, VARINT)
        _varint(w, 1 if v else 0)
    elif isinstance(v, int):
        _any_value(w, int(v))
    elif isinstance(v, float):
        _double(w, AV_DOUBLE, float(v))
    elif hasattr(v, "items"):
        at = _open(w, AV_KVLIST)
        for k, x in v.items():
            _key_value(w, LIST_VALUES, k, x)
        _close(w, at)
    elif hasattr(v, "__iter__"):
        _any_value(w, list(v))
    else:
        raise _Invalid("unsupported type %s" % t.__name__)
    return 0


cdef inline int _framed_any(Writer* w, uint32_t field, object v) except -1:
    cdef Py_ssize_t at = _open(w, field)
    _any_value(w, v)
    return _close(w, at)


cdef inline int _key_value(Writer* w, uint32_t field, object key, object value) except -1:
    cdef Py_ssize_t at = _open(w, field)
    _string(w, KV_KEY, key, False)
    _framed_any(w, KV_VALUE, value)
    return _close(w, at)


cdef int _attributes(Writer* w, uint32_t field, object attrs, list dropped) except -1:
    """One KeyValue per attribute; one OTLP cannot carry is dropped (and reported) alone."""
    cdef Py_ssize_t pos = 0, start
    cdef PyObject* k
    cdef PyObject* v
    if not attrs:
        return 0
    if type(attrs) is dict:
        while PyDict_Next(attrs, &pos, &k, &v):
            start = w.pos
            try:
                _key_value(w, field, <object>k, <object>v)
            except _Invalid as e:
                w.pos = start
                dropped.append((<object>k, str(e)))
    else:
        for key, value in attrs.items():
            start = w.pos
            try:
                _key_value(w, field, key, value)
            except _Invalid as e:
                w.pos = start
                dropped.append((key, str(e)))
    return 0


# ---------------------------------------------------------------- points

cdef int _number_value(Writer* w, uint32_t int_field, uint32_t double_field, object v) except -1:
    """int -> as_int, float -> as_double (as the reference); an int beyond int64 goes as a double."""
    cdef int64_t i
    if type(v) is float:
        return _double(w, double_field, v)
    if isinstance(v, int):
        try:
            i = v
        except OverflowError:
            return _double(w, double_field, float(v))
        return _fixed64(w, int_field, <uint64_t>i)
    return _double(w, double_field, float(v))


cdef int _flags(Writer* w, uint32_t field, object flags) except -1:
    if flags:
        _tag(w, field, VARINT)
        _varint(w, <uint32_t>flags)
    return 0


cdef int _optional_double(Writer* w, uint32_t field, object v) except -1:
    if v is not None:
        _double(w, field, v)
    return 0


cdef int _exemplars(Writer* w, uint32_t field, object exemplars, list dropped) except -1:
    cdef Py_ssize_t at
    cdef Exemplar e
    cdef bytes sid, tid
    if not exemplars:
        return 0
    for ex in exemplars:
        if type(ex) is Exemplar:
            e = <Exemplar>ex
            attrs, value, t, span_id, trace_id = (
                e.filtered_attributes, e.value, e.time_unix_nano, e.span_id, e.trace_id)
        else:
            attrs, value, t, span_id, trace_id = (
                ex.filtered_attributes, ex.value, ex.time_unix_nano, ex.span_id, ex.trace_id)
        at = _open(w, field)
        _fixed64_nonzero(w, EX_TIME, t)
        if span_id is not None and trace_id is not None:
            sid = _id_bytes(span_id, 8)
            tid = _id_bytes(trace_id, 16)
            _bytes(w, EX_SPAN_ID, sid, 8)
            _bytes(w, EX_TRACE_ID, tid, 16)
        _number_value(w, EX_AS_INT, EX_AS_DOUBLE, value)
        _attributes(w, EX_FILTERED_ATTRIBUTES, attrs, dropped)
        _close(w, at)
    return 0


cdef bytes _id_bytes(object ident, int size):
    if isinstance(ident, (bytes, bytearray)):
        if len(ident) != size:
            raise ValueError("a %d-byte id was expected" % size)
        return bytes(ident)
    return (<object>ident).to_bytes(size, "big")


cdef int _packed_fixed64(Writer* w, uint32_t field, object values, bint as_double) except -1:
    cdef Py_ssize_t n, i
    cdef uint8_t* p
    if not values:
        return 0
    seq = values if (type(values) is list or type(values) is tuple) else list(values)
    n = len(seq)
    _tag(w, field, LEN)
    _varint(w, <uint64_t>(8 * n))
    _reserve(w, 8 * n)
    p = w.buf + w.pos
    if as_double:
        for i in range(n):
            _put_le64(p + 8 * i, _double_bits(seq[i]))
    else:
        for i in range(n):
            _put_le64(p + 8 * i, <uint64_t>seq[i])
    w.pos += 8 * n
    return 0


cdef int _packed_varint(Writer* w, uint32_t field, object values) except -1:
    cdef Py_ssize_t n, i, size = 0
    seq = values if (type(values) is list or type(values) is tuple) else list(values)
    n = len(seq)
    for i in range(n):
        size += _varint_size(<uint64_t>seq[i])
    _tag(w, field, LEN)
    _varint(w, <uint64_t>size)
    for i in range(n):
        _varint(w, <uint64_t>seq[i])
    return 0


cdef inline int _sint32(Writer* w, uint32_t field, int32_t v) except -1:
    if v:
        _tag(w, field, VARINT)
        _varint(w, (<uint32_t>v << 1) ^ <uint32_t>(v >> 31))
    return 0


cdef inline int _fixed64_nonzero(Writer* w, uint32_t field, object v) except -1:
    # proto3 default: a zero or missing timestamp or count is left out.
    if v:
        _fixed64(w, field, <uint64_t>v)
    return 0


cdef int _number_point(Writer* w, object p, bint with_start, list dropped) except -1:
    cdef NumberDataPoint q
    cdef Py_ssize_t at
    if type(p) is NumberDataPoint:
        q = <NumberDataPoint>p
        attrs, start, t, value, exemplars = (
            q.attributes, q.start_time_unix_nano, q.time_unix_nano, q.value, q.exemplars)
        flags = 0
    else:
        attrs, start, t, value, exemplars = (
            p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.value, p.exemplars)
        flags = getattr(p, "flags", 0)
    at = _open(w, DATA_POINTS)
    if with_start:
        _fixed64_nonzero(w, NDP_START, start)
    _fixed64_nonzero(w, NDP_TIME, t)
    _number_value(w, NDP_AS_INT, NDP_AS_DOUBLE, value)
    _exemplars(w, NDP_EXEMPLARS, exemplars, dropped)
    _attributes(w, NDP_ATTRIBUTES, attrs, dropped)
    _flags(w, NDP_FLAGS, flags)
    return _close(w, at)


cdef int _histogram_point(Writer* w, object p, list dropped, list bounds_cache) except -1:
    cdef HistogramDataPoint q
    cdef Py_ssize_t at, mark
    if type(p) is HistogramDataPoint:
        q = <HistogramDataPoint>p
        attrs, start, t, count, total, bucket_counts, bounds, vmin, vmax, exemplars = (
            q.attributes, q.start_time_unix_nano, q.time_unix_nano, q.count, q.sum,
            q.bucket_counts, q.explicit_bounds, q.min, q.max, q.exemplars)
        flags = 0
    else:
        attrs, start, t, count, total, bucket_counts, bounds, vmin, vmax, exemplars = (
            p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.count, p.sum,
            p.bucket_counts, p.explicit_bounds, p.min, p.max, p.exemplars)
        flags = getattr(p, "flags", 0)
    at = _open(w, DATA_POINTS)
    _fixed64_nonzero(w, HDP_START, start)
    _fixed64_nonzero(w, HDP_TIME, t)
    _fixed64_nonzero(w, HDP_COUNT, count)
    _optional_double(w, HDP_SUM, total)
    _packed_fixed64(w, HDP_BUCKET_COUNTS, bucket_counts, False)
    # The points of one histogram usually share one bounds object: encode it once.
    if bounds is not bounds_cache[0]:
        mark = w.pos
        _packed_fixed64(w, HDP_EXPLICIT_BOUNDS, bounds, True)
        bounds_cache[0] = bounds
        bounds_cache[1] = PyBytes_FromStringAndSize(<char*>w.buf + mark, w.pos - mark)
    else:
        _raw(w, PyBytes_AS_STRING(bounds_cache[1]), PyBytes_GET_SIZE(bounds_cache[1]))
    _exemplars(w, HDP_EXEMPLARS, exemplars, dropped)
    _attributes(w, HDP_ATTRIBUTES, attrs, dropped)
    _flags(w, HDP_FLAGS, flags)
    _optional_double(w, HDP_MIN, vmin)
    _optional_double(w, HDP_MAX, vmax)
    return _close(w, at)


cdef int _buckets(Writer* w, uint32_t field, object b) except -1:
    # Left out when empty, as the reference does.
    cdef Py_ssize_t at
    if b is None:
        return 0
    counts = b.bucket_counts
    if not counts:
        return 0
    at = _open(w, field)
    _sint32(w, BUCKETS_OFFSET, b.offset)
    _packed_varint(w, BUCKETS_COUNTS, counts)
    return _close(w, at)


cdef int _exp_histogram_point(Writer* w, object p, list dropped) except -1:
    cdef ExponentialHistogramDataPoint q
    cdef Py_ssize_t at
    if type(p) is ExponentialHistogramDataPoint:
        q = <ExponentialHistogramDataPoint>p
        attrs, start, t, count, total, scale, zero_count, pos, neg, flags, vmin, vmax, exemplars = (
            q.attributes, q.start_time_unix_nano, q.time_unix_nano, q.count, q.sum, q.scale,
            q.zero_count, q.positive, q.negative, q.flags, q.min, q.max, q.exemplars)
        zero_threshold = None
    else:
        attrs, start, t, count, total, scale, zero_count, pos, neg, flags, vmin, vmax, exemplars = (
            p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.count, p.sum, p.scale,
            p.zero_count, p.positive, p.negative, p.flags, p.min, p.max, p.exemplars)
        zero_threshold = getattr(p, "zero_threshold", None)
    at = _open(w, DATA_POINTS)
    _attributes(w, EDP_ATTRIBUTES, attrs, dropped)
    _fixed64_nonzero(w, EDP_START, start)
    _fixed64_nonzero(w, EDP_TIME, t)
    _fixed64_nonzero(w, EDP_COUNT, count)
    _optional_double(w, EDP_SUM, total)
    _sint32(w, EDP_SCALE, scale or 0)
    _fixed64_nonzero(w, EDP_ZERO_COUNT, zero_count)
    _buckets(w, EDP_POSITIVE, pos)
    _buckets(w, EDP_NEGATIVE, neg)
    _flags(w, EDP_FLAGS, flags)
    _exemplars(w, EDP_EXEMPLARS, exemplars, dropped)
    _optional_double(w, EDP_MIN, vmin)
    _optional_double(w, EDP_MAX, vmax)
    if zero_threshold:
        _double(w, EDP_ZERO_THRESHOLD, zero_threshold)
    return _close(w, at)


# ---------------------------------------------------------------- containers

cdef int _kind(object data) except -1:
    """Which of the four metric kinds ``data`` is, by class name (ours and the reference's agree)."""
    cdef object k = _KIND_BY_NAME.get(type(data).__name__)
    if k is None:
        for cls in type(data).__mro__:
            k = _KIND_BY_NAME.get(cls.__name__)
            if k is not None:
                break
        else:
            raise TypeError("unsupported metric data type %s" % type(data).__name__)
    return k


cdef int _metric(Writer* w, object metric, list dropped) except -1:
    cdef Py_ssize_t m, d
    cdef int kind
    cdef uint32_t field
    data = metric.data
    kind = _kind(data)
    field = (M_GAUGE if kind == KIND_GAUGE else M_SUM if kind == KIND_SUM
             else M_HISTOGRAM if kind == KIND_HISTOGRAM else M_EXP_HISTOGRAM)
    m = _open_deferred(w, SM_METRICS)
    _string(w, M_NAME, metric.name, False)
    _string(w, M_DESCRIPTION, metric.description, False)
    _string(w, M_UNIT, metric.unit, False)
    d = _open_deferred(w, field)
    if kind != KIND_GAUGE:
        temporality = int(data.aggregation_temporality)
        if temporality:
            _tag(w, DATA_TEMPORALITY, VARINT)
            _varint(w, <uint64_t>temporality)
    if kind == KIND_SUM and data.is_monotonic:
        _tag(w, SUM_IS_MONOTONIC, VARINT)
        _varint(w, 1)
    points = () if _snapshot_points(w, data, kind, dropped) else data.data_points
    if kind == KIND_GAUGE or kind == KIND_SUM:
        for p in points:
            _number_point(w, p, kind == KIND_SUM, dropped)
    elif kind == KIND_HISTOGRAM:
        bounds_cache = [None, b""]
        for p in points:
            _histogram_point(w, p, dropped, bounds_cache)
    else:
        for p in points:
            _exp_histogram_point(w, p, dropped)
    _close_deferred(w, d)
    _close_deferred(w, m)
    return 0


cdef int _scope_metrics(Writer* w, object sm, list failed, list dropped) except -1:
    cdef Py_ssize_t s, at, pos, nhdr, inserted
    scope = sm.scope
    s = _open_deferred(w, RM_SCOPE_METRICS)
    if scope is not None:
        at = _open(w, SM_SCOPE)
        _string(w, SCOPE_NAME, scope.name, False)
        _string(w, SCOPE_VERSION, scope.version, False)
        _attributes(w, SCOPE_ATTRIBUTES, getattr(scope, "attributes", None), dropped)
        _close(w, at)
    for metric in sm.metrics:
        pos, nhdr, inserted = w.pos, w.nhdr, w.inserted
        try:
            _metric(w, metric, dropped)
        except MemoryError:
            raise
        except Exception as e:
            # One malformed metric must not cost the others their export.
            _rollback(w, pos, nhdr, inserted)
            failed.append((getattr(metric, "name", None), e))
    schema_url = getattr(sm, "schema_url", None) or (getattr(scope, "schema_url", None) if scope is not None else None)
    _string(w, SM_SCHEMA_URL, schema_url, False)
    _close_deferred(w, s)
    return 0


cdef int _resource_metrics(Writer* w, object rm, list failed, list dropped) except -1:
    cdef Py_ssize_t r, at
    resource = rm.resource
    r = _open_deferred(w, REQ_RESOURCE_METRICS)
    at = _open(w, RM_RESOURCE)
    if resource is not None:
        _attributes(w, RES_ATTRIBUTES, resource.attributes, dropped)
    _close(w, at)
    for sm in rm.scope_metrics:
        _scope_metrics(w, sm, failed, dropped)
    schema_url = (getattr(resource, "schema_url", None) if resource is not None else None) \
        or getattr(rm, "schema_url", None)
    _string(w, RM_SCHEMA_URL, schema_url, False)
    _close_deferred(w, r)
    return 0


# A body is written into the bytes object that is returned (no second copy of it in
# memory), sized from the start like the last one so that it is rarely regrown.
cdef Py_ssize_t _last_size = MIN_BODY


def encode_request(metrics_data, list failed=None, list dropped=None):
    # Bytes of an ExportMetricsServiceRequest for ``metrics_data``.
    #
    # A metric that cannot be encoded is left out and appended to ``failed`` as
    # ``(name, exception)``; an attribute whose value OTLP cannot carry is left
    # out and appended to ``dropped`` as ``(key, reason)``.
    global _last_size
    cdef Writer w
    cdef bytes out
    if failed is None:
        failed = []
    if dropped is None:
        dropped = []
    _writer_init(&w)
    try:
        w.caphdr = 64
        w.hdr = <Deferred*>PyMem_Malloc(sizeof(Deferred) * w.caphdr)
        if w.hdr == NULL:
            raise MemoryError()
        _writer_body(&w, max(_last_size + (_last_size >> 3), MIN_BODY))
        for rm in metrics_data.resource_metrics:
            _resource_metrics(&w, rm, failed, dropped)
        out = _finish(&w)
        _last_size = len(out)
        return out
    finally:
        PyMem_Free(w.hdr)
        Py_XDECREF(w.body)


# ---------------------------------------------------------------- reading

cdef uint64_t _read_varint(const uint8_t* p, Py_ssize_t n, Py_ssize_t* i) except? 0:
    cdef uint64_t v = 0
    cdef int shift = 0
    while True:
        if i[0] >= n or shift > 63:
            raise ValueError("truncated or overlong varint")
        v |= <uint64_t>(p[i[0]] & 0x7F) << shift
        shift += 7
        i[0] += 1
        if not (p[i[0] - 1] & 0x80):
            return v


def decode_fields(data):
    # The top-level fields of a protobuf message: a list of ``(number, wire_type, value)``.
    #
    # ``value`` is an int for varint and fixed-width fields (fixed ones unsigned, as
    # read) and bytes for length-delimited ones. Raises ValueError on malformed input.
    cdef bytes b = bytes(data)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b), i = 0
    cdef uint64_t key, v
    cdef int shift, k
    cdef list out = []
    while i < n:
        key = _read_varint(p, n, &i)
        wt = key & 7
        if wt == VARINT:
            out.append((key >> 3, wt, _read_varint(p, n, &i)))
        elif wt == LEN:
            v = _read_varint(p, n, &i)
            if v > <uint64_t>(n - i):
                raise ValueError("length-delimited field runs past the end")
            out.append((key >> 3, wt, PyBytes_FromStringAndSize(<const char*>p + i, <Py_ssize_t>v)))
            i += <Py_ssize_t>v
        elif wt == I64 or wt == 5:
            k = 8 if wt == I64 else 4
            if i + k > n:
                raise ValueError("truncated fixed-width field")
            v = 0
            for shift in range(k):
                v |= <uint64_t>p[i + shift] << (8 * shift)
            i += k
            out.append((key >> 3, wt, v))
        else:
            raise ValueError("unsupported wire type %d" % wt)
    return out


# ---------------------------------------------------------------- points from a snapshot

cdef Snapshot _records_of(object data, int kind):
    """The snapshot whose records an encoder may write ``data``'s points from (table.pxd's
    Snapshot, in ``data._data_points`` until someone reads ``data_points``), its stream's
    records those of ``kind``; None when the data holds points (or a snapshot whose points
    are built, with exemplars if any were taken): encode those."""
    raw = getattr(data, "_data_points", None)
    if type(raw) is Snapshot and _records_suit(<Snapshot>raw, kind):
        return <Snapshot>raw
    return None


cdef bint _records_suit(Snapshot snap, int kind) except -1:
    """Whether the byte writers may write ``kind``'s points from ``snap``'s records: they
    are readable (table.pxd), and its stream's are those of ``kind``."""
    if not records_readable(snap):
        return False
    if kind == KIND_GAUGE or kind == KIND_SUM:
        return isinstance(snap.stream, NumberStream)
    if kind == KIND_HISTOGRAM:
        return isinstance(snap.stream, HistogramStream)
    return False


cdef inline int64_t _record_start(Snapshot snap, const char* rec, int kind) noexcept:
    """The start time of a record's point as make_point builds it for ``kind`` (0: none,
    as a gauge's)."""
    if kind == KIND_GAUGE or (kind == KIND_SUM and (<NumberStream>snap.stream).gauge_points):
        return 0
    return (<const int64_t*>rec)[0]


cdef inline double _record_sum(const HistSnap* s) noexcept:
    """A histogram record's sum as its point carries it (an int64 sum, as a double)."""
    return s.dsum if s.isfloat else <double>s.isum


cdef bint _snapshot_points(Writer* w, object data, int kind, list dropped) except -1:
    """Write the points of ``data`` straight from its snapshot's records (``_records_of``):
    the same bytes as the points would give, with no Python object per point. False when
    there are points to encode instead."""
    cdef Snapshot snap = _records_of(data, kind)
    cdef Py_ssize_t i
    cdef char* rec
    if snap is None:
        return False
    for i in range(snap.count):
        rec = snap.buf + i * snap.rec
        if kind == KIND_HISTOGRAM:
            _snapshot_histogram(w, <HistogramStream>snap.stream, <HistSnap*>(rec + sizeof(int64_t)),
                                _record_start(snap, rec, kind), snap.now, <tuple>snap.attrs[i], dropped)
        else:
            _snapshot_number(w, <NumSnap*>(rec + sizeof(int64_t)), _record_start(snap, rec, kind),
                             snap.now, <tuple>snap.attrs[i], dropped)
    return True


cdef int _flat_attributes(Writer* w, uint32_t field, tuple flat, list dropped) except -1:
    """``_attributes`` for a stream's stored set (k0, v0, k1, v1, ...), in its order."""
    cdef Py_ssize_t j, start
    for j in range(0, len(flat), 2):
        if _plain_key_value(w, field, flat[j], flat[j + 1]):
            continue
        start = w.pos
        try:
            _key_value(w, field, flat[j], flat[j + 1])
        except _Invalid as e:
            w.pos = start
            dropped.append((flat[j], str(e)))
    return 0


cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define OM_LITTLE_ENDIAN 1
    #else
    #define OM_LITTLE_ENDIAN 0
    #endif
    """
    bint OM_LITTLE_ENDIAN      # uint64 and double arrays are already in the wire's byte order


cdef inline bint _plain_key_value(Writer* w, uint32_t field, object key, object value) except -1:
    """``_key_value`` for the common case, its sizes known before it is written: an ASCII
    str key and an ASCII str, bool, int64 or float value. False (nothing written) for
    anything else, which takes the general path."""
    cdef Py_ssize_t kn, vn = 0, body, kv, total
    cdef int64_t iv = 0
    cdef double dv = 0.0
    cdef int vt, scalar
    cdef uint8_t* p
    cdef const char* vdata = NULL
    if type(key) is not str or not PyUnicode_IS_COMPACT_ASCII(key):
        return False
    scalar = plain_scalar(value, &iv, &dv)
    if scalar == SCALAR_ASCII:
        vn = PyUnicode_GET_LENGTH(value)
        vdata = <const char*>PyUnicode_DATA(value)
        vt = AV_STRING
        body = 1 + _varint_size(<uint64_t>vn) + vn
    elif scalar == SCALAR_BOOL:
        vt = AV_BOOL
        body = 2
    elif scalar == SCALAR_INT:
        vt = AV_INT
        body = 1 + _varint_size(<uint64_t>iv)
    elif scalar == SCALAR_FLOAT:
        vt = AV_DOUBLE
        body = 9
    else:
        return False
    kn = PyUnicode_GET_LENGTH(key)
    kv = (1 + _varint_size(<uint64_t>kn) + kn if kn else 0) + 1 + _varint_size(<uint64_t>body) + body
    total = _varint_size((field << 3) | LEN) + _varint_size(<uint64_t>kv) + kv
    _reserve(w, total)
    p = w.buf + w.pos
    _put_varint(p, (field << 3) | LEN)
    p += _varint_size((field << 3) | LEN)
    _put_varint(p, <uint64_t>kv)
    p += _varint_size(<uint64_t>kv)
    if kn:                                   # proto3: an empty key is left out
        p[0] = (KV_KEY << 3) | LEN
        _put_varint(p + 1, <uint64_t>kn)
        p += 1 + _varint_size(<uint64_t>kn)
        memcpy(p, PyUnicode_DATA(key), kn)
        p += kn
    p[0] = (KV_VALUE << 3) | LEN
    _put_varint(p + 1, <uint64_t>body)
    p += 1 + _varint_size(<uint64_t>body)
    if vt == AV_STRING:
        p[0] = (AV_STRING << 3) | LEN
        _put_varint(p + 1, <uint64_t>vn)
        p += 1 + _varint_size(<uint64_t>vn)
        memcpy(p, vdata, vn)
        p += vn
    elif vt == AV_DOUBLE:
        p[0] = (AV_DOUBLE << 3) | I64
        _put_le64(p + 1, _double_bits(dv))
        p += 9
    else:
        p[0] = (vt << 3) | VARINT
        _put_varint(p + 1, <uint64_t>iv)
        p += 1 + _varint_size(<uint64_t>iv)
    w.pos = p - w.buf
    return True


cdef inline int _u64_nonzero(Writer* w, uint32_t field, uint64_t v) except -1:
    if v:
        _fixed64(w, field, v)
    return 0


cdef int _snapshot_number(Writer* w, NumSnap* s, int64_t start, int64_t now, tuple attrs,
                          list dropped) except -1:
    """``_number_point`` of the point make_point would build (``start`` 0: none)."""
    cdef Py_ssize_t at = _open(w, DATA_POINTS)
    _u64_nonzero(w, NDP_START, <uint64_t>start)
    _u64_nonzero(w, NDP_TIME, <uint64_t>now)
    if s.isfloat:
        _double(w, NDP_AS_DOUBLE, s.d)
    else:
        _fixed64(w, NDP_AS_INT, <uint64_t>s.i)
    _flat_attributes(w, NDP_ATTRIBUTES, attrs, dropped)
    return _close(w, at)


cdef int _snapshot_histogram(Writer* w, HistogramStream h, HistSnap* s, int64_t start, int64_t now,
                             tuple attrs, list dropped) except -1:
    """``_histogram_point`` of the point make_point would build."""
    cdef Py_ssize_t at = _open(w, DATA_POINTS), j, nb = h.nb
    _u64_nonzero(w, HDP_START, <uint64_t>start)
    _u64_nonzero(w, HDP_TIME, <uint64_t>now)
    _u64_nonzero(w, HDP_COUNT, s.count)
    _double(w, HDP_SUM, _record_sum(s))
    _tag(w, HDP_BUCKET_COUNTS, LEN)
    _varint(w, <uint64_t>(8 * (nb + 1)))
    _reserve(w, 8 * (nb + 1))
    if OM_LITTLE_ENDIAN and not s.narrow:
        memcpy(w.buf + w.pos, <char*>s + sizeof(HistSnap), 8 * (nb + 1))      # the wire's byte order
    else:
        for j in range(nb + 1):
            _put_le64(w.buf + w.pos + 8 * j, hist_bucket(s, j))
    w.pos += 8 * (nb + 1)
    if nb:
        _tag(w, HDP_EXPLICIT_BOUNDS, LEN)
        _varint(w, <uint64_t>(8 * nb))
        _reserve(w, 8 * nb)
        if OM_LITTLE_ENDIAN:
            memcpy(w.buf + w.pos, h.bounds, 8 * nb)
        else:
            for j in range(nb):
                _put_le64(w.buf + w.pos + 8 * j, _double_bits(h.bounds[j]))
        w.pos += 8 * nb
    _flat_attributes(w, HDP_ATTRIBUTES, attrs, dropped)
    _double(w, HDP_MIN, hist_extreme(s, True))
    _double(w, HDP_MAX, hist_extreme(s, False))
    return _close(w, at)
