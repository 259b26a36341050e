/* Lets Intel MKL (linked into PyTorch's CPU wheel) take its AVX-512 code paths on AMD CPUs.
 *
 * MKL picks its kernels by CPU vendor as well as by instruction set: on a non-Intel CPU it stays on its AVX2 paths
 * whatever the CPU supports (MKL_ENABLE_INSTRUCTIONS does not change that), which on a Zen 5 core is about half of
 * its fp32 GEMM throughput. MKL asks two service functions whether the CPU is Intel's; preloaded
 * (LD_PRELOAD), these answer yes, so the PyTorch peer of our benchmarks runs at its best on AMD machines, as a
 * user who knows the trick would run it. Benchmarks/peer_env.py builds and preloads it; nothing else uses it. */
int mkl_serv_intel_cpu_true(void) { return 1; }
int mkl_serv_intel_cpu(void) { return 1; }
