"""Instrument kinds and names: the specification's instrument-name rule, and
which of our instrument classes a class given by a user designates.

Users key preferences and views by class: ours, the ``opentelemetry.metrics``
API's, or, by habit, opentelemetry-sdk's. The reference SDK is never imported
for this: its classes are recognised by module and name. This module imports
nothing of otelmetrics, so every layer may use it.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional

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
