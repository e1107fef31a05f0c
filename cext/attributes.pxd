# Attribute-set hashing and matching for the recording hot path.
#
# An attribute set arrives as a dict and is stored as a flat (k0, v0, k1, v1, ...)
# tuple (half the memory of a dict copy); two sets are the same series when they hold the
# same keys with equal values of the same types (as in opentelemetry-sdk 1.45:
# 1, 1.0 and True are three series). The fast path touches only dicts whose keys
# are exact str and whose values are exact str/int/float/bool: for those,
# hashing and comparing cannot run Python code, cannot raise and allocate
# nothing, so a known series costs a few dict probes. Anything else is
# sanitised first (attributes.pxi) into such a dict, with tuple values for
# sequences.
#
# A caller usually passes the same keys in the same order for a series, so
# hash_attributes can note the pairs it hashed (borrowed, in the dict's order)
# and same_attributes then compares them with the stored tuple position by
# position, looking keys up in the dict only when the order or the key objects
# differ. Nothing here raises.

from cpython.dict cimport PyDict_Next
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_GET_ITEM
from libc.stdint cimport int64_t, uint64_t


cdef extern from "Python.h":
    ctypedef long Py_hash_t
    # Declared here without Cython's error checks: the callers handle -1/NULL.
    int PySet_Contains(object anyset, object key) noexcept
    PyObject *PyDict_GetItemWithError(PyObject *d, PyObject *k) noexcept
    void PyErr_Clear() noexcept
    bint PyUnicode_IS_COMPACT_ASCII(object s)
    void* PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)

cdef extern from *:
    """
    /* A key: exact, non-empty str. */
    #define OM_IS_KEY(o) (Py_TYPE(o) == &PyUnicode_Type && PyUnicode_GET_LENGTH(o) > 0)
    #define OM_IS_TUPLE(o) (Py_TYPE(o) == &PyTuple_Type)
    #define OM_IS_INT(o) (Py_TYPE(o) == &PyLong_Type)
    /* Values of different types are different attributes (True, 1 and 1.0 are
       three series, as OTLP's bool/int/double values are): a tag per type. */
    static inline unsigned long long OM_TYPE_TAG(PyObject *o) {
        PyTypeObject *t = Py_TYPE(o);
        if (t == &PyUnicode_Type) return 0x51ULL;
        if (t == &PyLong_Type) return 0x1bULL;
        if (t == &PyFloat_Type) return 0xf7ULL;
        if (t == &PyBool_Type) return 0xb0ULL;
        return 0x7eULL;
    }
    static inline int OM_SAME_TYPES(PyObject *a, PyObject *b) {
        Py_ssize_t i, n;
        if (Py_TYPE(a) != Py_TYPE(b)) return 0;
        if (Py_TYPE(a) != &PyTuple_Type) return 1;
        n = PyTuple_GET_SIZE(a);
        if (PyTuple_GET_SIZE(b) != n) return 0;
        for (i = 0; i < n; i++)
            if (Py_TYPE(PyTuple_GET_ITEM(a, i)) != Py_TYPE(PyTuple_GET_ITEM(b, i))) return 0;
        return 1;
    }
    /* A value the hot path takes as-is, besides an int within int64 (OTLP's): exact str/float/bool. */
    static inline int OM_IS_PLAIN_NOT_INT(PyObject *o) {
        PyTypeObject *t = Py_TYPE(o);
        return t == &PyUnicode_Type || t == &PyFloat_Type || t == &PyBool_Type;
    }
    /* Hash of a plain value or key: a str's cached hash is read, not recomputed
       through a call; the others cannot fail either. */
    static inline Py_hash_t OM_HASH(PyObject *o) {
        if (Py_TYPE(o) == &PyUnicode_Type && ((PyASCIIObject *)o)->hash != -1)
            return ((PyASCIIObject *)o)->hash;
        return PyObject_Hash(o);
    }
    /* Equality of two plain values of the same types (no Python code runs);
       an error (impossible for these types) counts as unequal. */
    static inline int OM_EQUAL(PyObject *a, PyObject *b) {
        int r;
        if (a == b) return 1;
        r = PyObject_RichCompareBool(a, b, Py_EQ);
        if (r < 0) { PyErr_Clear(); return 0; }
        return r;
    }
    """
    bint OM_IS_KEY(PyObject *o) nogil
    uint64_t OM_TYPE_TAG(PyObject *o) nogil
    bint OM_SAME_TYPES(PyObject *a, PyObject *b) nogil
    bint OM_IS_PLAIN_NOT_INT(PyObject *o) nogil
    bint OM_IS_INT(PyObject *o) nogil
    bint OM_IS_TUPLE(PyObject *o) nogil
    Py_hash_t OM_HASH(PyObject *o) noexcept
    bint OM_EQUAL(PyObject *a, PyObject *b) noexcept

# Hash of the empty attribute set (also None).
cdef enum:
    EMPTY_SET_HASH = 0x2545F491

# Pairs hash_attributes notes for the positional comparison; a set with more
# kept pairs is compared by lookups.
cdef enum:
    NOTED_PAIRS = 8

cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    # splitmix64 finaliser: spreads the bits of one key/value pair.
    x ^= x >> 30
    x *= <uint64_t>0xbf58476d1ce4e5b9ULL
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111ebULL
    x ^= x >> 31
    return x

cdef inline bint _plain_value(PyObject *v, bint allow_tuple) noexcept:
    return OM_IS_PLAIN_NOT_INT(v) or (OM_IS_INT(v) and int64_fits(v)) or (allow_tuple and OM_IS_TUPLE(v))

cdef inline bint _key_kept(PyObject *k, object allowed, object excluded) noexcept:
    # A lookup error (only a key object of the filter's own raising in __eq__)
    # counts as not found.
    cdef int r
    if allowed is not None:
        r = PySet_Contains(allowed, <object>k)
        if r != 1:
            if r < 0:
                PyErr_Clear()
            return False
    if excluded is not None:
        r = PySet_Contains(excluded, <object>k)
        if r != 0:
            if r < 0:
                PyErr_Clear()
            return r < 0
    return True

cdef inline bint hash_attributes(dict d, object allowed, object excluded, bint allow_tuple,
                                 Py_hash_t *out_hash, Py_ssize_t *out_n, PyObject **noted) noexcept:
    """Order-independent hash of the kept pairs of ``d``.

    Returns False (without hashing) when ``d`` needs sanitising first.
    ``allowed``/``excluded`` are frozensets of keys or None (view filters).
    ``allow_tuple`` is set only for already-sanitised dicts, whose tuples hold
    plain values. ``noted`` (NULL or room for 2 * NOTED_PAIRS pointers)
    receives the first kept pairs, borrowed, for same_attributes.
    """
    cdef Py_ssize_t pos = 0, n = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef uint64_t acc = 0
    cdef bint filtered = allowed is not None or excluded is not None
    while PyDict_Next(d, &pos, &k, &v):
        if not OM_IS_KEY(k) or not _plain_value(v, allow_tuple):
            return False
        if filtered and not _key_kept(k, allowed, excluded):
            continue
        if noted != NULL and n < NOTED_PAIRS:
            noted[2 * n] = k
            noted[2 * n + 1] = v
        acc += _mix(<uint64_t>OM_HASH(k) * <uint64_t>0x9E3779B97F4A7C15ULL ^ <uint64_t>OM_HASH(v)
                    ^ (OM_TYPE_TAG(v) << 56))
        n += 1
    out_n[0] = n
    out_hash[0] = <Py_hash_t>(_mix(acc + <uint64_t>n) if n else <uint64_t>EMPTY_SET_HASH)
    return True

cdef inline bint _same_value(PyObject *sv, PyObject *v) noexcept:
    return sv == v or (OM_SAME_TYPES(sv, v) and OM_EQUAL(sv, v))

cdef inline bint same_attributes(tuple stored, dict d, PyObject **noted, Py_ssize_t n) noexcept:
    """True when ``d`` holds every pair of ``stored`` (a flat (k0, v0, k1, v1...)
    tuple of kept pairs). The caller checked that ``d`` has ``n`` kept pairs,
    as many as ``stored``, so the two sets are then equal. ``noted``: the
    pairs hash_attributes noted for ``d`` (or NULL), compared position by
    position first; the lookups run only when a key differs there."""
    cdef Py_ssize_t j
    cdef PyObject *v
    cdef PyObject *sk
    if noted != NULL and n <= NOTED_PAIRS:
        for j in range(n):
            sk = PyTuple_GET_ITEM(stored, 2 * j)
            if sk != noted[2 * j] and not OM_EQUAL(sk, noted[2 * j]):
                break
            # Same key at the same place: the sets differ if the values do.
            if not _same_value(PyTuple_GET_ITEM(stored, 2 * j + 1), noted[2 * j + 1]):
                return False
        else:
            return True
    for j in range(0, 2 * n, 2):
        v = PyDict_GetItemWithError(<PyObject *>d, PyTuple_GET_ITEM(stored, j))
        if v == NULL:
            PyErr_Clear()     # str keys: never an error in fact
            return False
        if not _same_value(PyTuple_GET_ITEM(stored, j + 1), v):
            return False
    return True


# What an encoder finds in a stored value (plain_scalar): the kinds it writes with no
# Python call; SCALAR_OTHER (a str that is not ASCII, an int beyond int64, a tuple)
# takes the encoder's general path.
cdef enum:
    SCALAR_OTHER = 0
    SCALAR_ASCII = 1                        # exact str, compact ASCII: PyUnicode_DATA/GET_LENGTH
    SCALAR_BOOL = 2                         # *iv 1 or 0
    SCALAR_INT = 3                          # exact int within int64: *iv
    SCALAR_FLOAT = 4                        # exact float: *dv

cdef inline int plain_scalar(object value, int64_t *iv, double *dv) except -1:
    """The kind of an attribute value as the encoders (otlp_wire.pxi,
    prometheus_text.pxi) read it, with its number in ``iv``/``dv``."""
    cdef int overflow = 0
    cdef type t = type(value)
    if t is str:
        return SCALAR_ASCII if PyUnicode_IS_COMPACT_ASCII(value) else SCALAR_OTHER
    if t is bool:
        iv[0] = 1 if value is True else 0
        return SCALAR_BOOL
    if t is int:
        iv[0] = PyLong_AsLongLongAndOverflow(value, &overflow)
        return SCALAR_OTHER if overflow else SCALAR_INT
    if t is float:
        dv[0] = <double>value
        return SCALAR_FLOAT
    return SCALAR_OTHER
