# Attribute-set hashing and matching for the recording hot path.
#
# An attribute set arrives as a dict and is stored as a flat (k0, v0, k1, v1, ...)
# tuple (half the memory of a dict copy); two sets are the same series when they hold the
# same keys with equal values of the same types (as in opentelemetry-sdk 1.45:
# 1, 1.0 and True are three series). The fast path touches only dicts whose keys
# are exact str and whose values are exact str/int/float/bool: for those,
# hashing and comparing cannot run Python code, cannot raise and allocate
# nothing, so a known series costs a few dict probes. Anything else is
# sanitised first (attributes.pyx) into such a dict, with tuple values for
# sequences.

from cpython.dict cimport PyDict_Next, PyDict_GetItem
from cpython.object cimport PyObject, PyObject_Hash, PyObject_RichCompareBool, Py_EQ
from cpython.set cimport PySet_Contains
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_GET_ITEM
from libc.stdint cimport uint64_t

cdef extern from *:
    """
    /* A key: exact, non-empty str. */
    #define OM_IS_KEY(o) (Py_TYPE(o) == &PyUnicode_Type && PyUnicode_GET_LENGTH(o) > 0)
    #define OM_IS_TUPLE(o) (Py_TYPE(o) == &PyTuple_Type)
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
    /* A value the hot path takes as-is: exact str/float/bool, or int within int64 (OTLP's). */
    static inline int OM_IS_PLAIN(PyObject *o) {
        PyTypeObject *t = Py_TYPE(o);
        int overflow = 0;
        if (t == &PyUnicode_Type || t == &PyFloat_Type || t == &PyBool_Type) return 1;
        if (t != &PyLong_Type) return 0;
        (void)PyLong_AsLongLongAndOverflow(o, &overflow);
        return !overflow;
    }
    """
    bint OM_IS_KEY(PyObject *o) nogil
    uint64_t OM_TYPE_TAG(PyObject *o) nogil
    bint OM_SAME_TYPES(PyObject *a, PyObject *b) nogil
    bint OM_IS_PLAIN(PyObject *o) nogil
    bint OM_IS_TUPLE(PyObject *o) nogil

cdef extern from "Python.h":
    ctypedef long Py_hash_t

# Hash of the empty attribute set (also None).
cdef enum:
    EMPTY_SET_HASH = 0x2545F491

cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    # splitmix64 finaliser: spreads the bits of one key/value pair.
    x ^= x >> 30
    x *= <uint64_t>0xbf58476d1ce4e5b9ULL
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111ebULL
    x ^= x >> 31
    return x

cdef inline bint _plain_value(PyObject *v, bint allow_tuple) noexcept:
    return OM_IS_PLAIN(v) or (allow_tuple and OM_IS_TUPLE(v))

cdef inline bint _key_kept(PyObject *k, object allowed, object excluded) except -1:
    if allowed is not None and not PySet_Contains(allowed, <object>k):
        return False
    if excluded is not None and PySet_Contains(excluded, <object>k):
        return False
    return True

cdef inline bint hash_attributes(dict d, object allowed, object excluded, bint allow_tuple,
                                 Py_hash_t *out_hash, Py_ssize_t *out_n) except -1:
    """Order-independent hash of the kept pairs of ``d``.

    Returns False (without hashing) when ``d`` needs sanitising first.
    ``allowed``/``excluded`` are frozensets of keys or None (view filters).
    ``allow_tuple`` is set only for already-sanitised dicts, whose tuples hold
    plain values.
    """
    cdef Py_ssize_t pos = 0, n = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef uint64_t acc = 0
    cdef Py_hash_t hk, hv
    while PyDict_Next(d, &pos, &k, &v):
        if not OM_IS_KEY(k) or not _plain_value(v, allow_tuple):
            return False
        if (allowed is not None or excluded is not None) and not _key_kept(k, allowed, excluded):
            continue
        hk = PyObject_Hash(<object>k)
        hv = PyObject_Hash(<object>v)
        acc += _mix(<uint64_t>hk * <uint64_t>0x9E3779B97F4A7C15ULL ^ <uint64_t>hv ^ (OM_TYPE_TAG(v) << 56))
        n += 1
    out_n[0] = n
    out_hash[0] = <Py_hash_t>(_mix(acc + <uint64_t>n) if n else <uint64_t>EMPTY_SET_HASH)
    return True

cdef inline bint same_attributes(tuple stored, dict d) except -1:
    """True when ``d`` holds every pair of ``stored`` (a flat (k0, v0, k1, v1...)
    tuple of kept pairs). The caller checked that ``d`` has as many kept pairs,
    so the two sets are then equal."""
    cdef Py_ssize_t j, n = PyTuple_GET_SIZE(stored)
    cdef PyObject *v
    cdef PyObject *sv
    for j in range(0, n, 2):
        v = PyDict_GetItem(d, <object>PyTuple_GET_ITEM(stored, j))
        if v == NULL:
            return False
        sv = PyTuple_GET_ITEM(stored, j + 1)
        if sv != v and not (OM_SAME_TYPES(sv, v) and PyObject_RichCompareBool(<object>sv, <object>v, Py_EQ)):
            return False
    return True
