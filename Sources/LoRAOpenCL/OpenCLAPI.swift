// The OpenCL C API, declared by hand and bound at run time with dlopen/dlsym, so the package builds and its
// CPU path runs on machines with no OpenCL at all. Declarations follow the Khronos headers (CL/cl.h,
// OpenCL 1.2 entry points); a test compares every constant and entry point here against the installed header.
// Every handle type (cl_context, cl_mem, ...) is an OpaquePointer; the wrappers in OpenCLObjects.swift give
// each its own Swift type.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

typealias CLHandle = OpaquePointer

/// OpenCL constants used here, with the values of CL/cl.h.
enum CL {
    static let SUCCESS: Int32 = 0
    static let DEVICE_NOT_FOUND: Int32 = -1
    static let TRUE: UInt32 = 1
    static let FALSE: UInt32 = 0

    static let PLATFORM_VERSION: UInt32 = 0x0901
    static let PLATFORM_NAME: UInt32 = 0x0902
    static let PLATFORM_VENDOR: UInt32 = 0x0903

    static let DEVICE_TYPE_CPU: UInt64 = 1 << 1
    static let DEVICE_TYPE_GPU: UInt64 = 1 << 2
    static let DEVICE_TYPE_ACCELERATOR: UInt64 = 1 << 3
    static let DEVICE_TYPE_ALL: UInt64 = 0xFFFF_FFFF

    static let DEVICE_TYPE: UInt32 = 0x1000
    static let DEVICE_MAX_COMPUTE_UNITS: UInt32 = 0x1002
    static let DEVICE_MAX_WORK_GROUP_SIZE: UInt32 = 0x1004
    static let DEVICE_MAX_MEM_ALLOC_SIZE: UInt32 = 0x1010
    static let DEVICE_GLOBAL_MEM_SIZE: UInt32 = 0x101F
    static let DEVICE_LOCAL_MEM_SIZE: UInt32 = 0x1023
    static let DEVICE_NAME: UInt32 = 0x102B
    static let DEVICE_VENDOR: UInt32 = 0x102C
    static let DRIVER_VERSION: UInt32 = 0x102D
    static let DEVICE_VERSION: UInt32 = 0x102F

    static let MEM_READ_WRITE: UInt64 = 1 << 0
    static let MEM_ALLOC_HOST_PTR: UInt64 = 1 << 4
    static let PROGRAM_BUILD_LOG: UInt32 = 0x1183
    static let KERNEL_WORK_GROUP_SIZE: UInt32 = 0x11B0
}

/// Function-pointer types of the entry points used (names as in cl.h without the `cl` prefix).
enum CLFunction {
    typealias GetPlatformIDs = @convention(c) (UInt32, UnsafeMutablePointer<CLHandle?>?, UnsafeMutablePointer<UInt32>?) -> Int32
    typealias GetPlatformInfo = @convention(c) (CLHandle?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
    typealias GetDeviceIDs = @convention(c) (CLHandle?, UInt64, UInt32, UnsafeMutablePointer<CLHandle?>?, UnsafeMutablePointer<UInt32>?) -> Int32
    typealias GetDeviceInfo = @convention(c) (CLHandle?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
    typealias CreateContext = @convention(c) (UnsafePointer<Int>?, UInt32, UnsafePointer<CLHandle?>?, OpaquePointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> CLHandle?
    typealias CreateCommandQueue = @convention(c) (CLHandle?, CLHandle?, UInt64, UnsafeMutablePointer<Int32>?) -> CLHandle?
    typealias CreateBuffer = @convention(c) (CLHandle?, UInt64, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> CLHandle?
    typealias CreateProgramWithSource = @convention(c) (CLHandle?, UInt32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int>?, UnsafeMutablePointer<Int32>?) -> CLHandle?
    typealias BuildProgram = @convention(c) (CLHandle?, UInt32, UnsafePointer<CLHandle?>?, UnsafePointer<CChar>?, OpaquePointer?, UnsafeMutableRawPointer?) -> Int32
    typealias GetProgramBuildInfo = @convention(c) (CLHandle?, CLHandle?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
    typealias CreateKernel = @convention(c) (CLHandle?, UnsafePointer<CChar>?, UnsafeMutablePointer<Int32>?) -> CLHandle?
    typealias SetKernelArg = @convention(c) (CLHandle?, UInt32, Int, UnsafeRawPointer?) -> Int32
    typealias GetKernelWorkGroupInfo = @convention(c) (CLHandle?, CLHandle?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
    typealias EnqueueNDRangeKernel = @convention(c) (CLHandle?, CLHandle?, UInt32, UnsafePointer<Int>?, UnsafePointer<Int>?, UnsafePointer<Int>?, UInt32, UnsafePointer<CLHandle?>?, UnsafeMutablePointer<CLHandle?>?) -> Int32
    typealias EnqueueReadBuffer = @convention(c) (CLHandle?, CLHandle?, UInt32, Int, Int, UnsafeMutableRawPointer?, UInt32, UnsafePointer<CLHandle?>?, UnsafeMutablePointer<CLHandle?>?) -> Int32
    typealias EnqueueWriteBuffer = @convention(c) (CLHandle?, CLHandle?, UInt32, Int, Int, UnsafeRawPointer?, UInt32, UnsafePointer<CLHandle?>?, UnsafeMutablePointer<CLHandle?>?) -> Int32
    typealias EnqueueCopyBuffer = @convention(c) (CLHandle?, CLHandle?, CLHandle?, Int, Int, Int, UInt32, UnsafePointer<CLHandle?>?, UnsafeMutablePointer<CLHandle?>?) -> Int32
    typealias EnqueueFillBuffer = @convention(c) (CLHandle?, CLHandle?, UnsafeRawPointer?, Int, Int, Int, UInt32, UnsafePointer<CLHandle?>?, UnsafeMutablePointer<CLHandle?>?) -> Int32
    typealias EnqueueMarkerWithWaitList = @convention(c) (CLHandle?, UInt32, UnsafePointer<CLHandle?>?, UnsafeMutablePointer<CLHandle?>?) -> Int32
    typealias Finish = @convention(c) (CLHandle?) -> Int32
    typealias Release = @convention(c) (CLHandle?) -> Int32
}

/// The OpenCL entry points, bound from a dynamically loaded ICD loader (`libOpenCL.so.1`).
struct OpenCLAPI: @unchecked Sendable {
    let library: String
    let getPlatformIDs: CLFunction.GetPlatformIDs
    let getPlatformInfo: CLFunction.GetPlatformInfo
    let getDeviceIDs: CLFunction.GetDeviceIDs
    let getDeviceInfo: CLFunction.GetDeviceInfo
    let createContext: CLFunction.CreateContext
    let createCommandQueue: CLFunction.CreateCommandQueue
    let createBuffer: CLFunction.CreateBuffer
    let createProgramWithSource: CLFunction.CreateProgramWithSource
    let buildProgram: CLFunction.BuildProgram
    let getProgramBuildInfo: CLFunction.GetProgramBuildInfo
    let createKernel: CLFunction.CreateKernel
    let setKernelArg: CLFunction.SetKernelArg
    let getKernelWorkGroupInfo: CLFunction.GetKernelWorkGroupInfo
    let enqueueNDRangeKernel: CLFunction.EnqueueNDRangeKernel
    let enqueueReadBuffer: CLFunction.EnqueueReadBuffer
    let enqueueWriteBuffer: CLFunction.EnqueueWriteBuffer
    let enqueueCopyBuffer: CLFunction.EnqueueCopyBuffer
    let enqueueFillBuffer: CLFunction.EnqueueFillBuffer
    let enqueueMarkerWithWaitList: CLFunction.EnqueueMarkerWithWaitList
    let enqueueBarrierWithWaitList: CLFunction.EnqueueMarkerWithWaitList
    let flush: CLFunction.Finish
    let finish: CLFunction.Finish
    let releaseContext: CLFunction.Release
    let releaseCommandQueue: CLFunction.Release
    let releaseMemObject: CLFunction.Release
    let releaseProgram: CLFunction.Release
    let releaseKernel: CLFunction.Release
    let releaseEvent: CLFunction.Release

    /// Every entry point bound here, by its C name (the header test checks each against cl.h).
    static let entryPoints = [
        "clGetPlatformIDs", "clGetPlatformInfo", "clGetDeviceIDs", "clGetDeviceInfo", "clCreateContext",
        "clCreateCommandQueue", "clCreateBuffer", "clCreateProgramWithSource", "clBuildProgram",
        "clGetProgramBuildInfo", "clCreateKernel", "clSetKernelArg", "clGetKernelWorkGroupInfo",
        "clEnqueueNDRangeKernel", "clEnqueueReadBuffer", "clEnqueueWriteBuffer", "clEnqueueCopyBuffer",
        "clEnqueueFillBuffer", "clEnqueueMarkerWithWaitList", "clEnqueueBarrierWithWaitList", "clFlush", "clFinish",
        "clReleaseContext", "clReleaseCommandQueue", "clReleaseMemObject", "clReleaseProgram", "clReleaseKernel",
        "clReleaseEvent",
    ]

    /// Loads the ICD loader from `path` (default: `LORA_OPENCL_LIBRARY`, else `libOpenCL.so.1`) and binds
    /// every entry point. Throws `OpenCLError.libraryUnavailable` with dlerror's text when it cannot.
    static func load(path: String? = nil) throws -> OpenCLAPI {
        let path = path ?? environment("LORA_OPENCL_LIBRARY") ?? "libOpenCL.so.1"
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw OpenCLError.libraryUnavailable(library: path, reason: dlErrorText())
        }
        func bind<F>(_ name: String, as type: F.Type = F.self) throws -> F {
            guard let symbol = dlsym(handle, name) else {
                throw OpenCLError.libraryUnavailable(library: path, reason: "missing entry point \(name)")
            }
            return unsafeBitCast(symbol, to: F.self)
        }
        return try OpenCLAPI(
            library: path,
            getPlatformIDs: bind("clGetPlatformIDs"), getPlatformInfo: bind("clGetPlatformInfo"),
            getDeviceIDs: bind("clGetDeviceIDs"), getDeviceInfo: bind("clGetDeviceInfo"),
            createContext: bind("clCreateContext"), createCommandQueue: bind("clCreateCommandQueue"),
            createBuffer: bind("clCreateBuffer"), createProgramWithSource: bind("clCreateProgramWithSource"),
            buildProgram: bind("clBuildProgram"), getProgramBuildInfo: bind("clGetProgramBuildInfo"),
            createKernel: bind("clCreateKernel"), setKernelArg: bind("clSetKernelArg"),
            getKernelWorkGroupInfo: bind("clGetKernelWorkGroupInfo"),
            enqueueNDRangeKernel: bind("clEnqueueNDRangeKernel"), enqueueReadBuffer: bind("clEnqueueReadBuffer"),
            enqueueWriteBuffer: bind("clEnqueueWriteBuffer"), enqueueCopyBuffer: bind("clEnqueueCopyBuffer"),
            enqueueFillBuffer: bind("clEnqueueFillBuffer"),
            enqueueMarkerWithWaitList: bind("clEnqueueMarkerWithWaitList"),
            enqueueBarrierWithWaitList: bind("clEnqueueBarrierWithWaitList"), flush: bind("clFlush"), finish: bind("clFinish"),
            releaseContext: bind("clReleaseContext"), releaseCommandQueue: bind("clReleaseCommandQueue"),
            releaseMemObject: bind("clReleaseMemObject"), releaseProgram: bind("clReleaseProgram"),
            releaseKernel: bind("clReleaseKernel"), releaseEvent: bind("clReleaseEvent"))
    }

    /// The process-wide binding of the default library, loaded on first use (a failure is remembered too).
    static let shared: Result<OpenCLAPI, OpenCLError> = {
        do { return .success(try load()) } catch let error as OpenCLError { return .failure(error) } catch {
            return .failure(.libraryUnavailable(library: "libOpenCL.so.1", reason: "\(error)"))
        }
    }()

    /// The shared binding, or a fresh one of an explicitly named library.
    static func resolve(_ library: String?) throws -> OpenCLAPI {
        if let library { return try load(path: library) }
        return try shared.get()
    }

    /// Throws unless `status` is `CL_SUCCESS`, naming the call and the status.
    func check(_ status: Int32, _ call: String) throws {
        guard status == CL.SUCCESS else { throw OpenCLError.status(status, call: call) }
    }
}

func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let s = String(cString: value)
    return s.isEmpty ? nil : s
}

func dlErrorText() -> String {
    guard let text = dlerror() else { return "unknown dlopen error" }
    return String(cString: text)
}
