# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""``to_json``: a record of the data model as the reference's ``to_json(indent=...)``
writes it, the text the console exporter prints.

Invariants:
- The text is exactly ``json.dumps(to_plain(obj), indent=indent)``'s: records by
  their ``to_dict()``, bytes as hex, tuples as lists; keys and strings escaped as
  ``json`` does with ``ensure_ascii`` (every character outside space..tilde as
  \\uXXXX, surrogate pairs above U+FFFF), floats as ``float.__repr__`` (NaN and the
  infinities bare, as ``json`` allows them), ints as ``int.__repr__``, the item and
  key separators and line breaks of ``json`` with and without an indent, and
  ``json``'s TypeError for a value or key it cannot write. Tested byte for byte.
- Written in one pass into one growing buffer: no plain copy of the record, no list
  of fragments, no ``json`` import. A record's ``to_dict()`` is made while it is
  written and let go after (the console's document used to be held three times
  over: the plain copy, the encoder's fragments, the text). A metric's points that
  are still its collection's records are built one at a time as they are written
  and not kept. ``to_json(..., write=)`` hands the same text to a stream's ``write``
  in pieces of about ``JSON_PIECE`` bytes (each cut after an item of an array or
  object), so the buffer stays that size however long the document.
- Nesting deeper than the interpreter's recursion limit raises RecursionError, as
  ``to_plain`` did.
"""
from cpython.unicode cimport PyUnicode_DecodeUTF8


cdef extern from "Python.h":
    int Py_EnterRecursiveCall(const char* where) noexcept   # nonzero: RecursionError set
    void Py_LeaveRecursiveCall() noexcept


cdef struct Layout:                 # json.dumps's separators and line breaks
    const char* indent              # NULL: no indent (", " and ": ", one line)
    Py_ssize_t indent_n
    PyObject* write                 # the callable pieces go to; NULL: one string


JSON_PIECE = 16384                  # bytes of text per write call


cdef int _t_piece(Writer* w, Layout* lay) except -1:
    """Hand what is written so far to the ``write`` callable and start again;
    nothing without one or while the buffer holds less than a piece."""
    if lay.write == NULL or w.pos < JSON_PIECE:
        return 0
    text = PyUnicode_DecodeUTF8(<char*>w.buf, w.pos, "surrogatepass")
    w.pos = 0
    (<object>lay.write)(text)
    return 0


cdef int _t_break(Writer* w, Layout* lay, Py_ssize_t level) except -1:
    """A line break and ``level`` indents (nothing without an indent)."""
    cdef Py_ssize_t i
    if lay.indent == NULL:
        return 0
    _reserve(w, 1 + level * lay.indent_n)
    w.buf[w.pos] = c'\n'
    w.pos += 1
    for i in range(level):
        memcpy(w.buf + w.pos, lay.indent, lay.indent_n)
        w.pos += lay.indent_n
    return 0


cdef inline int _t_separator(Writer* w, Layout* lay, Py_ssize_t level, bint first) except -1:
    """What goes before an item of an array or object: a comma after the first, then
    the line break (or a space, without an indent)."""
    if not first:
        _lit(w, b"," if lay.indent != NULL else b", ")
    return _t_break(w, lay, level)


cdef int _t_str(Writer* w, object s) except -1:
    """``s`` as ``json`` writes a string with ``ensure_ascii``."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    cdef uint32_t c
    cdef uint8_t* q
    _reserve(w, n + 2)
    w.buf[w.pos] = c'"'
    w.pos += 1
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        # Room is kept for the rest as is and the closing quote: an escape reserves
        # its own (12 bytes at most) on top.
        if 0x20 <= c <= 0x7E and c != 0x22 and c != 0x5C:
            w.buf[w.pos] = <uint8_t>c
            w.pos += 1
            continue
        _reserve(w, 12 + n - i)
        q = w.buf + w.pos
        if c < 0x10000:
            w.pos += _put_escape(q, c)
        else:                       # a surrogate pair
            c -= 0x10000
            w.pos += _put_escape(q, 0xD800 | ((c >> 10) & 0x3FF))
            w.pos += _put_escape(q + 6, 0xDC00 | (c & 0x3FF))
    w.buf[w.pos] = c'"'
    w.pos += 1
    return 0


cdef int _t_int(Writer* w, object v) except -1:
    """``int.__repr__(v)``: an int or a subclass (an IntEnum writes its number)."""
    cdef int overflow = 0
    cdef int64_t i = PyLong_AsLongLongAndOverflow(v, &overflow)
    if not overflow:
        return _j_i64(w, i)
    text = int.__repr__(v)
    return _raw(w, <const char*>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))  # digits: ASCII


cdef int _t_float(Writer* w, double d) except -1:
    """``json``'s float: ``float.__repr__``, NaN and the infinities bare."""
    if d != d:
        return _lit(w, b"NaN")
    if d == INFINITY:
        return _lit(w, b"Infinity")
    if d == -INFINITY:
        return _lit(w, b"-Infinity")
    return _j_finite(w, d)


cdef int _t_key(Writer* w, object key) except -1:
    """A dict key as ``json`` writes it: a str, or a float, bool, None or int as text."""
    if isinstance(key, str):
        return _t_str(w, key)
    _lit(w, b'"')
    if isinstance(key, float):
        _t_float(w, key)
    elif key is True:
        _lit(w, b"true")
    elif key is False:
        _lit(w, b"false")
    elif key is None:
        _lit(w, b"null")
    elif isinstance(key, int):
        _t_int(w, key)
    else:
        raise TypeError("keys must be str, int, float, bool or None, not %s" % type(key).__name__)
    return _lit(w, b'"')


cdef int _t_value(Writer* w, Layout* lay, object v, Py_ssize_t level) except -1:
    """``v``, as ``to_plain`` makes it plain and ``json`` writes that."""
    t = type(v)
    # The builtins first, by exact type: none of them has a to_dict.
    if t is str:
        return _t_str(w, v)
    if v is None:
        return _lit(w, b"null")
    if v is True:
        return _lit(w, b"true")
    if v is False:
        return _lit(w, b"false")
    if t is int:
        return _t_int(w, v)
    if t is float:
        return _t_float(w, <double>v)
    if Py_EnterRecursiveCall(" while writing JSON"):
        return -1
    try:
        return _t_nested(w, lay, v, level)
    finally:
        Py_LeaveRecursiveCall()


cdef int _t_points(Writer* w, Layout* lay, Snapshot snap, Py_ssize_t level) except -1:
    """A snapshot's points as the array of their ``to_dict()``s, each built as it is
    written and let go (``Snapshot.point_at``), so a document never holds them all
    (nor keeps them: a later reader builds them, as if never written)."""
    cdef Py_ssize_t i
    if snap.count == 0:
        return _lit(w, b"[]")
    _lit(w, b"[")
    for i in range(snap.count):
        _t_separator(w, lay, level + 1, i == 0)
        _t_value(w, lay, snap.point_at(i), level + 1)
        _t_piece(w, lay)
    _t_break(w, lay, level)
    return _lit(w, b"]")


cdef int _t_nested(Writer* w, Layout* lay, object v, Py_ssize_t level) except -1:
    """``_t_value``'s cases that may nest (a record, a dict, a list or tuple) and the
    subclasses of the builtins, one recursion level deeper."""
    cdef bint first = True
    t = type(v)
    if t is not dict and t is not list and t is not tuple and hasattr(v, "to_dict"):
        raw = getattr(v, "_data_points", None)
        if type(raw) is Snapshot and records_readable(<Snapshot>raw):
            # A metric's data (the model's ``_Data``, whose ``to_dict()`` is its fields in
            # order) with its points still records: that dict, the snapshot as its points.
            return _t_value(w, lay, {f: raw if f == "data_points" else getattr(v, f)
                                     for f in type(v)._fields}, level)
        return _t_value(w, lay, v.to_dict(), level)
    if t is Snapshot:
        return _t_points(w, lay, <Snapshot>v, level)
    if isinstance(v, dict):
        if not v:
            return _lit(w, b"{}")
        _lit(w, b"{")
        for key, item in v.items():
            _t_separator(w, lay, level + 1, first)
            first = False
            _t_key(w, key)
            _lit(w, b": ")
            _t_value(w, lay, item, level + 1)
            _t_piece(w, lay)
        _t_break(w, lay, level)
        return _lit(w, b"}")
    if isinstance(v, (list, tuple)):
        if not v:
            return _lit(w, b"[]")
        _lit(w, b"[")
        for item in v:
            _t_separator(w, lay, level + 1, first)
            first = False
            _t_value(w, lay, item, level + 1)
            _t_piece(w, lay)
        _t_break(w, lay, level)
        return _lit(w, b"]")
    if isinstance(v, bytes):
        return _t_str(w, (<bytes>v).hex())
    if isinstance(v, str):
        return _t_str(w, v)
    if isinstance(v, int):          # bool is handled above: True and False are its only instances
        return _t_int(w, v)
    if isinstance(v, float):
        return _t_float(w, <double>v)
    raise TypeError("Object of type %s is not JSON serializable" % type(v).__name__)


def to_json(obj, indent=4, write=None):
    # The reference's ``to_json(indent=...)``: the record as a JSON document, the
    # text ``json.dumps(to_plain(obj), indent=indent)`` gives (an int indent is that
    # many spaces, a str is used as is, None writes one line).
    #
    # With ``write`` (a text stream's ``write``), the text is handed to it in pieces
    # of about ``JSON_PIECE`` characters, in order, and None is returned; if
    # ``write`` raises, what it took is all that went out.
    cdef Writer w
    cdef Layout lay
    cdef bytes ind = None
    if write is not None and not callable(write):
        raise TypeError("write must be callable, got %r" % (write,))
    if indent is not None:
        ind = (indent if isinstance(indent, str) else " " * indent).encode("utf-8", "surrogatepass")
        lay.indent = PyBytes_AS_STRING(ind)
        lay.indent_n = PyBytes_GET_SIZE(ind)
    else:
        lay.indent = NULL
        lay.indent_n = 0
    lay.write = <PyObject*>write if write is not None else NULL
    _writer_init(&w)
    try:
        _writer_body(&w, 4096)
        _t_value(&w, &lay, obj, 0)
        text = PyUnicode_DecodeUTF8(<char*>w.buf, w.pos, "surrogatepass")
    finally:
        Py_XDECREF(w.body)
    if write is None:
        return text
    if text:
        write(text)
