// OpenBLAS's sgemm, loaded at run time for `lora bench --compare openblas` only: a peer measured in the same run,
// never a dependency of the library.
import Foundation

struct OpenBLAS {
    private typealias SGEMM = @convention(c) (
        Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
        UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    private typealias SetThreads = @convention(c) (Int32) -> Void

    private let sgemm: SGEMM
    let library: String

    /// The kernel set OpenBLAS chose (`SkylakeX`, `Haswell`, ...).
    let core: String

    /// Loads `libopenblas.so.0` (or `path`) and sets its thread count to match ours.
    ///
    /// A virtual machine often reports a CPU model OpenBLAS does not know, and it then falls back to its SSE3
    /// kernels (a fifth of its real speed here). Unless OPENBLAS_CORETYPE is set, it is set from the CPU's flags
    /// so the peer runs at its best. OPENBLAS_THREAD_TIMEOUT is set too (below), unless already set.
    init(path: String = "libopenblas.so.0", threads: Int) throws {
        if getenv("OPENBLAS_CORETYPE") == nil, let core = Self.coreType() { setenv("OPENBLAS_CORETYPE", core, 1) }
        // OpenBLAS's idle threads spin for ~2²⁸ cycles after each call, taking the cores from our runs that
        // alternate with its; 2¹⁶ cycles (~25 µs) matches how long our pool spins before it parks.
        if getenv("OPENBLAS_THREAD_TIMEOUT") == nil { setenv("OPENBLAS_THREAD_TIMEOUT", "16", 1) }
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw BenchError("--compare openblas: cannot load \(path) (\(reason)); on Debian: apt-get install libopenblas0")
        }
        guard let symbol = dlsym(handle, "cblas_sgemm") else {
            throw BenchError("--compare openblas: \(path) has no cblas_sgemm")
        }
        sgemm = unsafeBitCast(symbol, to: SGEMM.self)
        if let set = dlsym(handle, "openblas_set_num_threads") {
            unsafeBitCast(set, to: SetThreads.self)(Int32(threads))
        }
        library = path
        typealias CoreName = @convention(c) () -> UnsafePointer<CChar>?
        core = dlsym(handle, "openblas_get_corename")
            .flatMap { unsafeBitCast($0, to: CoreName.self)() }.map { String(cString: $0) } ?? "unknown"
    }

    /// OpenBLAS's name for the best kernels this CPU runs, from /proc/cpuinfo's flags.
    private static func coreType() -> String? {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let set = Set(flags.split(separator: " "))
        if set.contains("avx512f") && set.contains("avx512bw") { return "SkylakeX" }
        if set.contains("avx2") && set.contains("fma") { return "Haswell" }
        return nil
    }

    /// Row-major C[m, n] = alpha·op(A)·op(B) + beta·C with packed leading dimensions.
    func gemm(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool,
              a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) {
        let (rowMajor, noTrans, trans): (Int32, Int32, Int32) = (101, 111, 112)
        let lda = transposeA ? m : k, ldb = transposeB ? k : n
        sgemm(rowMajor, transposeA ? trans : noTrans, transposeB ? trans : noTrans,
              Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(n))
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
