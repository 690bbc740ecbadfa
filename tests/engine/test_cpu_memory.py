"""modzoo/engine/cpu_memory.py: freed memory stays with the process for the next step."""
import subprocess
import sys
from pathlib import Path

import pytest

# a 40 MB block (over glibc's largest mmap threshold, 32 MB) allocated and freed twice, by
# malloc as torch's CPU allocator does; mallinfo2 says where it came from: hblkhd (mmapped
# bytes) or arena (the heap). The module is loaded by path: modzoo.engine imports torch.
PROBE = """
import ctypes, importlib.util, sys
spec = importlib.util.spec_from_file_location('cpu_memory', sys.argv[2])
cpu_memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cpu_memory)

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
        'fordblks', 'keepcost')]

libc = ctypes.CDLL('libc.so.6')
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
kept = sys.argv[1] == 'keep' and cpu_memory.keep_freed_memory()
for _ in range(2):
    before = libc.mallinfo2()
    block = libc.malloc(40 * 2 ** 20)
    during = libc.mallinfo2()
    libc.free(block)
    after = libc.mallinfo2()
print(kept, during.hblkhd - before.hblkhd, during.arena, after.arena)
"""
MODULE = Path(__file__).resolve().parents[2] / 'modzoo' / 'engine' / 'cpu_memory.py'


def _probe(mode):
    out = subprocess.run([sys.executable, '-c', PROBE, mode, str(MODULE)], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == 'True', [int(n) for n in out[1:]]


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc')
def test_large_tensors_come_from_the_kept_heap():
    kept, (mmapped, heap_during, heap_after) = _probe('keep')
    assert kept
    assert mmapped < 2 ** 20  # the 40 MB block was not mmapped...
    assert heap_during >= 40 * 2 ** 20 and heap_after == heap_during  # ...nor trimmed away
    kept, (mmapped, _, _) = _probe('default')
    assert not kept and mmapped >= 40 * 2 ** 20  # glibc's default maps it afresh
