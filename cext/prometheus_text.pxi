# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""Prometheus text sample lines written straight from a collection's snapshot.

One job: ``prometheus_samples`` gives the sample lines of one metric whose points were
never built (its data still holds the collection's Snapshot, table.pxd), as UTF-8
bytes: those export/prometheus.py's points path (``_labels``, ``_render_labels``,
``_number``, ``render`` and its ``encode("utf-8", "replace")``) writes for the same
points, with no Python object per series. The text format 0.0.4 and OpenMetrics 1.0
write these lines alike (a stream that was offered exemplars since its last collection
builds its points at collection, so its snapshot never comes here; the caller keeps a
histogram with a negative bucket threshold, whose ``_count`` and ``_sum`` OpenMetrics
leaves out, on the points path).

Invariants:
- The points path's bytes, byte for byte. A series' labels are the caller's extra
  pairs and the series' attributes; each key is named by the caller's ``label_name``
  (kept in the caller's dict), ``le`` becoming ``_le`` on a histogram; pairs whose
  names collide are merged (their values in (key, value) order, joined with ``;``);
  labels sorted by name. Values as ``label_value`` spells them (str as is; bool, int
  and float as JSON; anything else through ``label_value`` itself), escaped (backslash,
  newline, double quote), a lone surrogate written as ``?``; sample values as
  ``_number`` spells them.
- Python is called only for a key the caller's dict does not hold yet and for a value
  that is not a str, bool, int64 or float. Everything else is C, written into the one
  bytes object returned.
- None, and nothing written, when the snapshot's records cannot be read (its points
  are built), are not the kind asked, or hold what the text cannot be computed from
  here (a key that is not a str), or a histogram series whose lines differ between the
  formats (its sum is negative or NaN: OpenMetrics leaves out its ``_count`` and
  ``_sum``): the caller takes the points path.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, strlen


cdef extern from "Python.h":
    int PyUnicode_KIND(object s)
    uint32_t PyUnicode_READ(int kind, void* data, Py_ssize_t i)
    int PyUnicode_Compare(object a, object b) except? -1
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags,
                                int* ptype) except NULL
    int Py_DTSF_ADD_DOT_0
    int _PyBytes_Resize(PyObject** bytes, Py_ssize_t newsize) except -1


cdef struct Text:                   # a growing byte buffer (UTF-8; lone surrogates as 3 bytes)
    char* p
    Py_ssize_t n
    Py_ssize_t cap
    PyObject* body                  # NULL, or the bytes object ``p`` is the data of


cdef struct Label:                  # one (name, value) pair of a series, in the scratch Text
    Py_ssize_t name
    Py_ssize_t name_n
    Py_ssize_t value                # unescaped
    Py_ssize_t value_n
    PyObject* key                   # the attribute key (borrowed), for the merge order


cdef int _text_grow(Text* t, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap = t.cap * 2 if t.cap else 1024
    cdef char* q
    while cap < t.n + more:
        cap *= 2
    if t.body != NULL:
        _PyBytes_Resize(&t.body, cap)
        t.p, t.cap = PyBytes_AS_STRING(<object>t.body), cap
        return 0
    q = <char*>PyMem_Realloc(t.p, <size_t>cap)
    if q == NULL:
        raise MemoryError()
    t.p, t.cap = q, cap
    return 0


cdef inline int _reserve_text(Text* t, Py_ssize_t more) except -1:
    if t.n + more > t.cap:
        _text_grow(t, more)
    return 0


cdef inline int _put(Text* t, const char* s, Py_ssize_t n) except -1:
    _reserve_text(t, n)
    memcpy(t.p + t.n, s, <size_t>n)
    t.n += n
    return 0


cdef int _put_str(Text* t, str s) except -1:
    """A str as UTF-8 (a lone surrogate as its three bytes: decoded back with "surrogatepass")."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(s)
    cdef int kind
    cdef void* data
    cdef uint32_t c
    cdef uint8_t* q
    if PyUnicode_IS_COMPACT_ASCII(s):
        return _put(t, <const char*>PyUnicode_DATA(s), n)
    kind = PyUnicode_KIND(s)
    data = PyUnicode_DATA(s)
    _reserve_text(t, 4 * n)
    q = <uint8_t*>(t.p + t.n)
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c < 0x80:
            q[0] = <uint8_t>c
            q += 1
        elif c < 0x800:
            q[0] = <uint8_t>(0xC0 | (c >> 6))
            q[1] = <uint8_t>(0x80 | (c & 0x3F))
            q += 2
        elif c < 0x10000:
            q[0] = <uint8_t>(0xE0 | (c >> 12))
            q[1] = <uint8_t>(0x80 | ((c >> 6) & 0x3F))
            q[2] = <uint8_t>(0x80 | (c & 0x3F))
            q += 3
        else:
            q[0] = <uint8_t>(0xF0 | (c >> 18))
            q[1] = <uint8_t>(0x80 | ((c >> 12) & 0x3F))
            q[2] = <uint8_t>(0x80 | ((c >> 6) & 0x3F))
            q[3] = <uint8_t>(0x80 | (c & 0x3F))
            q += 4
    t.n = <char*>q - t.p
    return 0


cdef inline char* _u64_at(char* q, uint64_t u) noexcept:
    """Write ``u`` in decimal at ``q`` (room for 20 bytes); returns the end."""
    cdef uint64_t v = u
    cdef char* end = q
    while True:
        end += 1
        v //= 10
        if v == 0:
            break
    q = end
    while True:
        q -= 1
        q[0] = <char>(48 + u % 10)
        u //= 10
        if u == 0:
            break
    return end


cdef int _put_u64(Text* t, uint64_t u) except -1:
    _reserve_text(t, 20)
    t.n = _u64_at(t.p + t.n, u) - t.p
    return 0


cdef int _put_i64(Text* t, int64_t v) except -1:
    if v < 0:
        _put(t, "-", 1)
        return _put_u64(t, <uint64_t>0 - <uint64_t>v)
    return _put_u64(t, <uint64_t>v)


cdef int _put_repr(Text* t, double v) except -1:
    """repr(v) of a finite float."""
    cdef char* s = PyOS_double_to_string(v, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        _put(t, s, <Py_ssize_t>strlen(s))
    finally:
        PyMem_Free(s)
    return 0


cdef int _put_sample_value(Text* t, bint isfloat, int64_t i, double d) except -1:
    """export/prometheus.py's ``_number`` of the value make_point would give."""
    if not isfloat:
        return _put_i64(t, i)
    if d != d:
        return _put(t, "NaN", 3)
    if d == INFINITY:
        return _put(t, "+Inf", 4)
    if d == -INFINITY:
        return _put(t, "-Inf", 4)
    return _put_repr(t, d)


cdef bint _put_label_value(Text* t, object value, object label_value) except -1:
    """export/prometheus.py's ``label_value(value)``, unescaped. False: not computable here."""
    cdef int64_t iv = 0
    cdef double dv = 0.0
    cdef int scalar = plain_scalar(value, &iv, &dv)
    if scalar == SCALAR_ASCII:
        _put(t, <const char*>PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value))
    elif scalar == SCALAR_BOOL:
        if iv:
            _put(t, "true", 4)
        else:
            _put(t, "false", 5)
    elif scalar == SCALAR_INT:
        _put_i64(t, iv)
    elif scalar == SCALAR_FLOAT:               # JSON's spelling (json.dumps)
        if dv != dv:
            _put(t, "NaN", 3)
        elif dv == INFINITY:
            _put(t, "Infinity", 8)
        elif dv == -INFINITY:
            _put(t, "-Infinity", 9)
        else:
            _put_repr(t, dv)
    elif type(value) is str:
        _put_str(t, <str>value)
    else:
        s = label_value(value)                  # sequences, big ints: JSON, as the points path
        if type(s) is not str:
            return False
        _put_str(t, <str>s)
    return True


cdef struct Series:                 # one series' labels being assembled
    Text scratch                    # names and unescaped values, then the rendered labels
    Label* labels
    Py_ssize_t n
    Py_ssize_t cap


cdef bint _add_labels(Series* s, tuple flat, dict names, object label_name, object label_value,
                      bint histogram) except -1:
    """Append the pairs of ``flat`` (k0, v0, k1, v1, ...). False: not computable here."""
    cdef Py_ssize_t j, cap
    cdef PyObject* hit
    cdef Label* lab
    cdef object key, name
    for j in range(0, len(flat), 2):
        key = flat[j]
        if type(key) is not str:
            return False
        if s.n == s.cap:
            cap = s.cap * 2 if s.cap else 16
            lab = <Label*>PyMem_Realloc(s.labels, <size_t>cap * sizeof(Label))
            if lab == NULL:
                raise MemoryError()
            s.labels, s.cap = lab, cap
        lab = s.labels + s.n
        hit = PyDict_GetItemWithError(<PyObject*>names, <PyObject*>key)
        if hit == NULL:
            PyErr_Clear()                       # str keys in a dict: never an error in fact
            name = label_name(key)
            if type(name) is not str:
                return False
            names[key] = name
        else:
            name = <object>hit
        lab.key = <PyObject*>key
        lab.name = s.scratch.n
        if histogram and name == "le":
            _put(&s.scratch, "_le", 3)
        else:
            _put_str(&s.scratch, <str>name)
        lab.name_n = s.scratch.n - lab.name
        lab.value = s.scratch.n
        if not _put_label_value(&s.scratch, flat[j + 1], label_value):
            return False
        lab.value_n = s.scratch.n - lab.value
        s.n += 1
    return True


cdef inline int _cmp_bytes(const char* a, Py_ssize_t an, const char* b, Py_ssize_t bn) noexcept:
    cdef int r = memcmp(a, b, <size_t>(an if an < bn else bn))
    if r:
        return r
    return (an > bn) - (an < bn)


cdef int _label_cmp(const char* base, Label* a, Label* b) except? -2:
    """Order by name, then (for a merge) by key, then by value: the points path's
    sort of labels and of a merged label's (key, value) pairs."""
    cdef int r = _cmp_bytes(base + a.name, a.name_n, base + b.name, b.name_n)
    if r or a.key == b.key:
        return r if r else _cmp_bytes(base + a.value, a.value_n, base + b.value, b.value_n)
    r = PyUnicode_Compare(<object>a.key, <object>b.key)
    return r if r else _cmp_bytes(base + a.value, a.value_n, base + b.value, b.value_n)


cdef inline char* _put_escaped(char* q, const char* v, Py_ssize_t n) noexcept:
    """A label value escaped, a lone surrogate (ED A0..BF xx: no UTF-8 has it) as "?",
    as encode("utf-8", "replace") writes it."""
    cdef Py_ssize_t i = 0
    cdef char c
    while i < n:
        c = v[i]
        i += 1
        if <uint8_t>c == 0xED and i < n and <uint8_t>v[i] >= 0xA0:
            q[0] = b'?'
            q += 1
            i += 2
        elif c == b'\\':
            q[0] = b'\\'
            q[1] = b'\\'
            q += 2
        elif c == b'\n':
            q[0] = b'\\'
            q[1] = b'n'
            q += 2
        elif c == b'"':
            q[0] = b'\\'
            q[1] = b'"'
            q += 2
        else:
            q[0] = c
            q += 1
    return q


cdef Py_ssize_t _render_labels(Series* s) except -1:
    """Sort and merge the labels and render them (``a="x",b="y;z"``) at the end of the
    scratch Text; returns where the rendering starts (it runs to the end)."""
    cdef Py_ssize_t i, j, need = 0, start
    cdef Label tmp
    cdef Label* L = s.labels
    cdef char* q
    cdef const char* base
    for i in range(1, s.n):                     # insertion sort: a handful of labels
        tmp = L[i]
        j = i - 1
        while j >= 0 and _label_cmp(s.scratch.p, &L[j], &tmp) > 0:
            L[j + 1] = L[j]
            j -= 1
        L[j + 1] = tmp
    for i in range(s.n):
        need += L[i].name_n + 2 * L[i].value_n + 4
    _reserve_text(&s.scratch, need)             # no reallocation below: `base` stays valid
    start = s.scratch.n
    base = s.scratch.p
    q = s.scratch.p + start
    for i in range(s.n):
        if i and L[i].name_n == L[i - 1].name_n and memcmp(base + L[i].name, base + L[i - 1].name,
                                                           <size_t>L[i].name_n) == 0:
            q -= 1                              # same name: the value joins the previous one
            q[0] = b';'
            q += 1
        else:
            if i:
                q[0] = b','
                q += 1
            memcpy(q, base + L[i].name, <size_t>L[i].name_n)
            q += L[i].name_n
            q[0] = b'='
            q[1] = b'"'
            q += 2
        q = _put_escaped(q, base + L[i].value, L[i].value_n)
        q[0] = b'"'
        q += 1
    s.scratch.n = q - s.scratch.p
    return start


cdef inline int _put_braced(Text* out, const char* ls, Py_ssize_t ls_n) except -1:
    if ls_n:
        _put(out, "{", 1)
        _put(out, ls, ls_n)
        _put(out, "}", 1)
    return 0


def prometheus_samples(Snapshot snap not None, str sample not None, tuple extras not None, tuple les,
                       dict names not None, object label_name, object label_value):
    # The sample lines (UTF-8 bytes) of the metric whose points ``snap`` would build,
    # as export/prometheus.py's points path renders them, or None (take that path).
    #
    # ``sample``: the sample name (a counter's ``_total`` included), or for a histogram
    # (``les`` given: its ``le`` strings, "+Inf" last) the family name. ``extras``: the
    # scope and resource labels as a flat (k0, v0, ...) tuple, added to every series.
    # ``names``: attribute key -> label name, filled through ``label_name(key)``;
    # ``label_value(value)`` spells the values that are not str, bool, int64 or float.
    cdef Stream stream = snap.stream
    cdef HistogramStream h = None
    cdef bint histogram = les is not None
    cdef Text out
    cdef Series s
    cdef Text fixed                         # the sample name, then for a histogram "_bucket{"
    cdef Py_ssize_t i, j, nb = 0, ls_start, ls_n, sample_n, pre_n, line
    cdef Py_ssize_t* le_at = NULL           # bucket j's `<le>"} ` in ``fixed``: le_at[j]..le_at[j + 1]
    cdef char* rec
    cdef char* q
    cdef NumSnap* ns
    cdef HistSnap* hs
    cdef uint64_t run
    cdef const char* ls
    cdef const char* pre
    if type(sample) is not str or not _records_suit(snap, KIND_HISTOGRAM if histogram else KIND_SUM):
        return None
    if histogram:
        h = <HistogramStream>stream
        nb = h.nb
        if len(les) != nb + 1:
            return None
        for le in les:
            if type(le) is not str:
                return None
    fixed.p, fixed.n, fixed.cap, fixed.body = NULL, 0, 0, NULL
    out.p, out.n, out.cap, out.body = NULL, 0, 0, NULL
    s.scratch.p, s.scratch.n, s.scratch.cap, s.scratch.body = NULL, 0, 0, NULL
    s.labels, s.n, s.cap = NULL, 0, 0
    try:
        _put_str(&fixed, sample)
        sample_n = fixed.n
        if histogram:
            _put(&fixed, "_bucket{", 8)
            le_at = <Py_ssize_t*>PyMem_Malloc(<size_t>(nb + 2) * sizeof(Py_ssize_t))
            if le_at == NULL:
                raise MemoryError()
            for j in range(nb + 1):
                le_at[j] = fixed.n
                _put_str(&fixed, <str>les[j])
                _put(&fixed, '"} ', 3)
            le_at[nb + 1] = fixed.n
        # The lines are written into the bytes object returned, sized for lines of about
        # 96 bytes (grown by doubling, trimmed at the end).
        out.cap = 512 + snap.count * 96 * (nb + 3 if histogram else 1)
        body = PyBytes_FromStringAndSize(NULL, out.cap)
        Py_INCREF(body)
        out.body = <PyObject*>body      # our reference, given up in `finally`
        body = None
        out.p = PyBytes_AS_STRING(<object>out.body)
        for i in range(snap.count):
            rec = snap.buf + i * snap.rec
            if histogram:
                hs = <HistSnap*>(rec + sizeof(int64_t))
                if not (hs.dsum >= 0 if hs.isfloat else hs.isum >= 0):
                    return None                 # a sum below zero or NaN: the formats differ
            s.scratch.n = 0
            s.n = 0
            if not _add_labels(&s, extras, names, label_name, label_value, histogram):
                return None
            if not _add_labels(&s, <tuple>snap.attrs[i], names, label_name, label_value, histogram):
                return None
            ls_start = _render_labels(&s)
            ls = s.scratch.p + ls_start
            ls_n = s.scratch.n - ls_start
            if not histogram:
                ns = <NumSnap*>(rec + sizeof(int64_t))
                _put(&out, fixed.p, sample_n)
                _put_braced(&out, ls, ls_n)
                _put(&out, " ", 1)
                _put_sample_value(&out, ns.isfloat, ns.i, ns.d)
                _put(&out, "\n", 1)
                continue
            # Each bucket line: name_bucket{<labels>,le="  <le>"}  <cumulative count>\n
            if ls_n:
                _put(&s.scratch, ",", 1)
            _put(&s.scratch, 'le="', 4)
            ls = pre = s.scratch.p + ls_start               # (moved if it grew); no growth below
            pre_n = s.scratch.n - ls_start
            run = 0
            for j in range(nb + 1):
                line = le_at[j + 1] - le_at[j]
                _reserve_text(&out, sample_n + 8 + pre_n + line + 21)
                q = out.p + out.n
                memcpy(q, fixed.p, <size_t>(sample_n + 8))
                q += sample_n + 8
                memcpy(q, pre, <size_t>pre_n)
                q += pre_n
                memcpy(q, fixed.p + le_at[j], <size_t>line)
                q += line
                if j < nb:
                    run += hist_bucket(hs, j)
                    q = _u64_at(q, run)
                else:
                    q = _u64_at(q, hs.count)
                q[0] = b'\n'
                out.n = q + 1 - out.p
            _put(&out, fixed.p, sample_n)
            _put(&out, "_count", 6)
            _put_braced(&out, ls, ls_n)
            _put(&out, " ", 1)
            _put_u64(&out, hs.count)
            _put(&out, "\n", 1)
            _put(&out, fixed.p, sample_n)
            _put(&out, "_sum", 4)
            _put_braced(&out, ls, ls_n)
            _put(&out, " ", 1)
            _put_sample_value(&out, hs.isfloat, hs.isum, hs.dsum)
            _put(&out, "\n", 1)
        _PyBytes_Resize(&out.body, out.n)
        return <object>out.body
    finally:
        Py_XDECREF(out.body)
        PyMem_Free(le_at)
        PyMem_Free(fixed.p)
        PyMem_Free(s.scratch.p)
        PyMem_Free(s.labels)
