# Measurement values: what an instrument accepts as an amount, as an int64 or a
# double. Inline, so parsing costs no call on the recording hot path: an exact
# float and an exact int of one digit (compact since 3.12) are read directly
# (parse_exact), other exact ints through PyLong_AsLongLongAndOverflow; any other number (subclasses, bool, numpy
# scalars, Decimal, Fraction...) takes the slow path and is converted if it
# says how. Nothing here raises: a value that is not a number is V_DROP, and
# the caller reports it. Used by instruments.pxi. And their sums (at the end).
# Inline code here compiles under the directives of the module that cimports it.

from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint8_t

cdef extern from "Python.h":
    double PyFloat_AS_DOUBLE(object o)

cdef extern from *:
    """
    /* An exact int small enough to be read without a call (one digit, or
       CPython's compact form since 3.12); its value in *out. */
    static inline int om_small_int(PyObject *o, long long *out) {
    #if PY_VERSION_HEX >= 0x030C0000
        if (!PyUnstable_Long_IsCompact((PyLongObject *)o)) return 0;
        *out = (long long)PyUnstable_Long_CompactValue((PyLongObject *)o);
        return 1;
    #else
        Py_ssize_t size = Py_SIZE(o);
        if (size == 0) { *out = 0; return 1; }
        if (size == 1) { *out = (long long)((PyLongObject *)o)->ob_digit[0]; return 1; }
        if (size == -1) { *out = -(long long)((PyLongObject *)o)->ob_digit[0]; return 1; }
        return 0;
    #endif
    }
    """
    bint om_small_int(PyObject *o, long long *out) noexcept

# Value kinds returned by parse_value.
cdef enum:
    V_DROP = 0      # not a number
    V_INT = 1       # in *iv
    V_FLOAT = 2     # in *dv (may be NaN or infinite: the caller's policy)


cdef inline double _big_int_as_double(object v):
    """An int past int64: the nearest double, infinite past the double range."""
    try:
        return float(v)
    except OverflowError:
        return INFINITY if v > 0 else -INFINITY


cdef inline int _parse_slow(object amount, int64_t *iv, double *dv) except -1:
    """Numbers that are not exact int/float; V_DROP for anything else."""
    cdef int overflow = 0
    cdef long long i
    try:
        if isinstance(amount, (str, bytes)) or amount is None:
            return V_DROP
        if isinstance(amount, int) or hasattr(type(amount), "__index__"):
            amount = int(amount.__index__())
            i = PyLong_AsLongLongAndOverflow(amount, &overflow)
            if not overflow:
                iv[0] = i
                return V_INT
            dv[0] = _big_int_as_double(amount)
        else:
            try:
                dv[0] = float(amount)
            except OverflowError:       # e.g. a Fraction or Decimal beyond the double range
                dv[0] = INFINITY if amount > 0 else -INFINITY
    except Exception:
        return V_DROP
    return V_FLOAT


cdef inline int parse_exact(object amount, int64_t *iv, double *dv) noexcept:
    """The recording fast path: V_INT for an exact small int, V_FLOAT for an
    exact float (the caller checks it is finite), else V_DROP: ask parse_value."""
    cdef long long i
    if type(amount) is float:
        dv[0] = PyFloat_AS_DOUBLE(amount)
        return V_FLOAT
    if type(amount) is int and om_small_int(<PyObject *>amount, &i):
        iv[0] = i
        return V_INT
    return V_DROP


cdef inline bint int64_fits(PyObject *o) noexcept:
    """An exact int within int64."""
    cdef long long i
    cdef int overflow = 0
    if om_small_int(o, &i):
        return True
    PyLong_AsLongLongAndOverflow(<object>o, &overflow)
    return not overflow


cdef inline int parse_value(object amount, int64_t *iv, double *dv) except -1:
    """V_INT (``*iv`` set), V_FLOAT (``*dv`` set) or V_DROP."""
    cdef int overflow = 0
    cdef long long i
    cdef int k = parse_exact(amount, iv, dv)
    if k != V_DROP:
        return k
    if type(amount) is int:
        i = PyLong_AsLongLongAndOverflow(amount, &overflow)
        if not overflow:
            iv[0] = i
            return V_INT
        # Past int64 either way: kept as the nearest double (infinite past its range).
        dv[0] = _big_int_as_double(amount)
        return V_FLOAT
    return _parse_slow(amount, iv, dv)


# Sums: int64 while only ints arrived and they fit, a double from the first float or the
# first overflow on (never wrapped). Used by aggregations.pxi and expo_histogram.pxi.

cdef extern from *:
    """
    static inline int om_add_overflow(int64_t a, int64_t b, int64_t *r) {
        return __builtin_add_overflow(a, b, r);
    }
    static inline int om_sub_overflow(int64_t a, int64_t b, int64_t *r) {
        return __builtin_sub_overflow(a, b, r);
    }
    """
    bint om_add_overflow(int64_t a, int64_t b, int64_t *r) nogil
    bint om_sub_overflow(int64_t a, int64_t b, int64_t *r) nogil


cdef inline void sum_add_i(int64_t *isum, double *dsum, uint8_t *isfloat, int64_t v) noexcept:
    """Add to a sum kept as int64 until it would overflow (then as a double)."""
    cdef int64_t r
    if isfloat[0]:
        dsum[0] += <double>v
    elif om_add_overflow(isum[0], v, &r):
        isfloat[0] = 1
        dsum[0] = <double>isum[0] + <double>v
    else:
        isum[0] = r


cdef inline void sum_add_d(int64_t *isum, double *dsum, uint8_t *isfloat, double v) noexcept:
    """Add a double: the sum is a double from now on."""
    if isfloat[0]:
        dsum[0] += v
    else:
        isfloat[0] = 1
        dsum[0] = <double>isum[0] + v
