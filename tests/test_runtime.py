"""mlff.runtime: the allocator setting for fast CPU inference."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlff import runtime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_memory_is_idempotent():
    assert runtime.keep_freed_memory() is True
    assert runtime.keep_freed_memory() is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_environment_variable_turns_it_off():
    code = "from mlff import runtime; print(runtime.keep_freed_memory())"
    env = {"MLFF_KEEP_FREED_MEMORY": "0", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_blocks_are_reused_without_page_faults():
    """A large block freed and allocated again costs no new page faults once it is kept."""
    code = """
import resource, numpy as np
from mlff import runtime
runtime.keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(50_000_000 // 8); del a   # 50 MB: above glibc's default mmap threshold
before = faults()
for _ in range(5):
    a = np.ones(50_000_000 // 8); del a
print(faults() - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # 5 x 50 MB in fresh mmap pages would be ~60,000 faults
    assert int(out.stdout.strip()) < 2000
