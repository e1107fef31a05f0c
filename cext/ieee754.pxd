# IEEE 754 binary64 fields read straight from the bits (inline, no libm).
#
# For a finite, non-zero x:  |x| = (1 + ieee_fraction(x) / 2**52) * 2**ieee_exponent(x)
# holds exactly for normal AND subnormal values: a subnormal's fraction is
# renormalised (shifted until its leading one is the implicit bit) and its
# exponent lowered accordingly, so ieee_exponent(x) == floor(log2(|x|)) always.
# Whether a caller then clamps subnormals (the exponential histogram rounds them
# up to the smallest normal, which the spec allows) is that caller's policy.

from libc.stdint cimport uint64_t, int64_t
from libc.string cimport memcpy

cdef enum:
    IEEE_MANTISSA_WIDTH = 52
    IEEE_EXPONENT_BIAS = 1023
    IEEE_MIN_NORMAL_EXPONENT = -1022
    IEEE_MAX_NORMAL_EXPONENT = 1023

cdef extern from *:
    # Spelled in C so the 64-bit literals are exact on 32-bit targets too.
    """
    #define OTM_IEEE_FRACTION_MASK ((uint64_t)0x000FFFFFFFFFFFFFULL)
    #define OTM_IEEE_EXPONENT_MASK ((uint64_t)0x7FF0000000000000ULL)
    #define OTM_IEEE_SIGN_MASK     ((uint64_t)0x8000000000000000ULL)
    #define OTM_IEEE_IMPLICIT_ONE  ((uint64_t)0x0010000000000000ULL)
    """
    const uint64_t IEEE_FRACTION_MASK "OTM_IEEE_FRACTION_MASK"
    const uint64_t IEEE_EXPONENT_MASK "OTM_IEEE_EXPONENT_MASK"
    const uint64_t IEEE_SIGN_MASK "OTM_IEEE_SIGN_MASK"
    const uint64_t IEEE_IMPLICIT_ONE "OTM_IEEE_IMPLICIT_ONE"


cdef inline uint64_t ieee_bits(double x) noexcept nogil:
    # memcpy rather than a pointer cast: no strict-aliasing hazard, and
    # compilers turn it into a single register move.
    cdef uint64_t u
    memcpy(&u, &x, sizeof(double))
    return u


cdef inline double ieee_from_bits(uint64_t u) noexcept nogil:
    cdef double x
    memcpy(&x, &u, sizeof(double))
    return x


cdef inline int ieee_biased_exponent(double x) noexcept nogil:
    """The raw 11-bit exponent field (0 for zero/subnormals, 2047 for inf/NaN)."""
    return <int>((ieee_bits(x) & IEEE_EXPONENT_MASK) >> IEEE_MANTISSA_WIDTH)


cdef inline bint ieee_is_subnormal(double x) noexcept nogil:
    cdef uint64_t u = ieee_bits(x)
    return (u & IEEE_EXPONENT_MASK) == 0 and (u & IEEE_FRACTION_MASK) != 0


cdef inline int ieee_exponent(double x) noexcept nogil:
    """floor(log2(|x|)) for finite non-zero x, subnormals included."""
    cdef uint64_t u = ieee_bits(x)
    cdef int e = <int>((u & IEEE_EXPONENT_MASK) >> IEEE_MANTISSA_WIDTH)
    cdef uint64_t f
    if e != 0:
        return e - IEEE_EXPONENT_BIAS
    # Subnormal: value = f * 2**-1074, so floor(log2) = -1074 + bit length - 1.
    f = u & IEEE_FRACTION_MASK
    e = IEEE_MIN_NORMAL_EXPONENT
    while (f & IEEE_IMPLICIT_ONE) == 0:
        f <<= 1
        e -= 1
    return e


cdef inline uint64_t ieee_fraction(double x) noexcept nogil:
    """The 52 fraction bits after the implicit one; subnormals renormalised.

    Zero only for exact powers of two.
    """
    cdef uint64_t u = ieee_bits(x)
    cdef uint64_t f = u & IEEE_FRACTION_MASK
    if (u & IEEE_EXPONENT_MASK) != 0 or f == 0:
        return f
    while (f & IEEE_IMPLICIT_ONE) == 0:
        f <<= 1
    return f & IEEE_FRACTION_MASK


cdef inline double ieee_significand(double x) noexcept nogil:
    """|x| / 2**ieee_exponent(x), exactly, in [1, 2)."""
    return ieee_from_bits((<uint64_t>IEEE_EXPONENT_BIAS << IEEE_MANTISSA_WIDTH) | ieee_fraction(x))
