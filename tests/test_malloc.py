"""robojac._malloc: glibc's thresholds set at import, and left alone where the user said so."""

import subprocess
import sys

import pytest

from robojac import _malloc

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")


@glibc
def test_tune_sets_the_thresholds_unless_told_not_to(monkeypatch):
    for name in ("ROBOJAC_MALLOC", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    assert _malloc.tune() is True
    monkeypatch.setenv("ROBOJAC_MALLOC", "system")
    assert _malloc.tune() is False
    monkeypatch.delenv("ROBOJAC_MALLOC")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")
    assert _malloc.tune() is False
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    assert _malloc.tune() is False


@glibc
def test_import_keeps_a_freed_megabyte_in_the_heap():
    """After ``import robojac`` a freed 4 MiB block stays in the process's heap (glibc's
    mallinfo2 counts it as free heap), where by default it goes back to the system at once."""
    code = """
import ctypes, os
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                  "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
if not hasattr(libc, "mallinfo2"):  # glibc before 2.33
    raise SystemExit(print("skip"))
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if os.environ.get("IMPORT") == "1":
    import robojac
p = libc.malloc(4 << 20)
before = libc.mallinfo2()
libc.free(p)
after = libc.mallinfo2()
print(int(before.hblkhd >= 4 << 20), int(after.fordblks - before.fordblks >= 4 << 20))
"""
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("ROBOJAC_MALLOC", "GLIBC_TUNABLES")}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    tuned = subprocess.run([sys.executable, "-c", code], env={**env, "IMPORT": "1"}, capture_output=True, text=True,
                           check=True)
    if plain.stdout.strip() == "skip":
        pytest.skip("this glibc has no mallinfo2")
    assert plain.stdout.split() == ["1", "0"]  # mmap'd, then unmapped
    assert tuned.stdout.split() == ["0", "1"]  # from the heap, and kept there
