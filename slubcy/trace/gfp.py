"""Symbolic gfp_flags -> bits.

The kernel prints gfp_flags through show_gfp_flags() (include/trace/events/
mmflags.h): composite names first (GFP_KERNEL_ACCOUNT, GFP_KERNEL, ...), then
the __GFP_* bits left over, joined by '|', or "none" for 0.  The names are
decoded here to the bit layout of include/linux/gfp_types.h as of 6.x, which
is also that of 4.15-5.19's include/linux/gfp.h for every bit used below
(bit 9, ___GFP_ATOMIC, was removed in 6.4 and left unused).  The one bit
that matters to the trace layer, ___GFP_ACCOUNT, is 0x400000 in every kernel
from 4.15 on (it was 0x100000 in 4.5-4.14): a hex gfp_flags is therefore
only read for __GFP_ACCOUNT when the trace is from 5.4 or later (symbolic
call sites), see parse.derive_accounted.

Names of older kernels (__GFP_WAIT, __GFP_COLD, __GFP_REPEAT, __GFP_NOTRACK,
GFP_TEMPORARY, ..., and the underscore-less "GFP_ZERO" style of 2.6) are
known: mapped to their modern equivalent, or to no bit when there is none.
"""

B = {name: 1 << bit for name, bit in (
    ("DMA", 0), ("HIGHMEM", 1), ("DMA32", 2), ("MOVABLE", 3), ("RECLAIMABLE", 4),
    ("HIGH", 5), ("IO", 6), ("FS", 7), ("ZERO", 8), ("ATOMIC", 9),
    ("DIRECT_RECLAIM", 10), ("KSWAPD_RECLAIM", 11), ("WRITE", 12), ("NOWARN", 13),
    ("RETRY_MAYFAIL", 14), ("NOFAIL", 15), ("NORETRY", 16), ("MEMALLOC", 17),
    ("COMP", 18), ("NOMEMALLOC", 19), ("HARDWALL", 20), ("THISNODE", 21),
    ("ACCOUNT", 22), ("ZEROTAGS", 23), ("NO_OBJ_EXT", 24),
)}
ACCOUNT = B["ACCOUNT"]
RECLAIM = B["DIRECT_RECLAIM"] | B["KSWAPD_RECLAIM"]
_KERNEL = RECLAIM | B["IO"] | B["FS"]
_USER = _KERNEL | B["HARDWALL"]
_HIGHUSER_MOVABLE = _USER | B["HIGHMEM"] | B["MOVABLE"]
_TRANSHUGE_LIGHT = (_HIGHUSER_MOVABLE | B["COMP"] | B["NOMEMALLOC"] | B["NOWARN"]) & ~RECLAIM

NAMES = {f"__GFP_{k}": v for k, v in B.items()}
NAMES.update({
    "__GFP_RECLAIM": RECLAIM,
    "GFP_KERNEL": _KERNEL,
    "GFP_KERNEL_ACCOUNT": _KERNEL | ACCOUNT,
    "GFP_NOFS": RECLAIM | B["IO"],
    "GFP_NOIO": RECLAIM,
    "GFP_ATOMIC": B["HIGH"] | B["KSWAPD_RECLAIM"],
    "GFP_NOWAIT": B["KSWAPD_RECLAIM"],
    "GFP_USER": _USER,
    "GFP_HIGHUSER": _USER | B["HIGHMEM"],
    "GFP_HIGHUSER_MOVABLE": _HIGHUSER_MOVABLE,
    "GFP_TRANSHUGE_LIGHT": _TRANSHUGE_LIGHT,
    "GFP_TRANSHUGE": _TRANSHUGE_LIGHT | B["DIRECT_RECLAIM"],
    "GFP_DMA": B["DMA"],
    "GFP_DMA32": B["DMA32"],
    "none": 0,
    # older kernels
    "GFP_TEMPORARY": _KERNEL | B["RECLAIMABLE"],
    "GFP_IOFS": B["IO"] | B["FS"],
    "GFP_THISNODE": B["THISNODE"] | B["NOWARN"] | B["NORETRY"],
    "__GFP_WAIT": RECLAIM,
    "__GFP_REPEAT": B["RETRY_MAYFAIL"],
    "__GFP_KMEMCG": ACCOUNT,
    "__GFP_NO_KSWAPD": 0, "__GFP_COLD": 0, "__GFP_NOTRACK": 0, "__GFP_OTHER_NODE": 0,
    "__GFP_NOACCOUNT": 0, "__GFP_NOTRACK_FALSE_POSITIVE": 0, "__GFP_NOLOCKDEP": 0,
    "__GFP_SKIP_ZERO": 0, "__GFP_SKIP_KASAN": 0, "__GFP_SKIP_KASAN_POISON": 0,
    "__GFP_SKIP_KASAN_UNPOISON": 0,
})
# 2.6.3x-4.x printed the bits without the leading underscores ("GFP_ZERO")
for _k in list(B) + ["WAIT", "REPEAT", "COLD", "NOTRACK", "NO_KSWAPD", "OTHER_NODE", "KMEMCG"]:
    NAMES.setdefault(f"GFP_{_k}", NAMES[f"__GFP_{_k}"])


def decode(text):
    """b"GFP_KERNEL|__GFP_ZERO" -> (bits, every name known)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    bits = 0
    known = True
    for name in text.split("|"):
        v = NAMES.get(name.strip())
        if v is None:
            known = False
        else:
            bits |= v
    return bits, known
