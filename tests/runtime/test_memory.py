import platform

import numpy as np

from pipeline.runtime import memory


def test_freed_arrays_go_back_to_the_system_on_glibc():
    ok = memory.return_freed_memory()
    assert ok == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    # after the call, a large temporary is freed at once: the call is idempotent and arrays still work
    x = np.ones(1 << 20)
    assert memory.return_freed_memory() == ok and float(x.sum()) == float(1 << 20)
