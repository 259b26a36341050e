"""The environment our benchmarks run their PyTorch peers in, so that the peer runs at its best on this machine.

- OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which some machines preset for our `lora bench --compare openblas` peer (and
  which hold OpenBLAS to its Haswell kernels), are removed.
- On an AMD CPU where PyTorch's BLAS is Intel MKL (the PyPI CPU wheel), MKL keeps to its AVX2 kernels because of the
  vendor, whatever the CPU supports: on a Zen 5 core that is about half of its fp32 GEMM throughput (2 threads,
  1024^3: 183 against 399 GFLOP/s). `mkl_intel_dispatch.c`, built here with the system C compiler and preloaded,
  answers MKL's vendor check with yes. `own_dispatch=True` keeps MKL's own choice (the wheel as installed).

`peer_environment()` returns the environment and one line per change, for the caller to print and record.
"""
import os, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def _cpu_vendor():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _torch_blas(python):
    """PyTorch's BLAS library as its build configuration names it (e.g. "mkl"), or "" when it cannot be told."""
    code = "import torch, re; m = re.search(r'BLAS_INFO=(\\w+)', torch.__config__.show()); print(m.group(1) if m else '')"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def _dispatch_library():
    """Builds mkl_intel_dispatch.c into a shared library in the temp folder (once per source version); its path."""
    source = os.path.join(HERE, "mkl_intel_dispatch.c")
    stamp = int(os.stat(source).st_mtime)
    library = os.path.join(tempfile.gettempdir(), f"swift-lora-mkl-intel-dispatch-{stamp}.so")
    if not os.path.exists(library):
        partial = library + f".{os.getpid()}"
        compiler = os.environ.get("CC", "cc")
        subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", partial, source], check=True)
        os.replace(partial, library)
    return library


def peer_environment(python=sys.executable, own_dispatch=False):
    env, notes = dict(os.environ), []
    removed = [name for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if env.pop(name, None) is not None]
    if removed:
        notes.append(f"removed {', '.join(removed)} from the PyTorch peer's environment (tuning meant for our OpenBLAS peer)")
    if _cpu_vendor() == "AuthenticAMD" and _torch_blas(python) == "mkl":
        if own_dispatch:
            notes.append("kept MKL's vendor dispatch: on this AMD CPU the PyTorch peer runs MKL's AVX2 kernels")
        else:
            try:
                library = _dispatch_library()
            except (OSError, subprocess.CalledProcessError) as error:
                sys.exit(f"peer_env: cannot build {os.path.join(HERE, 'mkl_intel_dispatch.c')} ({error}); "
                         "install a C compiler, or pass the script's flag that keeps MKL's own dispatch")
            env["LD_PRELOAD"] = " ".join(filter(None, [env.get("LD_PRELOAD"), library]))
            notes.append(f"AMD CPU, PyTorch on MKL: preloaded {os.path.basename(library)} so MKL takes its "
                         "AVX-512 kernels in the peer (Benchmarks/mkl_intel_dispatch.c)")
    return env, notes
