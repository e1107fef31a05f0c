"""Meter: creates instruments and registers them with the provider's pipeline."""
from __future__ import annotations

import logging
import threading
from typing import Callable, Dict, Optional, Sequence, Tuple

from opentelemetry import metrics as api

from otelmetrics import _instruments as inst
from otelmetrics._model import InstrumentationScope
from otelmetrics.view import check_boundaries, safe_repr, valid_instrument_name

_logger = logging.getLogger("otelmetrics")


def as_text(value, what: str, default: str = "") -> str:
    """``value`` as a str (``None``: ``default``); an object whose ``__str__`` raises
    is logged and replaced by ``default``: creating an instrument or a meter never raises."""
    if isinstance(value, str):
        return value
    if value is None:
        return default
    try:
        return str(value)
    except Exception as e:
        _logger.warning("%s %s cannot be made a str (%s); using %r", what, safe_repr(value),
                        safe_repr(e), default)
        return default


class Meter(api.Meter):
    """Creates instruments for one instrumentation scope."""

    def __init__(self, scope: InstrumentationScope, pipeline) -> None:
        super().__init__(scope.name, scope.version, scope.schema_url)
        self._scope = scope
        self._pipeline = pipeline
        self._lock = threading.Lock()
        # Identical registrations return the first instrument (one stream); an observable
        # one gets the callbacks of each registration.
        self._by_identity: Dict[Tuple, object] = {}
        self._enabled = True     # set by the provider's meter_configurator
        self._first_casing: Dict[str, str] = {}   # lower-case name -> first-seen spelling

    def _create(self, cls, name, unit, description, advisory=None, callbacks=None):
        name = as_text(name, "instrument name", "None" if name is None else "")
        unit = as_text(unit, "instrument %r: unit" % name)
        description = as_text(description, "instrument %r: description" % name)
        if not valid_instrument_name(name):
            _logger.warning(
                "instrument name %r is invalid: it must start with a letter and contain at most 255 "
                "of letters, digits, '_', '.', '/' and '-'; the instrument works, but backends may "
                "reject it: rename it", name)
        if not (len(unit) <= 63 and unit.isascii()):
            # The spec asks SDKs not to validate units: kept, with a hint.
            _logger.warning("instrument %r: unit %r is not ASCII of at most 63 characters, as the API "
                            "recommends; some backends may reject it", name, unit)
        lower = name.lower()
        with self._lock:
            first = self._first_casing.setdefault(lower, name)
            if first != name:
                _logger.warning("instrument %r: an instrument named %r exists in meter %r; names are "
                                "case-insensitive, so it is exported as %r", name, first, self._scope.name,
                                first)
                name = first
            key = (lower, cls, unit, description)
            existing = self._by_identity.get(key)
            if existing is not None:
                if existing._advisory != advisory:
                    _logger.warning("histogram %r: created again with other advisory boundaries %r; the "
                                    "first ones (%r) stay in use", name, advisory, existing._advisory)
                if cls._async:
                    existing._add_callbacks(callbacks)   # one stream, every registration's callbacks
                return existing
            instrument = cls()
            instrument._init_identity(name, unit, description, self._scope, advisory)
            instrument._meter_enabled = self._enabled
            if cls._async:
                instrument._add_callbacks(callbacks)
            self._pipeline.register(instrument)
            self._by_identity[key] = instrument
            return instrument

    def create_counter(self, name: str, unit: str = "", description: str = "") -> api.Counter:
        return self._create(inst.Counter, name, unit, description)

    def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> api.UpDownCounter:
        return self._create(inst.UpDownCounter, name, unit, description)

    def create_histogram(self, name: str, unit: str = "", description: str = "", *,
                         explicit_bucket_boundaries_advisory: Optional[Sequence[float]] = None) -> api.Histogram:
        advisory = None
        if explicit_bucket_boundaries_advisory is not None:
            try:
                advisory = check_boundaries(explicit_bucket_boundaries_advisory,
                                             "explicit_bucket_boundaries_advisory")
            except ValueError as e:
                _logger.warning("histogram %s: %s; using the default boundaries", safe_repr(name), e)
        return self._create(inst.Histogram, name, unit, description, advisory=advisory)

    def create_gauge(self, name: str, unit: str = "", description: str = ""):
        return self._create(inst.Gauge, name, unit, description)

    def create_observable_counter(self, name: str, callbacks: Optional[Sequence[Callable]] = None,
                                  unit: str = "", description: str = "") -> api.ObservableCounter:
        return self._create(inst.ObservableCounter, name, unit, description, callbacks=callbacks or [])

    def create_observable_up_down_counter(self, name: str, callbacks: Optional[Sequence[Callable]] = None,
                                          unit: str = "", description: str = "") -> api.ObservableUpDownCounter:
        return self._create(inst.ObservableUpDownCounter, name, unit, description, callbacks=callbacks or [])

    def create_observable_gauge(self, name: str, callbacks: Optional[Sequence[Callable]] = None,
                                unit: str = "", description: str = "") -> api.ObservableGauge:
        return self._create(inst.ObservableGauge, name, unit, description, callbacks=callbacks or [])
