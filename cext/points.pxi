# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""Exported data points: the objects a collection hands to readers and exporters.

Extension types so that a collection of thousands of series builds its points
from C without going through Python-level constructors. Field names and
constructor signatures are those of opentelemetry-sdk's point classes.

Points hold plain data (numbers, str, tuples, lists of exemplars), never
references that could close a cycle, so they stay out of the cyclic garbage
collector: a collection of thousands of points triggers no GC passes.

fields_equal, fields_repr and to_json (json_text.pxi) are also the methods of the Python record
classes in otelmetrics/_model.py, which call them (under binding=False they are
builtin functions, which do not bind as methods).
"""

cimport cython

import dataclasses

cdef tuple _NUMBER_FIELDS = ("attributes", "start_time_unix_nano", "time_unix_nano", "value", "exemplars")
cdef tuple _HISTOGRAM_FIELDS = ("attributes", "start_time_unix_nano", "time_unix_nano", "count", "sum",
                               "bucket_counts", "explicit_bounds", "min", "max", "exemplars")
cdef tuple _EXPO_FIELDS = ("attributes", "start_time_unix_nano", "time_unix_nano", "count", "sum", "scale",
                          "zero_count", "positive", "negative", "flags", "min", "max", "exemplars")
cdef tuple _BUCKETS_FIELDS = ("offset", "bucket_counts")
cdef tuple _EXEMPLAR_FIELDS = ("filtered_attributes", "value", "time_unix_nano", "span_id", "trace_id")


# -- records by fields: the one implementation for the compiled points and the
# -- Python containers of otelmetrics._model (a type lists its fields in ``_fields``)

def dataclass_fields(tuple names):
    # ``__dataclass_fields__`` for a record type, so that ``dataclasses.fields``,
    # ``asdict``, ``astuple``, ``replace`` and ``is_dataclass`` treat it as the
    # reference's dataclasses (its constructor takes every field by name). A
    # descriptor: they read it through the type or an instance, and the Field objects
    # are made then, once (making the 93 of them at import was 4% of what
    # ``import otelmetrics`` costs).
    return _DataclassFields(names)


@cython.final
cdef class _DataclassFields:
    cdef tuple names
    cdef dict fields

    def __cinit__(self, tuple names):
        self.names = names

    def __get__(self, obj, cls):
        cdef dict out
        with cython.critical_section(self):
            if self.fields is None:
                out = {}
                for name in self.names:
                    f = dataclasses.field()
                    f.name = name
                    f.type = object
                    f._field_type = dataclasses._FIELD
                    out[name] = f
                self.fields = out
            return self.fields


def fields_equal(a, b):
    # Equality by fields for records of one type; NotImplemented across types.
    if type(a) is not type(b):
        return NotImplemented
    cdef str f
    for f in type(a)._fields:
        if getattr(a, f) != getattr(b, f):
            return False
    return True


def fields_repr(obj):
    return "%s(%s)" % (type(obj).__name__,
                       ", ".join(["%s=%r" % (f, getattr(obj, f)) for f in type(obj)._fields]))


def to_plain(obj):
    # JSON-ready builtins, recursively: records by their ``to_dict()``, bytes as hex.
    if hasattr(obj, "to_dict"):
        return to_plain(obj.to_dict())
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.hex()
    return obj


cdef class _Point:
    # Shared behaviour: equality and repr by fields, conversion to plain dicts and
    # JSON, and the dataclass protocol (fields, asdict, replace), as the reference's
    # frozen dataclasses.

    def __eq__(self, other):
        return fields_equal(self, other)

    def __ne__(self, other):
        r = fields_equal(self, other)
        return r if r is NotImplemented else not r

    __hash__ = None

    def __repr__(self):
        return fields_repr(self)

    def to_dict(self):
        # Plain dict (JSON-ready) in the reference SDK's field order.
        return to_plain({f: getattr(self, f) for f in type(self)._fields})

    def to_json(self, indent=4):
        return to_json(self, indent)

    def __reduce__(self):
        # Pickle and copy by the constructor, which takes every field in order (the
        # module's auto_pickle is off: Cython's generated pickling for each class was
        # 44 kB of the module, and nothing else in it is meant to be pickled).
        return type(self), tuple([getattr(self, f) for f in type(self)._fields])


@cython.no_gc
cdef class _SeriesPoint(_Point):
    # A point of one series: its attribute set as a dict, built on first read.

    @property
    def attributes(self):
        cdef Py_ssize_t j
        cdef tuple flat
        with cython.critical_section(self):      # threads reading one point build it once
            if self._attributes is None and self._flat_attributes is not None:
                flat = self._flat_attributes
                d = {}
                for j in range(0, len(flat), 2):
                    d[flat[j]] = flat[j + 1]
                self._attributes = d
            attributes = self._attributes
        return attributes


@cython.no_gc
@cython.embedsignature(True)
cdef class Exemplar(_Point):
    """A sampled measurement: value, time, dropped attributes and span context."""

    def __init__(self, filtered_attributes, value, time_unix_nano, span_id=None, trace_id=None):
        self.filtered_attributes = filtered_attributes
        self.value = value
        self.time_unix_nano = time_unix_nano
        self.span_id = span_id
        self.trace_id = trace_id

    _fields = _EXEMPLAR_FIELDS
    __dataclass_fields__ = dataclass_fields(_EXEMPLAR_FIELDS)


@cython.no_gc
@cython.embedsignature(True)
cdef class NumberDataPoint(_SeriesPoint):
    """One series of a Sum or Gauge."""

    def __init__(self, attributes, start_time_unix_nano, time_unix_nano, value, exemplars=()):
        self._attributes = attributes
        self.start_time_unix_nano = start_time_unix_nano
        self.time_unix_nano = time_unix_nano
        self.value = value
        self.exemplars = list(exemplars)

    _fields = _NUMBER_FIELDS
    __dataclass_fields__ = dataclass_fields(_NUMBER_FIELDS)


@cython.no_gc
@cython.embedsignature(True)
cdef class HistogramDataPoint(_SeriesPoint):
    """One series of an explicit-bucket Histogram."""

    def __init__(self, attributes, start_time_unix_nano, time_unix_nano, count, sum,
                 bucket_counts, explicit_bounds, min, max, exemplars=()):
        self._attributes = attributes
        self.start_time_unix_nano = start_time_unix_nano
        self.time_unix_nano = time_unix_nano
        self.count = count
        self.sum = sum
        self.bucket_counts = bucket_counts
        self.explicit_bounds = explicit_bounds
        self.min = min
        self.max = max
        self.exemplars = list(exemplars)

    _fields = _HISTOGRAM_FIELDS
    __dataclass_fields__ = dataclass_fields(_HISTOGRAM_FIELDS)


@cython.no_gc
@cython.embedsignature(True)
cdef class Buckets(_Point):
    """The positive or negative bucket range of an exponential histogram point."""

    def __init__(self, offset, bucket_counts):
        self.offset = offset
        self.bucket_counts = bucket_counts

    _fields = _BUCKETS_FIELDS
    __dataclass_fields__ = dataclass_fields(_BUCKETS_FIELDS)


@cython.no_gc
@cython.embedsignature(True)
cdef class ExponentialHistogramDataPoint(_SeriesPoint):
    """One series of a base-2 ExponentialHistogram."""

    def __init__(self, attributes, start_time_unix_nano, time_unix_nano, count, sum, scale,
                 zero_count, positive, negative, flags, min, max, exemplars=()):
        self._attributes = attributes
        self.start_time_unix_nano = start_time_unix_nano
        self.time_unix_nano = time_unix_nano
        self.count = count
        self.sum = sum
        self.scale = scale
        self.zero_count = zero_count
        self.positive = positive
        self.negative = negative
        self.flags = flags
        self.min = min
        self.max = max
        self.exemplars = list(exemplars)

    _fields = _EXPO_FIELDS
    __dataclass_fields__ = dataclass_fields(_EXPO_FIELDS)
