"""Build and cache the project's C++ CPU kernels (plain C++ and OpenMP, no torch headers: each compiles in
seconds), to be loaded through ctypes: the Mamba selective scan (``mamba/selective_scan_cpu.cpp``) and L_spe's
fused elementwise passes (``spe_cpu.cpp``).

A library is compiled on first use with the system's C++ compiler (``$CXX``, else ``g++`` or ``c++``) and
kept under ``$RECBOLE_FAMOUS_CACHE`` (default ``~/.cache/recbole_famous``) in a file named by a hash of the
source, the flags and the CPU's feature flags (the build uses ``-march=native``), so a changed source or
another machine never loads a stale build. Each process compiles to its own temporary file and renames it
into place (atomic), so two processes compiling at once are safe.
"""
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC", "-shared", "-std=c++17"]


def cpu_flags() -> str:
    """The CPU's feature flags (part of a build's cache key)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def library_path(source: Path, source_text: str) -> Path:
    """Where the build of ``source`` with this text, these flags and this CPU is cached."""
    key = hashlib.sha1("|".join([source_text, " ".join(FLAGS), cpu_flags()]).encode()).hexdigest()
    root = Path(os.environ.get("RECBOLE_FAMOUS_CACHE", Path.home() / ".cache" / "recbole_famous"))
    return root / "kernels" / f"{source.stem}_{key[:16]}.so"


def build(source: Path) -> Path:
    """Path of the compiled library of ``source``, compiling it if needed; raises RuntimeError with the reason."""
    source_text = source.read_text()
    path = library_path(source, source_text)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.so")
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or "g++"
    cmd = [cxx, *FLAGS, str(source), "-o", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{cmd[0]} could not run: {exc}") from None
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines()
        raise RuntimeError(f"{cmd[0]} failed: {(errors or ['no output'])[0][-300:]}")
    os.replace(tmp, path)
    return path


def load(path, argtypes: dict, dtypes=("f", "d")):
    """The compiled library at ``path`` through ctypes, each ``<name>_<dtype>`` entry point of ``argtypes``
    (``{name: [ctypes types]}``) declared with those arguments and no return value."""
    lib = ctypes.CDLL(str(path))
    for name, types in argtypes.items():
        for suffix in dtypes:
            fn = getattr(lib, f"{name}_{suffix}")
            fn.argtypes, fn.restype = types, None
    return lib


def pointer(x):
    """A tensor's data pointer for ctypes (None for None)."""
    return None if x is None else ctypes.c_void_p(x.data_ptr())
