# Included by _native.pyx: one extension module, otelmetrics._native, whose header states the directives.
"""Base-2 exponential bucket histogram: exact index mapping and the per-series cell.

Bucket ``i`` at scale ``s`` holds the values ``(base**i, base**(i+1)]`` with
``base = 2**(2**-s)``, for scales -10 (the minimum the spec allows) to 20.

Index mapping
    scale <= 0: exponent mapping, read straight from the IEEE bits.
    scale > 0:  logarithm mapping.  The index is ``e * 2**s + j`` with ``e`` the
    binary exponent and ``j = floor(2**s * log2(m))`` for the significand
    ``m`` in (1, 2).  ``j`` is estimated with ``log2``; when the estimate lies
    within a (very generous) error margin of an integer, it is decided exactly
    by computing ``2**s * log2(m)`` bit by bit: ``s`` squarings of ``m`` in
    128-bit fixed point, carried as a lower and an upper bound.  The bounds
    stay within ~2**-106 (relative) of each other, while no double lies closer
    than 2**-77.8 to any boundary (checked exhaustively over the 2**20 scale-20
    boundaries, which include those of every lower scale), so they always
    agree; ``exact_path_stats()`` counts the calls and any disagreement.
    Powers of two are exact by construction.  The
    reference SDK's ``floor(log(v) * scale_factor)`` is off by one next to
    powers of two (``nextafter(4.0, 0)`` at scale 20: 2097152 instead of the
    exact 2097151); this module is not.

Subnormals
    Values below 2**-1022 are rounded up to the smallest normal value, i.e.
    they land in the bucket of 2**-1022 (the spec allows this, the reference
    SDK does the same).  This keeps the whole finite range within 2 buckets at
    scale -10, so ``max_size >= 2`` always fits and the scale never goes below -10.

Cell (:class:`ExpoHistogramCell`)
    Preallocated circular counters for each sign (``max_size`` each), an index
    window ``[start, end]`` and the automatic downscale of the spec.  What it
    exports (scale, offsets, bucket_counts including their trailing zeros,
    zero_count, count, sum/min/max and their int/float type) reproduces what
    opentelemetry-sdk exports for the same measurements, with two deliberate
    differences: exact bucket boundaries (above), and merge_from() never
    forces scale 0 nor a phantom bucket 0 when one side of the running
    histogram was still empty (the reference's cumulative collection does,
    or raises "Incorrect merge scale").
"""

from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.math cimport log2, INFINITY
from libc.string cimport memset, memcpy
from libc.stdint cimport uint64_t, uint32_t, int64_t


cdef enum:
    MIN_SCALE = -10
    MAX_SCALE = 20
    MIN_MAX_SIZE = 2          # smallest size holding the whole finite range at scale -10
    MAX_MAX_SIZE = 16384      # same guard against giant histograms as the reference
    LIMBS = 4                 # 4 x 32 bits of fixed point for the exact sub-index

# The bounds above for the Python layer, which checks a configured aggregation against them.
EXPO_MAX_SIZE_RANGE = (MIN_MAX_SIZE, MAX_MAX_SIZE)
EXPO_SCALE_RANGE = (MIN_SCALE, MAX_SCALE)

# How often the exact path ran and how often its bounds could not decide.
cdef unsigned long long _exact_calls = 0
cdef unsigned long long _exact_undecided = 0


# ---------------------------------------------------------------------------
# index mapping

cdef inline int64_t _fshift(int64_t v, int k) noexcept nogil:
    # floor(v / 2**k) without relying on implementation-defined >> of negatives
    if v >= 0:
        return v >> k
    return ~((~v) >> k)


cdef inline int _limb_square(uint32_t *r, uint32_t *out, bint round_up) noexcept nogil:
    """r is R with R / 2**(W-1) in [1, 2), W = 32*LIMBS.  out = r*r normalised the same way.

    Returns 1 when r*r >= 2 (then out holds r*r/2), 0 otherwise, -1 when
    rounding up overflowed (only possible right next to 2, i.e. undecidable).
    """
    cdef uint64_t p[2 * LIMBS]
    cdef uint64_t t, carry
    cdef int i, j, shift, bit
    cdef bint rest = False
    for i in range(2 * LIMBS):
        p[i] = 0
    for i in range(LIMBS):
        carry = 0
        for j in range(LIMBS):
            t = p[i + j] + <uint64_t>r[i] * r[j] + carry
            p[i + j] = t & 0xFFFFFFFFu
            carry = t >> 32
        p[i + LIMBS] = carry
    bit = <int>(p[2 * LIMBS - 1] >> 31)
    # keep the top W bits (bit=1) or the top W bits below the leading zero (bit=0)
    shift = 32 * LIMBS - 1 + bit          # bits to drop
    for i in range(shift // 32):
        if p[i] != 0:
            rest = True
    if (p[shift // 32] & ((<uint64_t>1 << (shift % 32)) - 1)) != 0:
        rest = True
    for i in range(LIMBS):
        j = i + shift // 32
        t = p[j] >> (shift % 32)
        if shift % 32 and j + 1 < 2 * LIMBS:
            t |= p[j + 1] << (32 - shift % 32)
        out[i] = <uint32_t>(t & 0xFFFFFFFFu)
    if round_up and rest:
        for i in range(LIMBS):
            out[i] += 1
            if out[i] != 0:
                break
        else:
            return -1   # carried out of the top: r*r was within an ulp of 2 or 4
    return bit


cdef int64_t _exact_subindex(uint64_t fraction, int scale, int64_t fallback) noexcept nogil:
    """floor(2**scale * log2(1 + fraction / 2**52)) for 0 < fraction, 1 <= scale <= 20.

    Bit by bit: squaring m doubles log2(m); whenever m**2 >= 2 the next binary
    digit of log2(m) is 1 and m is halved.  Lower and upper bounds are carried
    (truncated and rounded up); their digits agree unless m**(2**k) is within
    ~2**-100 of a power of two, which is then counted and `fallback` returned.
    """
    global _exact_calls, _exact_undecided
    cdef uint32_t lo[LIMBS]
    cdef uint32_t hi[LIMBS]
    cdef uint32_t tmp[LIMBS]
    cdef uint64_t mant = fraction | (<uint64_t>1 << 52)   # 53 bits, m = mant / 2**52
    cdef int64_t j = 0
    cdef int k, i, blo, bhi
    _exact_calls += 1
    # R = mant << (W - 53): place the leading one at bit W-1
    for i in range(LIMBS):
        lo[i] = 0
    lo[LIMBS - 1] = <uint32_t>(mant >> 21)
    lo[LIMBS - 2] = <uint32_t>((mant << 11) & 0xFFFFFFFFu)
    memcpy(hi, lo, sizeof(lo))
    for k in range(scale):
        blo = _limb_square(lo, tmp, False)
        memcpy(lo, tmp, sizeof(lo))
        bhi = _limb_square(hi, tmp, True)
        memcpy(hi, tmp, sizeof(hi))
        if blo != bhi:
            _exact_undecided += 1
            return fallback
        j = (j << 1) | blo
    return j


cdef inline int64_t _map_index(double a, int scale) noexcept nogil:
    """Bucket index of a > 0 (finite) at scale in [-10, 20]."""
    cdef int e
    cdef uint64_t f
    cdef double x, fr, tol
    cdef int64_t j
    if ieee_is_subnormal(a):
        # rounded up to 2**-1022 (see the module docstring)
        e = IEEE_MIN_NORMAL_EXPONENT
        f = 0
    else:
        e = ieee_exponent(a)
        f = ieee_fraction(a)
    if scale <= 0:
        # powers of two are the upper bound of the bucket below
        return _fshift(e - (f == 0), -scale)
    if f == 0:
        return (<int64_t>e << scale) - 1 if e >= 0 else -((<int64_t>(-e)) << scale) - 1
    # log2 of the significand in [1, 2): |error| <= ~1 ulp (2**-53) of a value < 1,
    # so x is off by at most ~2**(scale-53); the margin below is 8192 times that.
    x = log2(ieee_significand(a)) * <double>(1 << scale)
    j = <int64_t>x
    fr = x - <double>j
    tol = <double>(1 << scale) * 9.094947017729282e-13   # 2**(scale - 40)
    if fr < tol or fr > 1.0 - tol:
        j = _exact_subindex(f, scale, <int64_t>(x + 0.5) if fr > 0.5 else j)
    if e >= 0:
        return (<int64_t>e << scale) + j
    return j - ((<int64_t>(-e)) << scale)


def index_of(double value, int scale):
    # Exact bucket index of |value| at `scale` (value finite and non-zero).
    if not (MIN_SCALE <= scale <= MAX_SCALE):
        raise ValueError("scale must be in [%d, %d], got %d" % (MIN_SCALE, MAX_SCALE, scale))
    if value == 0 or (ieee_bits(value) & IEEE_EXPONENT_MASK) == IEEE_EXPONENT_MASK:
        raise ValueError("value must be finite and non-zero, got %r" % value)
    return _map_index(-value if value < 0 else value, scale)


def _subindex_exact(double value, int scale):
    # Test hook: the exact (slow) sub-index path for |value|, bypassing the estimate.
    cdef uint64_t f = ieee_bits(value) & IEEE_FRACTION_MASK
    if not (1 <= scale <= MAX_SCALE) or f == 0 or (ieee_bits(value) & IEEE_EXPONENT_MASK) == 0:
        raise ValueError("needs a normal, non-power-of-two value and 1 <= scale <= 20")
    return _exact_subindex(f, scale, -1)


def _ieee_parts(double x):
    # Test hook: (exponent, fraction, significand, is_subnormal) as ieee754.pxd reads them.
    return ieee_exponent(x), ieee_fraction(x), ieee_significand(x), ieee_is_subnormal(x)


def exact_path_stats():
    # (exact-path calls, undecided results) since import.
    return _exact_calls, _exact_undecided


# ---------------------------------------------------------------------------
# bucket windows

cdef inline int _grown_cap(int64_t needed, int max_size) noexcept nogil:
    # the reference grows its backing list to the next power of two, capped at
    # max_size, and exports all of it: reproduce that length
    cdef int64_t c = 1
    while c < needed:
        c <<= 1
    return <int>(c if c < max_size else max_size)


cdef inline int _slot(ExpoSide *s, int64_t i, int max_size) noexcept nogil:
    cdef int64_t d = i - s.base
    if d < 0:
        d += max_size
    return <int>d


cdef inline void _place(ExpoSide *s, int64_t i, uint64_t n, int max_size) noexcept nogil:
    """Add n to bucket i, widening the window; the caller guarantees it fits."""
    cdef int64_t span
    if not s.used:
        s.used = True
        s.start = i
        s.end = i
        s.base = i
    elif i < s.start:
        span = s.end - i
        if span >= s.cap:
            s.cap = _grown_cap(span + 1, max_size)
        s.start = i
    elif i > s.end:
        span = i - s.start
        if span >= s.cap:
            s.cap = _grown_cap(span + 1, max_size)
        s.end = i
    s.counts[_slot(s, i, max_size)] += n


cdef void _add_side(ExpoSide *s, ExpoSide *o, int shift, int max_size, int o_max_size) noexcept nogil:
    """Add o's counts into s, o's indices lowered by shift scales; the caller made room."""
    cdef int64_t i
    cdef uint64_t n
    if not o.used:
        return
    for i in range(o.start, o.end + 1):
        n = o.counts[_slot(o, i, o_max_size)]
        if n:
            _place(s, _fshift(i, shift), n, max_size)


cdef inline void _reverse(uint64_t *a, int lo, int hi) noexcept nogil:
    cdef uint64_t t
    hi -= 1
    while lo < hi:
        t = a[lo]
        a[lo] = a[hi]
        a[hi] = t
        lo += 1
        hi -= 1


cdef void _downscale_side(ExpoSide *s, int change, int max_size) noexcept nogil:
    """Merge each 2**change adjacent buckets into one (indices shift right by change)."""
    cdef int p0, k, n, length
    cdef int64_t new_start
    if not s.used or change <= 0:
        return
    p0 = _slot(s, s.start, max_size)
    if p0 != 0:
        # rotate so that start sits at slot 0; then buckets only move left
        _reverse(s.counts, 0, p0)
        _reverse(s.counts, p0, max_size)
        _reverse(s.counts, 0, max_size)
    length = <int>(s.end - s.start + 1)
    new_start = _fshift(s.start, change)
    for k in range(length):
        n = <int>(_fshift(s.start + k, change) - new_start)
        if n != k:
            s.counts[n] += s.counts[k]
            s.counts[k] = 0
    s.start = new_start
    s.end = _fshift(s.end, change)
    s.base = new_start


cdef inline int _scale_change(int64_t low, int64_t high, int max_size) noexcept nogil:
    """How far to lower the scale so that [low, high] spans fewer than max_size buckets."""
    cdef int change = 0
    while high - low >= max_size:
        high = _fshift(high, 1)
        low = _fshift(low, 1)
        change += 1
    return change


cdef inline void _reset_side(ExpoSide *s, int max_size) noexcept nogil:
    memset(s.counts, 0, max_size * sizeof(uint64_t))
    s.start = 0
    s.end = 0
    s.base = 0
    s.cap = 1
    s.used = False


cdef list _bucket_list(ExpoSide *s, int max_size):
    cdef list out
    cdef int k
    cdef int64_t length
    if not s.used:
        return [0]
    length = s.end - s.start + 1
    out = [0] * s.cap
    for k in range(<int>length):
        out[k] = s.counts[_slot(s, s.start + k, max_size)]
    return out


# ---------------------------------------------------------------------------
# the cell

cdef inline void _bucket(ExpoHistogramCell c, double value) noexcept:
    """Count a finite value in zero_count or its bucket, downscaling first if needed."""
    cdef ExpoSide *s
    cdef int64_t i
    cdef int change
    if value == 0:
        c.zero_count += 1
        return
    if value > 0:
        s = &c.pos
    else:
        s = &c.neg
        value = -value
    i = _map_index(value, c.scale)
    if s.used:
        change = 0
        if i < s.start:
            if s.end - i >= c.max_size:
                change = _scale_change(i, s.end, c.max_size)
        elif i > s.end:
            if i - s.start >= c.max_size:
                change = _scale_change(s.start, i, c.max_size)
        if change:
            _downscale_side(&c.pos, change, c.max_size)
            _downscale_side(&c.neg, change, c.max_size)
            c.scale -= change
            i = _fshift(i, change)  # equals _map_index at the new scale: the mapping is exact
    _place(s, i, 1, c.max_size)

cdef class ExpoHistogramCell:
    # Aggregation state of one exponential-histogram series.
    #
    # ``record``/``record_int`` take finite values (the caller filters NaN and
    # infinities; they are ignored here too, as a safety net).  Zero counts in
    # ``zero_count``.  Subnormals are rounded up to the smallest normal value.
    # No allocation happens after construction.

    def __cinit__(self, int max_size=160, int max_scale=20, bint record_min_max=True):
        if max_size < MIN_MAX_SIZE or max_size > MAX_MAX_SIZE:
            raise ValueError("max_size must be in [%d, %d], got %d" % (MIN_MAX_SIZE, MAX_MAX_SIZE, max_size))
        if max_scale < MIN_SCALE or max_scale > MAX_SCALE:
            raise ValueError("max_scale must be in [%d, %d], got %d" % (MIN_SCALE, MAX_SCALE, max_scale))
        self._block = <uint64_t *>PyMem_Calloc(2 * <size_t>max_size, sizeof(uint64_t))
        if self._block == NULL:
            raise MemoryError()
        self.max_size = max_size
        self.max_scale = max_scale
        self.record_min_max = record_min_max
        self.pos.counts = self._block
        self.neg.counts = self._block + max_size
        self.reset()

    def __init__(self, int max_size=160, int max_scale=20, bint record_min_max=True):
        pass  # everything happens in __cinit__ (the counters must exist before any call)

    def __dealloc__(self):
        PyMem_Free(self._block)

    cdef void reset(self) noexcept:
        """Empty the cell for the next delta interval, back at max_scale.

        The reference builds a fresh aggregation per series after every delta
        collection, so its next interval also starts at max_scale.
        """
        _reset_side(&self.pos, self.max_size)
        _reset_side(&self.neg, self.max_size)
        self.scale = self.max_scale
        self.count = 0
        self.zero_count = 0
        self._isum = 0
        self._dsum = 0.0
        self._sum_is_float = False
        self._min = INFINITY
        self._max = -INFINITY
        self._imin = 0
        self._imax = 0
        self._min_is_int = False
        self._max_is_int = False

    cdef void record(self, double value) noexcept:
        if (ieee_bits(value) & IEEE_EXPONENT_MASK) == IEEE_EXPONENT_MASK:
            return
        self.count += 1
        # Python's int + float: the int sum converted once, then float adds
        sum_add_d(&self._isum, &self._dsum, &self._sum_is_float, value)
        if self.record_min_max:
            # Python's min()/max() keep the earlier object on ties
            if value < self._min:
                self._min = value
                self._min_is_int = False
            if value > self._max:
                self._max = value
                self._max_is_int = False
        _bucket(self, value)

    cdef void record_int(self, long long value) noexcept:
        cdef double d = <double>value
        self.count += 1
        sum_add_i(&self._isum, &self._dsum, &self._sum_is_float, value)    # a double past int64
        if self.record_min_max:
            # compared as doubles: exact for |value| <= 2**53
            if d < self._min:
                self._min = d
                self._imin = value
                self._min_is_int = True
            if d > self._max:
                self._max = d
                self._imax = value
                self._max_is_int = True
        _bucket(self, d)

    cdef void merge_from(self, ExpoHistogramCell other):
        """Add other's measurements to this cell, at the highest scale that fits both.

        Reproduces the reference's cumulative collection (running histogram +
        one delta interval), including the exported bucket_counts length: the
        first merge into a cell without buckets copies other's window as is.
        Other is left untouched.
        """
        cdef int target, change, shift, k
        cdef int64_t lo = 0, hi = -1, olo, ohi
        cdef ExpoSide *sides[2]
        cdef ExpoSide *osides[2]
        cdef ExpoSide *s
        cdef ExpoSide *o
        if other is None:
            return
        # numbers first; argument order as the reference: other's value wins ties
        if other._sum_is_float:
            sum_add_d(&self._isum, &self._dsum, &self._sum_is_float, other._dsum)
        else:
            sum_add_i(&self._isum, &self._dsum, &self._sum_is_float, other._isum)
        if not (self._min < other._min):
            self._min, self._imin, self._min_is_int = other._min, other._imin, other._min_is_int
        if not (self._max > other._max):
            self._max, self._imax, self._max_is_int = other._max, other._imax, other._max_is_int
        self.count += other.count
        self.zero_count += other.zero_count

        if not (other.pos.used or other.neg.used):
            return
        sides[0] = &self.pos
        sides[1] = &self.neg
        osides[0] = &other.pos
        osides[1] = &other.neg

        if not (self.pos.used or self.neg.used) and other.max_size <= self.max_size:
            # no buckets yet: take other's windows verbatim, scale included
            self.scale = other.scale
            for k in range(2):
                s = sides[k]
                o = osides[k]
                if o.used:
                    s.used = True
                    s.start = s.base = o.start
                    s.end = o.end
                    s.cap = o.cap
                    _add_side(s, o, 0, self.max_size, other.max_size)
            return

        target = self.scale if self.scale < other.scale else other.scale
        change = 0
        for k in range(2):
            s = sides[k]
            o = osides[k]
            if not (s.used or o.used):
                continue
            if s.used:
                lo = _fshift(s.start, self.scale - target)
                hi = _fshift(s.end, self.scale - target)
            if o.used:
                olo = _fshift(o.start, other.scale - target)
                ohi = _fshift(o.end, other.scale - target)
                if not s.used:
                    lo, hi = olo, ohi
                else:
                    lo = olo if olo < lo else lo
                    hi = ohi if ohi > hi else hi
            shift = _scale_change(lo, hi, self.max_size)
            if shift > change:
                change = shift
        target -= change
        if self.scale > target:
            _downscale_side(&self.pos, self.scale - target, self.max_size)
            _downscale_side(&self.neg, self.scale - target, self.max_size)
            self.scale = target
        for k in range(2):
            _add_side(sides[k], osides[k], other.scale - target, self.max_size, other.max_size)

    cdef object to_point(self, object attributes, object start_time_unix_nano,
                         object time_unix_nano, object exemplars):
        """The ExponentialHistogramDataPoint the reference exports for this state."""
        cdef ExponentialHistogramDataPoint p = ExponentialHistogramDataPoint.__new__(ExponentialHistogramDataPoint)
        cdef Buckets bp = Buckets.__new__(Buckets)
        cdef Buckets bn = Buckets.__new__(Buckets)
        bp.offset = self.pos.start if self.pos.used else 0
        bp.bucket_counts = _bucket_list(&self.pos, self.max_size)
        bn.offset = self.neg.start if self.neg.used else 0
        bn.bucket_counts = _bucket_list(&self.neg, self.max_size)
        # the stream storage hands its flat (k0, v0, k1, v1, ...) key; a dict or None also works
        if type(attributes) is tuple:
            p._flat_attributes = attributes
        else:
            p._attributes = attributes
        p.start_time_unix_nano = start_time_unix_nano
        p.time_unix_nano = time_unix_nano
        p.count = self.count
        # explicit branches: a C conditional expression would coerce the int to double
        if self._sum_is_float:
            p.sum = self._dsum
        else:
            p.sum = self._isum
        # only zeros so far: the reference reports scale 0 (no bucket to describe)
        p.scale = 0 if (self.count != 0 and self.count == self.zero_count) else self.scale
        p.zero_count = self.zero_count
        p.positive = bp
        p.negative = bn
        p.flags = 0
        if self._min_is_int:
            p.min = self._imin
        else:
            p.min = self._min
        if self._max_is_int:
            p.max = self._imax
        else:
            p.max = self._max
        p.exemplars = list(exemplars) if exemplars is not None else []
        return p

    # -- Python-level hooks for tests and tooling ---------------------------

    def py_record(self, value):
        # record() for floats, record_int() for ints (as the SDK would dispatch).
        if isinstance(value, int):
            self.record_int(value)
        else:
            self.record(value)

    def py_point(self, attributes=None, start_time_unix_nano=0, time_unix_nano=0, exemplars=()):
        return self.to_point(attributes, start_time_unix_nano, time_unix_nano, exemplars)

    def py_merge(self, ExpoHistogramCell other):
        self.merge_from(other)

    def py_reset(self):
        self.reset()
