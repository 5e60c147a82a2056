# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The C loop of the trace parser: bytes in, columns out.

`Parser.feed(buf)` parses every complete line of `buf` (up to its last
newline) and returns how many bytes it consumed; `Parser.feed(buf, final=True)`
also parses a last line without a newline.  One pass over each line, no
Python object per line: the header (comm, tid, [cpu], optional latency flags,
timestamp, event name) is read left to right except the comm/tid pair, which
is read backwards from the `[cpu]` bracket (a comm may hold spaces and '-').
Strings (cache names, call sites, comms, cgroups, other event names, symbolic
gfp strings) are interned by a hash of their byte span into
open-addressing tables; only a gfp string never seen before calls back into
Python (`decode_gfp`) to be decoded.

`slubcy.trace.parse` drives it over a file in chunks; see DESIGN.md §"Trace
layer" for the formats and the columns.
"""
from libc.stdint cimport uint8_t, int8_t, int16_t, int32_t, int64_t, uint64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcmp, memcpy, memchr

cimport numpy as cnp
import numpy as np

cnp.import_array()

# event codes (the `event` column)
cdef enum:
    EV_KMALLOC = 0
    EV_KFREE = 1
    EV_KMEM_CACHE_ALLOC = 2
    EV_KMEM_CACHE_FREE = 3

KMALLOC = EV_KMALLOC
KFREE = EV_KFREE
KMEM_CACHE_ALLOC = EV_KMEM_CACHE_ALLOC
KMEM_CACHE_FREE = EV_KMEM_CACHE_FREE
EVENT_NAMES = ("kmalloc", "kfree", "kmem_cache_alloc", "kmem_cache_free")

# gfp_kind column
cdef enum:
    GK_ABSENT = 0
    GK_SYMBOLIC = 1
    GK_HEX = 2
    GK_PARTIAL = 3

GFP_ABSENT = GK_ABSENT
GFP_SYMBOLIC = GK_SYMBOLIC
GFP_HEX = GK_HEX
GFP_PARTIAL = GK_PARTIAL

# parse_line results
cdef enum:
    L_EVENT = 0
    L_BLANK = 1         # empty or '#' comment
    L_NOHEADER = 2      # no "[cpu] ts: event:" header
    L_OTHER = 3         # another event (sched:..., kmem:mm_page_alloc, ...)
    L_BAD = 4           # a kmem event whose fields do not parse

# field bits seen on one line
cdef enum:
    F_CALL_SITE = 1
    F_PTR = 2
    F_BYTES_REQ = 4
    F_BYTES_ALLOC = 8
    F_GFP = 16
    F_NODE = 32
    F_ACCOUNTED = 64
    F_NAME = 128

# feature counters (Parser.features, in this order)
FEATURES = ("perf_prefix", "flags_column", "padded_event", "failed_to_parse",
            "ptr_0x", "ptr_hashed_like", "ptr_kernel_like", "call_site_symbolic",
            "call_site_hex", "gfp_symbolic", "gfp_hex", "gfp_unknown_names",
            "name_on_alloc", "name_on_free", "accounted_field", "node_field",
            "node_events", "null_frees", "null_allocs", "cgroup", "tgid_column",
            "pid_tid")
cdef enum:
    FT_PERF_PREFIX = 0
    FT_FLAGS_COLUMN
    FT_PADDED_EVENT
    FT_FAILED_TO_PARSE
    FT_PTR_0X
    FT_PTR_HASHED
    FT_PTR_KERNEL
    FT_CS_SYMBOLIC
    FT_CS_HEX
    FT_GFP_SYMBOLIC
    FT_GFP_HEX
    FT_GFP_UNKNOWN
    FT_NAME_ON_ALLOC
    FT_NAME_ON_FREE
    FT_ACCOUNTED_FIELD
    FT_NODE_FIELD
    FT_NODE_EVENTS
    FT_NULL_FREES
    FT_NULL_ALLOCS
    FT_CGROUP
    FT_TGID
    FT_PID_TID
    N_FEATURES


# ---------------------------------------------------------------- interning

cdef struct Interner:
    int32_t *slots          # id, or -1: a power-of-two table
    uint64_t mask
    uint64_t *hashes        # per id
    int64_t *offs           # per id + 1: [offs[i], offs[i+1]) in arena
    int64_t *counts         # uses per id
    char *arena
    int64_t arena_len
    int64_t arena_cap
    int32_t n
    int32_t ids_cap


cdef inline uint64_t hash_span(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    """A multiply-xorshift hash over 8-byte words (interning only: not
    seeded, not for untrusted-collision resistance)."""
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ <uint64_t>n
    cdef uint64_t w
    while n >= 8:
        memcpy(&w, s, 8)
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL
        h ^= h >> 31
        s += 8
        n -= 8
    if n > 0:
        w = 0
        memcpy(&w, s, n)
        h = (h ^ w) * 0x94D049BB133111EBULL
    h ^= h >> 29
    h *= 0xBF58476D1CE4E5B9ULL
    h ^= h >> 32
    return h


cdef int interner_init(Interner *t) noexcept nogil:
    cdef uint64_t cap = 1024
    t.slots = <int32_t *>malloc(cap * sizeof(int32_t))
    t.mask = cap - 1
    t.ids_cap = 256
    t.hashes = <uint64_t *>malloc(t.ids_cap * sizeof(uint64_t))
    t.offs = <int64_t *>malloc((t.ids_cap + 1) * sizeof(int64_t))
    t.counts = <int64_t *>calloc(t.ids_cap, sizeof(int64_t))
    t.arena_cap = 16384
    t.arena = <char *>malloc(t.arena_cap)
    t.arena_len = 0
    t.n = 0
    if t.slots == NULL or t.hashes == NULL or t.offs == NULL or t.counts == NULL or t.arena == NULL:
        return -1
    cdef uint64_t i
    for i in range(cap):
        t.slots[i] = -1
    t.offs[0] = 0
    return 0


cdef void interner_free(Interner *t) noexcept nogil:
    free(t.slots); free(t.hashes); free(t.offs); free(t.counts); free(t.arena)
    t.slots = NULL; t.hashes = NULL; t.offs = NULL; t.counts = NULL; t.arena = NULL


cdef int interner_rehash(Interner *t) noexcept nogil:
    cdef uint64_t cap = (t.mask + 1) * 2, j
    cdef int32_t *slots = <int32_t *>malloc(cap * sizeof(int32_t))
    if slots == NULL:
        return -1
    for j in range(cap):
        slots[j] = -1
    cdef int32_t i
    for i in range(t.n):
        j = t.hashes[i] & (cap - 1)
        while slots[j] != -1:
            j = (j + 1) & (cap - 1)
        slots[j] = i
    free(t.slots)
    t.slots = slots
    t.mask = cap - 1
    return 0


cdef int32_t intern(Interner *t, const unsigned char *s, Py_ssize_t n) noexcept nogil:
    """The id of the span [s, s+n), added if new; -2 when out of memory."""
    cdef uint64_t h = hash_span(s, n)
    cdef uint64_t j = h & t.mask
    cdef int32_t i
    while True:
        i = t.slots[j]
        if i == -1:
            break
        if t.hashes[i] == h and t.offs[i + 1] - t.offs[i] == n and \
                memcmp(t.arena + t.offs[i], s, n) == 0:
            t.counts[i] += 1
            return i
        j = (j + 1) & t.mask
    # new
    if t.n == t.ids_cap:
        t.ids_cap *= 2
        t.hashes = <uint64_t *>realloc(t.hashes, t.ids_cap * sizeof(uint64_t))
        t.offs = <int64_t *>realloc(t.offs, (t.ids_cap + 1) * sizeof(int64_t))
        t.counts = <int64_t *>realloc(t.counts, t.ids_cap * sizeof(int64_t))
        if t.hashes == NULL or t.offs == NULL or t.counts == NULL:
            return -2
    while t.arena_len + n > t.arena_cap:
        t.arena_cap *= 2
        t.arena = <char *>realloc(t.arena, t.arena_cap)
        if t.arena == NULL:
            return -2
    memcpy(t.arena + t.arena_len, s, n)
    t.arena_len += n
    i = t.n
    t.n += 1
    t.hashes[i] = h
    t.offs[i + 1] = t.arena_len
    t.counts[i] = 1
    t.slots[j] = i
    if <uint64_t>t.n * 2 > t.mask + 1:
        if interner_rehash(t) != 0:
            return -2
    return i


cdef list interner_strings(Interner *t):
    cdef int32_t i
    return [t.arena[t.offs[i]:t.offs[i + 1]].decode("utf-8", "replace") for i in range(t.n)]


cdef list interner_counts(Interner *t):
    cdef int32_t i
    return [t.counts[i] for i in range(t.n)]


# ---------------------------------------------------------------- lexing helpers

cdef inline bint is_space(unsigned char c) noexcept nogil:
    return c == c' ' or c == c'\t'


cdef inline bint is_digit(unsigned char c) noexcept nogil:
    return c >= c'0' and c <= c'9'


cdef inline int hexval(unsigned char c) noexcept nogil:
    if c >= c'0' and c <= c'9':
        return c - c'0'
    if c >= c'a' and c <= c'f':
        return c - c'a' + 10
    if c >= c'A' and c <= c'F':
        return c - c'A' + 10
    return -1


cdef inline int parse_hex(const unsigned char *s, Py_ssize_t n, uint64_t *out) noexcept nogil:
    """[0x]hex, 1-16 digits: 0 ok, -1 not."""
    cdef Py_ssize_t i = 0
    cdef uint64_t v = 0
    cdef int d
    if n >= 2 and s[0] == c'0' and (s[1] == c'x' or s[1] == c'X'):
        i = 2
    if n - i < 1 or n - i > 16:
        return -1
    while i < n:
        d = hexval(s[i])
        if d < 0:
            return -1
        v = (v << 4) | <uint64_t>d
        i += 1
    out[0] = v
    return 0


cdef inline int parse_dec(const unsigned char *s, Py_ssize_t n, int64_t *out) noexcept nogil:
    """[-]decimal, at most 18 digits: 0 ok, -1 not."""
    cdef Py_ssize_t i = 0
    cdef int64_t v = 0
    cdef bint neg = False
    if n > 0 and s[0] == c'-':
        neg = True
        i = 1
    if n - i < 1 or n - i > 18:
        return -1
    while i < n:
        if not is_digit(s[i]):
            return -1
        v = v * 10 + (s[i] - c'0')
        i += 1
    out[0] = -v if neg else v
    return 0


cdef inline bint eq(const unsigned char *s, Py_ssize_t n, const char *lit, Py_ssize_t m) noexcept nogil:
    return n == m and memcmp(s, lit, m) == 0


# ---------------------------------------------------------------- the parser

cdef struct Row:
    int64_t ts_ns
    uint64_t ptr
    uint64_t gfp
    int32_t tid
    int32_t bytes_req
    int32_t bytes_alloc
    int32_t name
    int32_t call_site
    int32_t comm
    int32_t cgroup
    int16_t cpu
    int16_t node
    uint8_t event
    uint8_t gfp_kind
    int8_t accounted


COLUMNS = (
    ("event", np.uint8), ("cpu", np.int16), ("tid", np.int32), ("ts_ns", np.int64),
    ("ptr", np.uint64), ("bytes_req", np.int32), ("bytes_alloc", np.int32),
    ("gfp", np.uint64), ("gfp_kind", np.uint8), ("accounted", np.int8), ("node", np.int16),
    ("name", np.int32), ("call_site", np.int32), ("comm", np.int32), ("cgroup", np.int32),
    ("line", np.int64),
)


cdef class Parser:
    """Incremental parser; see the module docstring.  `decode_gfp(bytes) ->
    (bits, all_known)` decodes a symbolic gfp string (called once per
    distinct string)."""
    cdef Interner t_name, t_call_site, t_comm, t_cgroup, t_other, t_gfp
    cdef uint64_t *gfp_bits
    cdef uint8_t *gfp_known
    cdef int32_t gfp_cap
    cdef object decode_gfp
    # columns
    cdef public dict arrays
    cdef Py_ssize_t cap
    cdef public Py_ssize_t n
    cdef uint8_t *c_event
    cdef int16_t *c_cpu
    cdef int32_t *c_tid
    cdef int64_t *c_ts
    cdef uint64_t *c_ptr
    cdef int32_t *c_req
    cdef int32_t *c_alloc
    cdef uint64_t *c_gfp
    cdef uint8_t *c_gfpk
    cdef int8_t *c_acc
    cdef int16_t *c_node
    cdef int32_t *c_name
    cdef int32_t *c_cs
    cdef int32_t *c_comm
    cdef int32_t *c_cg
    cdef int64_t *c_line
    # counters
    cdef public int64_t lines, blank, preamble, other, bad, events_seen
    cdef public int64_t last_bad_line
    cdef int64_t feat[N_FEATURES]
    cdef int64_t ev_count[4]
    cdef public int16_t max_cpu
    cdef public int64_t ts_min, ts_max
    cdef public list bad_examples
    cdef public int max_examples
    cdef public bint strict
    cdef bint oom
    cdef unsigned char last_comm[64]
    cdef Py_ssize_t last_comm_len
    cdef int32_t last_comm_id

    def __cinit__(self):
        if (interner_init(&self.t_name) | interner_init(&self.t_call_site)
                | interner_init(&self.t_comm) | interner_init(&self.t_cgroup)
                | interner_init(&self.t_other) | interner_init(&self.t_gfp)) != 0:
            raise MemoryError()
        self.gfp_cap = 64
        self.gfp_bits = <uint64_t *>malloc(self.gfp_cap * sizeof(uint64_t))
        self.gfp_known = <uint8_t *>malloc(self.gfp_cap)
        if self.gfp_bits == NULL or self.gfp_known == NULL:
            raise MemoryError()

    def __init__(self, decode_gfp, strict=False, max_examples=10, capacity=1 << 16):
        self.decode_gfp = decode_gfp
        self.strict = strict
        self.max_examples = max_examples
        self.bad_examples = []
        self.arrays = {}
        self.n = 0
        self.cap = 0
        self.max_cpu = -1
        self.ts_min = 0
        self.ts_max = 0
        self.last_bad_line = 0
        self.last_comm_len = -1
        self.last_comm_id = -1
        self._grow(max(int(capacity), 16))

    def __dealloc__(self):
        interner_free(&self.t_name)
        interner_free(&self.t_call_site)
        interner_free(&self.t_comm)
        interner_free(&self.t_cgroup)
        interner_free(&self.t_other)
        interner_free(&self.t_gfp)
        free(self.gfp_bits)
        free(self.gfp_known)

    cdef int _grow(self, Py_ssize_t cap) except -1:
        cdef dict new = {}
        for name, dt in COLUMNS:
            a = np.empty(cap, dtype=dt)
            if self.n:
                a[:self.n] = self.arrays[name][:self.n]
            new[name] = a
        self.arrays = new
        self.cap = cap
        self.c_event = <uint8_t *>cnp.PyArray_DATA(new["event"])
        self.c_cpu = <int16_t *>cnp.PyArray_DATA(new["cpu"])
        self.c_tid = <int32_t *>cnp.PyArray_DATA(new["tid"])
        self.c_ts = <int64_t *>cnp.PyArray_DATA(new["ts_ns"])
        self.c_ptr = <uint64_t *>cnp.PyArray_DATA(new["ptr"])
        self.c_req = <int32_t *>cnp.PyArray_DATA(new["bytes_req"])
        self.c_alloc = <int32_t *>cnp.PyArray_DATA(new["bytes_alloc"])
        self.c_gfp = <uint64_t *>cnp.PyArray_DATA(new["gfp"])
        self.c_gfpk = <uint8_t *>cnp.PyArray_DATA(new["gfp_kind"])
        self.c_acc = <int8_t *>cnp.PyArray_DATA(new["accounted"])
        self.c_node = <int16_t *>cnp.PyArray_DATA(new["node"])
        self.c_name = <int32_t *>cnp.PyArray_DATA(new["name"])
        self.c_cs = <int32_t *>cnp.PyArray_DATA(new["call_site"])
        self.c_comm = <int32_t *>cnp.PyArray_DATA(new["comm"])
        self.c_cg = <int32_t *>cnp.PyArray_DATA(new["cgroup"])
        self.c_line = <int64_t *>cnp.PyArray_DATA(new["line"])
        return 0

    cdef int _gfp_symbolic(self, const unsigned char *v, Py_ssize_t vn, Row *row) except -1:
        cdef int32_t before = self.t_gfp.n
        cdef int32_t gid = intern(&self.t_gfp, v, vn)
        if gid < 0:
            raise MemoryError()
        if gid >= before:       # a new string: decode it once, in Python
            if gid >= self.gfp_cap:
                self.gfp_cap *= 2
                self.gfp_bits = <uint64_t *>realloc(self.gfp_bits, self.gfp_cap * sizeof(uint64_t))
                self.gfp_known = <uint8_t *>realloc(self.gfp_known, self.gfp_cap)
                if self.gfp_bits == NULL or self.gfp_known == NULL:
                    raise MemoryError()
            bits, known = self.decode_gfp(bytes(v[:vn]))
            self.gfp_bits[gid] = bits
            self.gfp_known[gid] = 1 if known else 0
        row.gfp = self.gfp_bits[gid]
        if self.gfp_known[gid]:
            row.gfp_kind = GK_SYMBOLIC
        else:
            row.gfp_kind = GK_PARTIAL
            self.feat[FT_GFP_UNKNOWN] += 1
        self.feat[FT_GFP_SYMBOLIC] += 1
        return 0

    cdef int _parse_line(self, const unsigned char *p, const unsigned char *e, Row *row) except -1:
        cdef const unsigned char *q
        cdef const unsigned char *r
        cdef const unsigned char *s
        cdef const unsigned char *t
        cdef const unsigned char *v
        cdef const unsigned char *ev
        cdef Py_ssize_t vn, n
        cdef int64_t x, secs, frac
        cdef uint64_t u
        cdef int fields = 0, ndig, cpu, evcode, is_node = 0
        cdef const unsigned char *comm_end
        # trailing \r, leading blanks
        while e > p and ((e - 1)[0] == c'\r' or is_space((e - 1)[0])):
            e -= 1
        while p < e and is_space(p[0]):
            p += 1
        if p == e or p[0] == c'#':
            return L_BLANK
        # the "[cpu]" bracket: '[' after a blank, digits, ']'
        q = p
        while True:
            q = <const unsigned char *>memchr(q, c'[', e - q)
            if q == NULL:
                return L_NOHEADER
            r = q + 1
            while r < e and is_digit(r[0]):
                r += 1
            if r > q + 1 and r < e and r[0] == c']' and q > p and is_space((q - 1)[0]) and r - q <= 6:
                break
            q += 1
        cpu = 0
        s = q + 1
        while s < r:
            cpu = cpu * 10 + (s[0] - c'0')
            s += 1
        # before the bracket: "comm tid", "comm pid/tid", "comm-pid", "comm-pid (tgid)"
        t = q
        while t > p and is_space((t - 1)[0]):
            t -= 1
        if t > p and (t - 1)[0] == c')':
            s = t - 1
            while s > p and s[0] != c'(':
                s -= 1
            if s[0] != c'(':
                return L_NOHEADER
            self.feat[FT_TGID] += 1
            t = s
            while t > p and is_space((t - 1)[0]):
                t -= 1
        s = t
        while s > p and is_digit((s - 1)[0]):
            s -= 1
        if s == t or t - s > 9:
            return L_NOHEADER
        x = 0
        v = s
        while v < t:
            x = x * 10 + (v[0] - c'0')
            v += 1
        row.tid = <int32_t>x
        if s > p and (s - 1)[0] == c'/':          # perf -F +pid: "pid/tid"
            self.feat[FT_PID_TID] += 1
            s -= 1
            while s > p and is_digit((s - 1)[0]):
                s -= 1
        if s > p and ((s - 1)[0] == c'-' or is_space((s - 1)[0])):
            s -= 1
        elif s > p:
            return L_NOHEADER
        while s > p and is_space((s - 1)[0]):
            s -= 1
        comm_end = s                            # the comm is [p, comm_end)
        # after the bracket: [flags] secs[.frac]: event: fields
        s = r + 1
        while s < e and is_space(s[0]):
            s += 1
        if s < e and not is_digit(s[0]):      # latency flags, e.g. "d..1." or "...."
            while s < e and not is_space(s[0]):
                s += 1
            while s < e and is_space(s[0]):
                s += 1
            self.feat[FT_FLAGS_COLUMN] += 1
        secs = 0
        ndig = 0
        while s < e and is_digit(s[0]) and ndig < 12:
            secs = secs * 10 + (s[0] - c'0')
            s += 1
            ndig += 1
        if ndig == 0:
            return L_NOHEADER
        frac = 0
        if s < e and s[0] == c'.':
            s += 1
            ndig = 0
            while s < e and is_digit(s[0]):
                if ndig < 9:
                    frac = frac * 10 + (s[0] - c'0')
                ndig += 1
                s += 1
            while ndig < 9:
                frac *= 10
                ndig += 1
            row.ts_ns = secs * 1000000000 + frac
        else:
            row.ts_ns = secs            # a counter clock: raw ticks
        if s >= e or s[0] != c':':
            return L_NOHEADER
        s += 1
        while s < e and is_space(s[0]):
            s += 1
        # event token: up to a blank (or the line's end), ending in ':'
        ev = s
        while s < e and not is_space(s[0]):
            s += 1
        if s - ev < 2 or (s - 1)[0] != c':':
            return L_NOHEADER
        t = s - 1                               # the ':' ending the token
        v = ev
        while v < t and v[0] != c':':
            v += 1
        if v < t:                               # "system:event"
            if not eq(ev, v - ev, "kmem", 4):
                self._other(v + 1, t - v - 1)
                return L_OTHER
            ev = v + 1
            self.feat[FT_PERF_PREFIX] += 1
        n = t - ev
        if eq(ev, n, "kmalloc", 7):
            evcode = EV_KMALLOC
        elif eq(ev, n, "kfree", 5):
            evcode = EV_KFREE
        elif eq(ev, n, "kmem_cache_alloc", 16):
            evcode = EV_KMEM_CACHE_ALLOC
        elif eq(ev, n, "kmem_cache_free", 15):
            evcode = EV_KMEM_CACHE_FREE
        elif eq(ev, n, "kmalloc_node", 12):
            evcode = EV_KMALLOC
            is_node = 1
        elif eq(ev, n, "kmem_cache_alloc_node", 21):
            evcode = EV_KMEM_CACHE_ALLOC
            is_node = 1
        else:
            self._other(ev, n)
            return L_OTHER
        if e - s >= 2 and is_space(s[0]) and is_space(s[1]):
            self.feat[FT_PADDED_EVENT] += 1
        while s < e and is_space(s[0]):
            s += 1
        if e - s >= 17 and memcmp(s, b"[FAILED TO PARSE]", 17) == 0:
            self.feat[FT_FAILED_TO_PARSE] += 1
            s += 17
        n = comm_end - p
        if n == self.last_comm_len and n <= 64 and memcmp(p, self.last_comm, n) == 0:
            row.comm = self.last_comm_id        # runs of one task: skip the hash
            self.t_comm.counts[row.comm] += 1
        else:
            row.comm = intern(&self.t_comm, p, n)
            if n <= 64 and row.comm >= 0:
                memcpy(self.last_comm, p, n)
                self.last_comm_len = n
                self.last_comm_id = row.comm
        # fields
        row.event = <uint8_t>evcode
        row.cpu = <int16_t>cpu
        row.ptr = 0
        row.bytes_req = -1
        row.bytes_alloc = -1
        row.gfp = 0
        row.gfp_kind = GK_ABSENT
        row.accounted = -1
        row.node = -1
        row.name = -1
        row.call_site = -1
        row.cgroup = -1
        cdef const unsigned char *k
        cdef Py_ssize_t kn
        while True:
            while s < e and is_space(s[0]):
                s += 1
            if s >= e:
                break
            k = s
            while s < e and not is_space(s[0]) and s[0] != c'=':
                s += 1
            if s >= e or s[0] != c'=':
                # a token without '=': perf -F +cgroup puts the cgroup first
                while s < e and not is_space(s[0]):
                    s += 1
                # (first, or last as perf 6.2+ prints it: " %s" after the fields)
                if row.cgroup == -1 and (k[0] == c'/' or eq(k, s - k, "unknown", 7)):
                    row.cgroup = intern(&self.t_cgroup, k, s - k)
                    self.feat[FT_CGROUP] += 1
                    continue
                return L_BAD
            kn = s - k
            s += 1
            if kn == 3 and s < e and is_space(s[0]) and memcmp(k, b"ptr", 3) == 0:
                # 4.15-4.19 vsprintf: NULL as "(null)" right-aligned in 16 columns
                while s < e and is_space(s[0]):
                    s += 1
            v = s
            while s < e and not is_space(s[0]):
                s += 1
            vn = s - v
            if kn == 3 and memcmp(k, b"ptr", 3) == 0:
                if eq(v, vn, "(nil)", 5) or eq(v, vn, "(null)", 6):
                    u = 0
                elif parse_hex(v, vn, &u) != 0:
                    return L_BAD
                elif vn >= 2 and v[1] == c'x':
                    self.feat[FT_PTR_0X] += 1
                    if u >> 48 == 0xffff:
                        self.feat[FT_PTR_KERNEL] += 1
                elif u != 0 and u >> 32 == 0 and vn == 16:
                    self.feat[FT_PTR_HASHED] += 1
                elif u >> 48 == 0xffff:
                    self.feat[FT_PTR_KERNEL] += 1
                row.ptr = u
                fields |= F_PTR
            elif kn == 9 and memcmp(k, b"call_site", 9) == 0:
                if vn == 0:
                    return L_BAD
                if parse_hex(v, vn, &u) == 0:
                    self.feat[FT_CS_HEX] += 1
                else:
                    self.feat[FT_CS_SYMBOLIC] += 1
                row.call_site = intern(&self.t_call_site, v, vn)
                fields |= F_CALL_SITE
            elif kn == 9 and memcmp(k, b"bytes_req", 9) == 0:
                if parse_dec(v, vn, &x) != 0 or x < 0 or x > 0x7fffffff:
                    return L_BAD
                row.bytes_req = <int32_t>x
                fields |= F_BYTES_REQ
            elif kn == 11 and memcmp(k, b"bytes_alloc", 11) == 0:
                if parse_dec(v, vn, &x) != 0 or x < 0 or x > 0x7fffffff:
                    return L_BAD
                row.bytes_alloc = <int32_t>x
                fields |= F_BYTES_ALLOC
            elif kn == 9 and memcmp(k, b"gfp_flags", 9) == 0:
                if vn == 0:
                    return L_BAD
                if vn >= 2 and v[0] == c'0' and (v[1] == c'x' or v[1] == c'X'):
                    if parse_hex(v, vn, &u) != 0:
                        return L_BAD
                    row.gfp = u
                    row.gfp_kind = GK_HEX
                    self.feat[FT_GFP_HEX] += 1
                elif is_digit(v[0]) or (hexval(v[0]) >= 0 and parse_hex(v, vn, &u) == 0):
                    # bare hex (a raw field): the kernel never prints gfp in decimal
                    if parse_hex(v, vn, &u) != 0:
                        return L_BAD
                    row.gfp = u
                    row.gfp_kind = GK_HEX
                    self.feat[FT_GFP_HEX] += 1
                else:
                    self._gfp_symbolic(v, vn, row)
                fields |= F_GFP
            elif kn == 4 and memcmp(k, b"node", 4) == 0:
                if parse_dec(v, vn, &x) != 0 or x < -1 or x > 32767:
                    return L_BAD
                row.node = <int16_t>x
                fields |= F_NODE
            elif kn == 9 and memcmp(k, b"accounted", 9) == 0:
                if eq(v, vn, "true", 4) or eq(v, vn, "1", 1):
                    row.accounted = 1
                elif eq(v, vn, "false", 5) or eq(v, vn, "0", 1):
                    row.accounted = 0
                else:
                    return L_BAD
                fields |= F_ACCOUNTED
            elif kn == 4 and memcmp(k, b"name", 4) == 0:
                if vn == 0:
                    return L_BAD
                row.name = intern(&self.t_name, v, vn)
                fields |= F_NAME
            # other key=value pairs: ignored (a later kernel's field)
        # the required fields of each event, every generation
        if evcode == EV_KMALLOC or evcode == EV_KMEM_CACHE_ALLOC:
            if (fields & (F_CALL_SITE | F_PTR | F_BYTES_REQ | F_BYTES_ALLOC | F_GFP)) != \
                    (F_CALL_SITE | F_PTR | F_BYTES_REQ | F_BYTES_ALLOC | F_GFP):
                return L_BAD
            if row.ptr == 0:
                self.feat[FT_NULL_ALLOCS] += 1
            if evcode == EV_KMEM_CACHE_ALLOC and fields & F_NAME:
                self.feat[FT_NAME_ON_ALLOC] += 1
            if fields & F_ACCOUNTED:
                self.feat[FT_ACCOUNTED_FIELD] += 1
            if is_node:
                self.feat[FT_NODE_EVENTS] += 1
            elif fields & F_NODE:
                self.feat[FT_NODE_FIELD] += 1
        else:
            if (fields & (F_CALL_SITE | F_PTR)) != (F_CALL_SITE | F_PTR):
                return L_BAD
            if row.ptr == 0:
                self.feat[FT_NULL_FREES] += 1
            if evcode == EV_KMEM_CACHE_FREE and fields & F_NAME:
                self.feat[FT_NAME_ON_FREE] += 1
        if row.comm < 0 or row.call_site == -2 or row.name == -2 or row.cgroup == -2:
            raise MemoryError()
        return L_EVENT

    cdef void _other(self, const unsigned char *s, Py_ssize_t n) noexcept:
        intern(&self.t_other, s, n)

    def feed(self, const unsigned char[::1] buf not None, bint final=False):
        """Parse the complete lines of buf; return the bytes consumed.  With
        final, a last line without a newline is parsed too."""
        cdef const unsigned char *base = &buf[0] if buf.shape[0] else NULL
        cdef Py_ssize_t size = buf.shape[0]
        cdef const unsigned char *p = base
        cdef const unsigned char *end = base + size
        cdef const unsigned char *nl
        cdef const unsigned char *le
        cdef Row row
        cdef int res
        cdef Py_ssize_t i
        if size == 0:
            return 0
        while p < end:
            nl = <const unsigned char *>memchr(p, c'\n', end - p)
            if nl == NULL:
                if not final:
                    break
                le = end
            else:
                le = nl
            self.lines += 1
            res = self._parse_line(p, le, &row)
            if res == L_EVENT:
                if self.n == self.cap:
                    self._grow(max(self.cap * 2, 16))
                i = self.n
                self.c_event[i] = row.event
                self.c_cpu[i] = row.cpu
                self.c_tid[i] = row.tid
                self.c_ts[i] = row.ts_ns
                self.c_ptr[i] = row.ptr
                self.c_req[i] = row.bytes_req
                self.c_alloc[i] = row.bytes_alloc
                self.c_gfp[i] = row.gfp
                self.c_gfpk[i] = row.gfp_kind
                self.c_acc[i] = row.accounted
                self.c_node[i] = row.node
                self.c_name[i] = row.name
                self.c_cs[i] = row.call_site
                self.c_comm[i] = row.comm
                self.c_cg[i] = row.cgroup
                self.c_line[i] = self.lines
                self.n = i + 1
                self.ev_count[row.event] += 1
                if row.cpu > self.max_cpu:
                    self.max_cpu = row.cpu
                if self.events_seen == 0 or row.ts_ns < self.ts_min:
                    self.ts_min = row.ts_ns
                if row.ts_ns > self.ts_max:
                    self.ts_max = row.ts_ns
                self.events_seen += 1
            elif res == L_BLANK:
                self.blank += 1
            elif res == L_OTHER:
                self.other += 1
                self.events_seen += 1
            elif res == L_NOHEADER and self.events_seen == 0:
                self.preamble += 1
            else:
                self._bad(p, le)
            if nl == NULL:
                p = end
                break
            p = nl + 1
        return p - base

    cdef void _bad(self, const unsigned char *p, const unsigned char *le) except *:
        self.bad += 1
        self.last_bad_line = self.lines
        if len(self.bad_examples) < self.max_examples:
            self.bad_examples.append((self.lines, bytes(p[:le - p]).decode("utf-8", "replace")))
        if self.strict:
            raise ValueError(f"line {self.lines}: not a parseable event line: "
                             f"{bytes(p[:min(le - p, 200)]).decode('utf-8', 'replace')!r}")

    def event_counts(self):
        return [self.ev_count[i] for i in range(4)]

    def features(self):
        return {name: self.feat[i] for i, name in enumerate(FEATURES)}

    def strings(self):
        """The string tables: {column: [str by id]} plus 'other_events' and
        their use counts."""
        return {"name": interner_strings(&self.t_name),
                "call_site": interner_strings(&self.t_call_site),
                "comm": interner_strings(&self.t_comm),
                "cgroup": interner_strings(&self.t_cgroup)}

    def string_counts(self):
        return {"name": interner_counts(&self.t_name),
                "call_site": interner_counts(&self.t_call_site),
                "comm": interner_counts(&self.t_comm),
                "cgroup": interner_counts(&self.t_cgroup)}

    def other_events(self):
        return dict(zip(interner_strings(&self.t_other), interner_counts(&self.t_other)))

    def gfp_strings(self):
        return dict(zip(interner_strings(&self.t_gfp), interner_counts(&self.t_gfp)))

    def take_arrays(self):
        """The columns, trimmed to the rows parsed (the parser is done)."""
        out = {}
        for name, dt in COLUMNS:
            a = self.arrays[name]
            a.resize(self.n, refcheck=False)
            out[name] = a
        self.arrays = {}
        self.cap = 0
        self.n = 0
        return out
