# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""Attribute sanitising: the slow path for attribute sets the hot path cannot take as-is.

Produces a dict whose keys are exact non-empty ``str`` and whose values are
exact ``str``/``bool``/``int``/``float`` or tuples of one of those types (None
allowed inside sequences, as OpenTelemetry allows nulls in arrays). The second
return value counts the pairs that could not be kept, so the Python layer can
warn and count; nothing here raises, whatever the input does.

Policy per value:
- str / bool / float kept; int kept when it fits int64, else turned into its
  decimal string (OTLP ints are int64);
- subclasses of those (enums...) converted to the exact type;
- bytes decoded as UTF-8 (undecodable bytes: dropped);
- list / tuple of one primitive type (None allowed): kept as a tuple;
- None, dicts, mixed sequences, any other object: dropped.
Keys that are not str (or are empty) drop their pair.
"""

cdef object _INT64_MIN = -(1 << 63)
cdef object _INT64_MAX = (1 << 63) - 1


cdef object _clean_scalar(object v):
    """The exact-typed value, or None when ``v`` is not a primitive."""
    cdef type t = type(v)
    if t is str or t is bool or t is float:
        return v
    if t is int:
        return v if _INT64_MIN <= v <= _INT64_MAX else str(v)
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, int):
        iv = int.__int__(v)
        return iv if _INT64_MIN <= iv <= _INT64_MAX else str(iv)
    if isinstance(v, float):
        return float.__float__(v)
    if isinstance(v, bytes):
        try:
            return (<bytes>v).decode("utf-8") if t is bytes else bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


cdef object _clean_value(object v):
    if isinstance(v, (list, tuple)):
        out = []
        kind = None
        for item in v:
            if item is None:
                out.append(None)
                continue
            c = _clean_scalar(item)
            if c is None:
                return None
            ck = type(c)
            if kind is None:
                kind = ck
            elif ck is not kind:
                return None
            out.append(c)
        return tuple(out)
    return _clean_scalar(v)


def sanitize(object attributes):
    # Return ``(clean_dict, dropped_pairs)`` for any input; never raises.
    cdef dict clean = {}
    cdef Py_ssize_t dropped = 0
    if attributes is None:
        return clean, 0
    try:
        items = list(attributes.items())
    except Exception:
        # Not a mapping: the measurement keeps no attributes.
        return clean, 1
    for pair in items:
        try:
            k, v = pair
            if type(k) is not str:
                if not isinstance(k, str):
                    dropped += 1
                    continue
                k = str.__str__(k)
            if not k:
                dropped += 1
                continue
            c = _clean_value(v)
            if c is None:
                dropped += 1
                continue
            clean[k] = c
        except Exception:
            dropped += 1
    return clean, dropped
