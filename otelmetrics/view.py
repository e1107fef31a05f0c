"""Views and aggregations: which instruments a view selects and which streams
they produce, and how.

Same names and arguments as ``opentelemetry.sdk.metrics.view``; besides them
a View takes ``excluded_attribute_keys`` (a deny-list applied after the
allow-list) and ``aggregation_cardinality_limit``.

Instrument kinds and names are selected here for every layer: the
specification's instrument-name rule, and which of our instrument classes a
class given by a user designates. Users key views, and readers' preferences, by
class: ours, the ``opentelemetry.metrics`` API's, or, by habit,
opentelemetry-sdk's. The reference SDK is never imported for this: its classes
are recognised by module and name.

What configures a stream is checked here too, when it is configured, against the
compiled core's bounds (cardinality limits, which readers check with the same
function; exponential histogram sizes; histogram boundaries), so that a mistake
raises from the constructor that was given it, never later from ``create_*()``.
"""
from __future__ import annotations

import logging
import re
import sys
from typing import Callable, Dict, Iterable, Optional, Sequence

from otelmetrics._native import (
    EXPO_MAX_SIZE_RANGE,
    EXPO_SCALE_RANGE,
    ExpoHistogramStream,
    HistogramStream,
    LastValueStream,
    SumStream,
)

_logger = logging.getLogger("otelmetrics")

__all__ = [
    "Aggregation", "DefaultAggregation", "DropAggregation", "ExplicitBucketHistogramAggregation",
    "ExponentialBucketHistogramAggregation", "LastValueAggregation", "SumAggregation", "View",
]

_INF = float("inf")

# The specification's instrument name syntax: a letter, then up to 254 of
# letters, digits, ``_``, ``.``, ``/`` and ``-`` (the regular expression
# ``[A-Za-z][A-Za-z0-9_./-]{0,254}``, checked without compiling one at import).
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NAME_CHARS = _LETTERS + "0123456789_./-"


def valid_instrument_name(name) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= 255 and name[0] in _LETTERS
            and not name.strip(_NAME_CHARS))


def reference_name(cls) -> Optional[str]:
    """The class name when ``cls`` is one of opentelemetry-sdk's classes, else None."""
    if isinstance(cls, type) and (cls.__module__ or "").startswith("opentelemetry.sdk"):
        return cls.__name__
    return None


def subclasses_reference(obj, name: str) -> bool:
    """Whether ``obj`` is an instance of opentelemetry-sdk's class ``name`` (a
    vendor's ``MetricExporter`` subclass, say), told from its type's MRO alone."""
    return any(reference_name(c) == name for c in type(obj).__mro__)


def designates(key: type, cls: type) -> bool:
    """Whether a user's class ``key`` selects instruments of our class ``cls``:
    ``cls`` or one of its bases (ours or the API's), or the reference SDK's class
    of the same name, public or private (its ``_Gauge``, and the ``_Counter`` &c.
    its readers key their choices by)."""
    return issubclass(cls, key) or (reference_name(key) or "").lstrip("_") == cls.__name__


def by_kind(mapping: Optional[dict], what: str, kinds: Iterable[type]) -> Dict[type, object]:
    """Resolve a {class: value} mapping keyed by a user's classes into {kind: value}
    for the given kinds; a later key wins over an earlier one for the same kind."""
    kinds = tuple(kinds)
    out: Dict[type, object] = {}
    for key, value in (mapping or {}).items():
        if not isinstance(key, type):
            raise TypeError("%s: keys must be instrument classes, got %r" % (what, key))
        hits = [k for k in kinds if designates(key, k)]
        if not hits:
            raise TypeError("%s: %r is not an instrument class" % (what, key))
        for k in hits:
            out[k] = value
    return out


def safe_repr(obj) -> str:
    """repr(obj), or its type's name when that raises (a user's object may)."""
    try:
        return repr(obj)
    except Exception:
        return "<%s object>" % type(obj).__name__


def check_int(value, low: int, high: int, what: str) -> int:
    """``value`` if it is an int (not a bool) in [low, high]; else ValueError naming the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError("%s must be an int in [%d, %d], got %r" % (what, low, high, value))
    return value


# A stream's cardinality limit is a C Py_ssize_t in the compiled core.
MAX_CARDINALITY_LIMIT = sys.maxsize


def check_cardinality_limit(value, what: str) -> int:
    """A view's or a reader's cardinality limit, checked where it is configured."""
    return check_int(value, 1, MAX_CARDINALITY_LIMIT, what)


def _attribute_keys(keys, what: str) -> Optional[frozenset]:
    """A view's collection of attribute keys as a frozenset; a lone str is refused
    (it would be taken as the set of its characters)."""
    if keys is None:
        return None
    if isinstance(keys, (str, bytes)):
        raise TypeError("View: %s must be a list or set of attribute keys, got the %s %r: "
                        "write [%r]" % (what, type(keys).__name__, keys, keys))
    try:
        return frozenset(keys)
    except TypeError:
        raise TypeError("View: %s must be a list or set of attribute keys, got %r"
                        % (what, keys)) from None


# The specification's default explicit bucket boundaries.
DEFAULT_BOUNDARIES = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0,
                      1000.0, 2500.0, 5000.0, 7500.0, 10000.0)


class Aggregation:
    """Base of the aggregations a View can select."""

    def _build(self, kind, *, delta: bool, limit: int, allowed, excluded, advisory) -> Optional[object]:
        """A compiled stream for one instrument, or None to drop it."""
        raise NotImplementedError

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        args = ", ".join("%s=%r" % (k.lstrip("_"), v) for k, v in self.__dict__.items())
        return "%s(%s)" % (type(self).__name__, args)


class DropAggregation(Aggregation):
    """The instrument's measurements are ignored: no stream, no cost."""

    def _build(self, kind, **_):
        return None


class SumAggregation(Aggregation):
    """Arithmetic sum; monotonic for counters and histograms."""

    def _build(self, kind, *, delta, limit, allowed, excluded, advisory):
        return SumStream(limit, delta, kind._async, allowed, excluded)


class LastValueAggregation(Aggregation):
    """The last measurement of each series."""

    def _build(self, kind, *, delta, limit, allowed, excluded, advisory):
        return LastValueStream(limit, delta, kind._async, allowed, excluded)


def check_boundaries(boundaries: Iterable[float], what: str) -> tuple:
    try:
        out = tuple(float(b) for b in boundaries)
    except OverflowError:
        raise ValueError("%s must be numbers within the range of a double (about 1.8e308)"
                         % (what,)) from None
    except (TypeError, ValueError):
        raise ValueError("%s must be a sequence of numbers, got %s"
                         % (what, safe_repr(boundaries))) from None
    if any(not -_INF < b < _INF for b in out):     # NaN or infinite
        raise ValueError("%s must be finite numbers, got %r" % (what, out))
    if any(b2 <= b1 for b1, b2 in zip(out, out[1:])):
        raise ValueError("%s must be strictly increasing, got %r" % (what, out))
    return out


class ExplicitBucketHistogramAggregation(Aggregation):
    """Histogram over fixed boundaries: bucket i counts (b[i-1], b[i]]."""

    def __init__(self, boundaries: Optional[Sequence[float]] = None, record_min_max: bool = True) -> None:
        self._boundaries = None if boundaries is None else check_boundaries(
            boundaries, "ExplicitBucketHistogramAggregation boundaries")
        self._record_min_max = bool(record_min_max)

    @property
    def boundaries(self) -> tuple:
        return DEFAULT_BOUNDARIES if self._boundaries is None else self._boundaries

    def _build(self, kind, *, delta, limit, allowed, excluded, advisory):
        bounds = self._boundaries
        if bounds is None:
            bounds = advisory if advisory is not None else DEFAULT_BOUNDARIES
        return HistogramStream(limit, delta, kind._async, allowed, excluded,
                                        boundaries=bounds, record_min_max=self._record_min_max)


class ExponentialBucketHistogramAggregation(Aggregation):
    """Base-2 exponential histogram (max_size buckets per sign, scale <= max_scale)."""

    def __init__(self, max_size: int = 160, max_scale: int = 20, record_min_max: bool = True) -> None:
        self._max_size = check_int(max_size, *EXPO_MAX_SIZE_RANGE,
                                   "ExponentialBucketHistogramAggregation max_size")
        self._max_scale = check_int(max_scale, *EXPO_SCALE_RANGE,
                                    "ExponentialBucketHistogramAggregation max_scale")
        self._record_min_max = bool(record_min_max)

    def _build(self, kind, *, delta, limit, allowed, excluded, advisory):
        return ExpoHistogramStream(limit, delta, kind._async, allowed, excluded,
                                                max_size=self._max_size, max_scale=self._max_scale,
                                                record_min_max=self._record_min_max)


class DefaultAggregation(Aggregation):
    """Per instrument kind: sum for counters, last value for gauges, explicit-
    bucket histogram (with the advisory boundaries) for histograms."""

    def _resolve(self, kind) -> Aggregation:
        return kind._default_aggregation()

    def _build(self, kind, **kw):
        return self._resolve(kind)._build(kind, **kw)


class View:
    """Selects instruments (all given criteria must match) and configures the
    resulting stream. Without a ``name`` a view may match many instruments;
    with one it must match at most one (enforced when instruments register).

    Criteria: ``instrument_type`` (a class, ours or the API's), ``instrument_name``
    (exact, case-insensitive, with ``*`` and ``?`` wildcards), ``instrument_unit``,
    ``meter_name``, ``meter_version``, ``meter_schema_url``.
    """

    def __init__(
        self,
        instrument_type: Optional[type] = None,
        instrument_name: Optional[str] = None,
        meter_name: Optional[str] = None,
        meter_version: Optional[str] = None,
        meter_schema_url: Optional[str] = None,
        name: Optional[str] = None,
        description: Optional[str] = None,
        attribute_keys: Optional[Iterable[str]] = None,
        aggregation: Optional[Aggregation] = None,
        exemplar_reservoir_factory: Optional[Callable] = None,
        instrument_unit: Optional[str] = None,
        excluded_attribute_keys: Optional[Iterable[str]] = None,
        aggregation_cardinality_limit: Optional[int] = None,
    ) -> None:
        criteria = (instrument_type, instrument_name, meter_name, meter_version, meter_schema_url,
                    instrument_unit)
        if all(c is None for c in criteria):
            raise ValueError("View: give at least one selection criterion (instrument_type, "
                             "instrument_name, instrument_unit, meter_name, meter_version or "
                             "meter_schema_url)")
        if name is not None and not valid_instrument_name(name):
            raise ValueError("View: name %r is not a valid instrument name (a letter, then up to "
                             "254 of letters, digits, '_', '.', '/', '-')" % (name,))
        if name is not None and instrument_name is not None and ("*" in instrument_name
                                                                 or "?" in instrument_name):
            raise ValueError("View: a view with name=%r must select one instrument; "
                             "instrument_name=%r is a wildcard" % (name, instrument_name))
        if aggregation is not None and not isinstance(aggregation, Aggregation):
            raise TypeError("View: aggregation must be an otelmetrics.view aggregation, got %r"
                            % (aggregation,))
        if aggregation_cardinality_limit is not None:
            check_cardinality_limit(aggregation_cardinality_limit, "View: aggregation_cardinality_limit")
        if instrument_type is not None and not isinstance(instrument_type, type):
            raise TypeError("View: instrument_type must be an instrument class, got %r" % (instrument_type,))
        self._instrument_type = instrument_type
        self._instrument_name = instrument_name
        self._name_re = None
        if instrument_name is not None:
            from fnmatch import translate
            self._name_re = re.compile(translate(instrument_name.lower()))
        self._instrument_unit = instrument_unit
        self._meter_name = meter_name
        self._meter_version = meter_version
        self._meter_schema_url = meter_schema_url
        self._name = name
        self._description = description
        self._attribute_keys = _attribute_keys(attribute_keys, "attribute_keys")
        self._excluded_attribute_keys = _attribute_keys(excluded_attribute_keys,
                                                        "excluded_attribute_keys") or None
        self._aggregation = aggregation or DefaultAggregation()
        self._exemplar_reservoir_factory = exemplar_reservoir_factory
        self._cardinality_limit = aggregation_cardinality_limit

    def _match(self, instrument) -> bool:
        if self._instrument_type is not None and not designates(self._instrument_type, type(instrument)):
            return False
        if self._name_re is not None and not self._name_re.match(instrument.name.lower()):
            return False
        if self._instrument_unit is not None and instrument.unit != self._instrument_unit:
            return False
        scope = instrument._scope
        if self._meter_name is not None and scope.name != self._meter_name:
            return False
        if self._meter_version is not None and scope.version != self._meter_version:
            return False
        if self._meter_schema_url is not None and scope.schema_url != self._meter_schema_url:
            return False
        return True

