"""Let glibc's ``malloc`` keep freed memory for reuse (CPU training).

glibc serves an allocation above its mmap threshold (at most 32 MB on 64-bit) with fresh
pages from the kernel and unmaps them when it is freed, so every step of a training loop
that allocates such a tensor again page-faults and zeroes it anew. A stacked MoE weight
gradient ([16, 384, 1536] fp32 is 38 MB) is one: with one thread the MoE MLP step of
``tools/analysis/benchmark_moe.py`` spends ~20 % of a dense MLP step on those faults
(configs/moe_vit/README.md). Serving every allocation from the heap and never trimming it
(``M_MMAP_MAX = 0``, ``M_TRIM_THRESHOLD`` at its maximum) makes a step reuse the pages the
previous step freed, as a caching allocator does; the process then keeps its peak heap.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # mallopt parameters of glibc's <malloc.h>
M_MMAP_MAX = -4
INT_MAX = 2 ** 31 - 1


def keep_freed_memory() -> bool:
    """Serve allocations from the heap and never return freed heap to the kernel.

    Affects the whole process (and processes it forks later). Returns False, changing
    nothing, where the C library is not glibc (no ``mallopt``).
    """
    libc = ctypes.CDLL(ctypes.util.find_library('c'))
    if not hasattr(libc, 'mallopt') or not hasattr(libc, 'gnu_get_libc_version'):
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, INT_MAX))


def apply_env_cfg(cfg) -> None:
    """Call :func:`keep_freed_memory` where the config's ``env_cfg.keep_freed_memory`` asks
    for it (the training tools do, before they build the Runner); say so where it cannot."""
    if (cfg.get('env_cfg') or {}).get('keep_freed_memory') and not keep_freed_memory():
        print('env_cfg.keep_freed_memory: this C library is not glibc, left as it is')
