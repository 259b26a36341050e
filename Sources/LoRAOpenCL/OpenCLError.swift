// Everything that can go wrong on the OpenCL path, as one error type whose messages name the cause:
// the status code by name, the failing call, the kernel build log, the devices that do exist.

/// An OpenCL failure. `description` is written for the person at the terminal.
public enum OpenCLError: Error, CustomStringConvertible {
    /// The ICD loader (or a needed entry point) could not be loaded.
    case libraryUnavailable(library: String, reason: String)
    /// An OpenCL call returned a status other than CL_SUCCESS.
    case status(Int32, call: String)
    /// A kernel source failed to compile; carries the compiler's log.
    case buildFailed(program: String, options: String, log: String)
    /// `opencl:N` named a device that does not exist.
    case deviceNotFound(requested: Int, available: [String])
    /// No OpenCL device at all.
    case noDevices
    /// A kernel source file is missing (embedded or in `LORA_KERNELS_DIR`).
    case kernelSourceMissing(String)
    /// A device allocation failed because the device is out of memory.
    case outOfMemory(bytes: Int, device: String)

    public var description: String {
        switch self {
        case .libraryUnavailable(let library, let reason):
            "OpenCL is not available: could not load \(library) (\(reason)). "
                + "Install an OpenCL ICD loader and driver (Debian: ocl-icd-libopencl1 plus a driver such as pocl-opencl-icd)."
        case .status(let code, let call):
            "\(call) failed with \(OpenCLError.statusName(code)) (\(code))"
        case .buildFailed(let program, let options, let log):
            "OpenCL program \(program) failed to build (options: \(options.isEmpty ? "none" : options)). Build log:\n\(log)"
        case .deviceNotFound(let requested, let available):
            "OpenCL device \(requested) does not exist; "
                + (available.isEmpty ? "there are no OpenCL devices."
                    : "available: " + available.enumerated().map { "opencl:\($0) \($1)" }.joined(separator: ", "))
        case .noDevices:
            "OpenCL is installed but reports no devices (is a driver such as pocl-opencl-icd installed?)"
        case .kernelSourceMissing(let what):
            "OpenCL kernel source missing: \(what)"
        case .outOfMemory(let bytes, let device):
            "out of device memory: could not allocate \(bytes) bytes on \(device)"
        }
    }

    /// The name of an OpenCL status code as cl.h spells it.
    public static func statusName(_ code: Int32) -> String {
        statusNames[code] ?? "UNKNOWN_OPENCL_STATUS"
    }

    static let statusNames: [Int32: String] = [
        0: "CL_SUCCESS", -1: "CL_DEVICE_NOT_FOUND", -2: "CL_DEVICE_NOT_AVAILABLE",
        -3: "CL_COMPILER_NOT_AVAILABLE", -4: "CL_MEM_OBJECT_ALLOCATION_FAILURE", -5: "CL_OUT_OF_RESOURCES",
        -6: "CL_OUT_OF_HOST_MEMORY", -7: "CL_PROFILING_INFO_NOT_AVAILABLE", -8: "CL_MEM_COPY_OVERLAP",
        -9: "CL_IMAGE_FORMAT_MISMATCH", -10: "CL_IMAGE_FORMAT_NOT_SUPPORTED", -11: "CL_BUILD_PROGRAM_FAILURE",
        -12: "CL_MAP_FAILURE", -13: "CL_MISALIGNED_SUB_BUFFER_OFFSET",
        -14: "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST", -15: "CL_COMPILE_PROGRAM_FAILURE",
        -16: "CL_LINKER_NOT_AVAILABLE", -17: "CL_LINK_PROGRAM_FAILURE", -18: "CL_DEVICE_PARTITION_FAILED",
        -19: "CL_KERNEL_ARG_INFO_NOT_AVAILABLE",
        -30: "CL_INVALID_VALUE", -31: "CL_INVALID_DEVICE_TYPE", -32: "CL_INVALID_PLATFORM",
        -33: "CL_INVALID_DEVICE", -34: "CL_INVALID_CONTEXT", -35: "CL_INVALID_QUEUE_PROPERTIES",
        -36: "CL_INVALID_COMMAND_QUEUE", -37: "CL_INVALID_HOST_PTR", -38: "CL_INVALID_MEM_OBJECT",
        -39: "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR", -40: "CL_INVALID_IMAGE_SIZE", -41: "CL_INVALID_SAMPLER",
        -42: "CL_INVALID_BINARY", -43: "CL_INVALID_BUILD_OPTIONS", -44: "CL_INVALID_PROGRAM",
        -45: "CL_INVALID_PROGRAM_EXECUTABLE", -46: "CL_INVALID_KERNEL_NAME", -47: "CL_INVALID_KERNEL_DEFINITION",
        -48: "CL_INVALID_KERNEL", -49: "CL_INVALID_ARG_INDEX", -50: "CL_INVALID_ARG_VALUE",
        -51: "CL_INVALID_ARG_SIZE", -52: "CL_INVALID_KERNEL_ARGS", -53: "CL_INVALID_WORK_DIMENSION",
        -54: "CL_INVALID_WORK_GROUP_SIZE", -55: "CL_INVALID_WORK_ITEM_SIZE", -56: "CL_INVALID_GLOBAL_OFFSET",
        -57: "CL_INVALID_EVENT_WAIT_LIST", -58: "CL_INVALID_EVENT", -59: "CL_INVALID_OPERATION",
        -60: "CL_INVALID_GL_OBJECT", -61: "CL_INVALID_BUFFER_SIZE", -62: "CL_INVALID_MIP_LEVEL",
        -63: "CL_INVALID_GLOBAL_WORK_SIZE", -64: "CL_INVALID_PROPERTY", -65: "CL_INVALID_IMAGE_DESCRIPTOR",
        -66: "CL_INVALID_COMPILER_OPTIONS", -67: "CL_INVALID_LINKER_OPTIONS", -68: "CL_INVALID_DEVICE_PARTITION_COUNT",
        -69: "CL_INVALID_PIPE_SIZE", -70: "CL_INVALID_DEVICE_QUEUE", -71: "CL_INVALID_SPEC_ID",
        -72: "CL_MAX_SIZE_RESTRICTION_EXCEEDED", -1001: "CL_PLATFORM_NOT_FOUND_KHR",
    ]
}
