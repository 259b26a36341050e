// CLBlast's C API (clblast_c.h), bound at run time from libclblast.so.1 when it is installed.
// Only SGEMM is used: the OpenCL backend measures it against its own kernel once per device and keeps
// the faster (CLBlast is untuned and slow on PoCL, and usually the faster one on real GPUs).
#if canImport(Glibc)
import Glibc
#endif

struct CLBlast: @unchecked Sendable {
    // CLBlastLayout / CLBlastTranspose values from clblast_c.h.
    static let rowMajor: Int32 = 101
    static let transposeNo: Int32 = 111
    static let transposeYes: Int32 = 112

    typealias Sgemm = @convention(c) (
        Int32, Int32, Int32, Int, Int, Int, Float,
        CLHandle?, Int, Int, CLHandle?, Int, Int, Float, CLHandle?, Int, Int,
        UnsafeMutablePointer<CLHandle?>?, UnsafeMutablePointer<CLHandle?>?) -> Int32
    typealias SgemmStridedBatched = @convention(c) (
        Int32, Int32, Int32, Int, Int, Int, Float,
        CLHandle?, Int, Int, Int, CLHandle?, Int, Int, Int, Float, CLHandle?, Int, Int, Int, Int,
        UnsafeMutablePointer<CLHandle?>?, UnsafeMutablePointer<CLHandle?>?) -> Int32

    let sgemm: Sgemm
    let sgemmStridedBatched: SgemmStridedBatched

    /// CLBlast loaded from `LORA_CLBLAST_LIBRARY` (or `libclblast.so.1`), or nil where it is not installed
    /// or `LORA_CLBLAST=0`.
    static let shared: CLBlast? = {
        guard environment("LORA_CLBLAST") != "0" else { return nil }
        let path = environment("LORA_CLBLAST_LIBRARY") ?? "libclblast.so.1"
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL),
              let sgemm = dlsym(handle, "CLBlastSgemm"),
              let batched = dlsym(handle, "CLBlastSgemmStridedBatched")
        else { return nil }
        return CLBlast(sgemm: unsafeBitCast(sgemm, to: Sgemm.self),
                       sgemmStridedBatched: unsafeBitCast(batched, to: SgemmStridedBatched.self))
    }()

    /// Throws unless a CLBlast status is CLBlastSuccess; OpenCL statuses are named as such.
    static func check(_ status: Int32, _ call: String) throws {
        guard status != 0 else { return }
        if status > -1000 { throw OpenCLError.status(status, call: call) }
        throw OpenCLError.status(status, call: "\(call) (CLBlast status \(status), see clblast_c.h)")
    }
}
