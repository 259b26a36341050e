// The OpenCL path's failure modes and its hand-written C declarations: a missing library, a missing device,
// a kernel that fails to build, and every constant and entry point compared with the installed headers.
import Foundation
@testable import LoRAOpenCL
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("OpenCL environment")
struct OpenCLEnvironmentTests {
    @Test("OpenCL requested without an OpenCL library is a clear error, not a CPU fallback")
    func noLibrary() throws {
        let error = #expect(throws: OpenCLError.self) {
            try Devices.select("opencl", openCLLibrary: "/nonexistent/libOpenCL.so.1")
        }
        #expect(error?.description.contains("could not load /nonexistent/libOpenCL.so.1") == true)
        // Automatic selection falls back to the CPU and says why.
        let auto = try Devices.select("auto", openCLLibrary: "/nonexistent/libOpenCL.so.1")
        #expect(auto.backend is CPUBackend && auto.reason.contains("OpenCL unavailable"))
    }

    @Test("device specs parse and bad ones are rejected")
    func deviceSpecs() throws {
        #expect(try DeviceRequest(parsing: "cpu") == .cpu)
        #expect(try DeviceRequest(parsing: "OpenCL:3") == .opencl(3))
        #expect(try DeviceRequest(parsing: "opencl") == .opencl(nil))
        #expect(throws: LoRAError.self) { try DeviceRequest(parsing: "cuda") }
        #expect(throws: LoRAError.self) { try DeviceRequest(parsing: "opencl:-1") }
        #expect(try Devices.select("cpu").backend is CPUBackend)
    }

    @Test("OpenCL device 7 on a machine without it names the devices that exist",
          .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
    func missingDevice() throws {
        let count = try OpenCL.devices().count
        let error = #expect(throws: OpenCLError.self) { try Devices.select("opencl:\(count + 6)") }
        #expect(error?.description.contains("does not exist") == true)
        #expect(error?.description.contains("opencl:0") == true)
    }

    @Test("OpenCL kernel build failure carries the build log",
          .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
    func buildFailure() throws {
        let cl = try TestDevices.openCL.get()
        let error = #expect(throws: OpenCLError.self) {
            try cl.build(source: "__kernel void broken(__global float* x) { x[0] = undeclared_name; }",
                         name: "broken.cl", options: "")
        }
        guard case .buildFailed(let program, _, let log)? = error else {
            Issue.record("expected buildFailed, got \(String(describing: error))")
            return
        }
        #expect(program == "broken.cl")
        #expect(log.contains("undeclared_name"), "log: \(log)")
    }

    @Test("OpenCL kernels load from LORA_KERNELS_DIR, and a broken one fails the op with its log",
          .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
    func kernelsDirectory() throws {
        let cl = try TestDevices.openCL.get()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lora-kernels-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "__kernel void softmax_forward(__global float* x) { x[0] = ; }"
            .write(to: dir.appendingPathComponent("softmax.cl"), atomically: true, encoding: .utf8)
        let backend = try OpenCLBackend(index: cl.device.index, kernelsDirectory: dir.path)
        let x = try backend.zeros([2, 3])
        // Every program starts with common.cl; a folder without it is named in the error.
        let noCommon = #expect(throws: OpenCLError.self) { try backend.softmax(Softmax(x: x, y: x)) }
        #expect(noCommon?.description.contains("common.cl") == true)
        try "// helpers\n".write(to: dir.appendingPathComponent("common.cl"), atomically: true, encoding: .utf8)
        let error = #expect(throws: OpenCLError.self) { try backend.softmax(Softmax(x: x, y: x)) }
        #expect(error?.description.contains("softmax.cl failed to build") == true)
        // A kernel file missing from the folder is named.
        let missing = #expect(throws: OpenCLError.self) {
            try backend.addBias(BiasAdd(bias: backend.zeros([3]), y: x))
        }
        #expect(missing?.description.contains("elementwise.cl") == true)
    }

    @Test("every kernel file is embedded in the build")
    func embedded() {
        let onDisk = (try? FileManager.default.contentsOfDirectory(atPath: packageRoot + "/Kernels"))?
            .filter { $0.hasSuffix(".cl") }.map { String($0.dropLast(3)) }.sorted() ?? []
        #expect(!onDisk.isEmpty)
        #expect(KernelSources.embeddedNames == onDisk)
    }

    @Test("OpenCL device listing reports each device",
          .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
    func listing() throws {
        let devices = try OpenCL.devices()
        #expect(!devices.isEmpty)
        for d in devices {
            #expect(!d.name.isEmpty && d.computeUnits > 0 && d.globalMemoryBytes > 0 && d.openCLVersion.hasPrefix("OpenCL"))
        }
    }

    @Test("hand-written OpenCL declarations match CL/cl.h",
          .enabled(if: FileManager.default.fileExists(atPath: "/usr/include/CL/cl.h"), "CL/cl.h not installed (opencl-headers)"))
    func openCLHeader() throws {
        let header = try String(contentsOfFile: "/usr/include/CL/cl.h", encoding: .utf8)
        let constants: [(String, Int64)] = [
            ("CL_SUCCESS", Int64(CL.SUCCESS)), ("CL_DEVICE_NOT_FOUND", Int64(CL.DEVICE_NOT_FOUND)),
            ("CL_TRUE", Int64(CL.TRUE)), ("CL_FALSE", Int64(CL.FALSE)),
            ("CL_PLATFORM_VERSION", Int64(CL.PLATFORM_VERSION)), ("CL_PLATFORM_NAME", Int64(CL.PLATFORM_NAME)),
            ("CL_PLATFORM_VENDOR", Int64(CL.PLATFORM_VENDOR)), ("CL_DEVICE_TYPE_CPU", Int64(CL.DEVICE_TYPE_CPU)),
            ("CL_DEVICE_TYPE_GPU", Int64(CL.DEVICE_TYPE_GPU)), ("CL_DEVICE_TYPE_ACCELERATOR", Int64(CL.DEVICE_TYPE_ACCELERATOR)),
            ("CL_DEVICE_TYPE_ALL", Int64(CL.DEVICE_TYPE_ALL)), ("CL_DEVICE_TYPE", Int64(CL.DEVICE_TYPE)),
            ("CL_DEVICE_MAX_COMPUTE_UNITS", Int64(CL.DEVICE_MAX_COMPUTE_UNITS)),
            ("CL_DEVICE_MAX_WORK_GROUP_SIZE", Int64(CL.DEVICE_MAX_WORK_GROUP_SIZE)),
            ("CL_DEVICE_MAX_MEM_ALLOC_SIZE", Int64(CL.DEVICE_MAX_MEM_ALLOC_SIZE)),
            ("CL_DEVICE_GLOBAL_MEM_SIZE", Int64(CL.DEVICE_GLOBAL_MEM_SIZE)),
            ("CL_DEVICE_LOCAL_MEM_SIZE", Int64(CL.DEVICE_LOCAL_MEM_SIZE)), ("CL_DEVICE_NAME", Int64(CL.DEVICE_NAME)),
            ("CL_DEVICE_VENDOR", Int64(CL.DEVICE_VENDOR)), ("CL_DRIVER_VERSION", Int64(CL.DRIVER_VERSION)),
            ("CL_DEVICE_VERSION", Int64(CL.DEVICE_VERSION)), ("CL_MEM_READ_WRITE", Int64(CL.MEM_READ_WRITE)),
            ("CL_MEM_ALLOC_HOST_PTR", Int64(CL.MEM_ALLOC_HOST_PTR)),
            ("CL_PROGRAM_BUILD_LOG", Int64(CL.PROGRAM_BUILD_LOG)), ("CL_KERNEL_WORK_GROUP_SIZE", Int64(CL.KERNEL_WORK_GROUP_SIZE)),
        ]
        for (name, value) in constants {
            #expect(headerConstant(name, in: header) == value, "\(name)")
        }
        for (code, name) in OpenCLError.statusNames where code > -1000 {
            #expect(headerConstant(name, in: header) == Int64(code), "\(name)")
        }
        let types: [String: Any.Type] = [
            "clGetPlatformIDs": CLFunction.GetPlatformIDs.self, "clGetPlatformInfo": CLFunction.GetPlatformInfo.self,
            "clGetDeviceIDs": CLFunction.GetDeviceIDs.self, "clGetDeviceInfo": CLFunction.GetDeviceInfo.self,
            "clCreateContext": CLFunction.CreateContext.self, "clCreateCommandQueue": CLFunction.CreateCommandQueue.self,
            "clCreateBuffer": CLFunction.CreateBuffer.self, "clCreateProgramWithSource": CLFunction.CreateProgramWithSource.self,
            "clBuildProgram": CLFunction.BuildProgram.self, "clGetProgramBuildInfo": CLFunction.GetProgramBuildInfo.self,
            "clCreateKernel": CLFunction.CreateKernel.self, "clSetKernelArg": CLFunction.SetKernelArg.self,
            "clGetKernelWorkGroupInfo": CLFunction.GetKernelWorkGroupInfo.self,
            "clEnqueueNDRangeKernel": CLFunction.EnqueueNDRangeKernel.self,
            "clEnqueueReadBuffer": CLFunction.EnqueueReadBuffer.self, "clEnqueueWriteBuffer": CLFunction.EnqueueWriteBuffer.self,
            "clEnqueueCopyBuffer": CLFunction.EnqueueCopyBuffer.self, "clEnqueueFillBuffer": CLFunction.EnqueueFillBuffer.self,
            "clEnqueueMarkerWithWaitList": CLFunction.EnqueueMarkerWithWaitList.self,
            "clEnqueueBarrierWithWaitList": CLFunction.EnqueueMarkerWithWaitList.self,
            "clFlush": CLFunction.Finish.self, "clReleaseEvent": CLFunction.Release.self,
            "clFinish": CLFunction.Finish.self, "clReleaseContext": CLFunction.Release.self,
            "clReleaseCommandQueue": CLFunction.Release.self, "clReleaseMemObject": CLFunction.Release.self,
            "clReleaseProgram": CLFunction.Release.self, "clReleaseKernel": CLFunction.Release.self,
        ]
        #expect(Set(types.keys) == Set(OpenCLAPI.entryPoints))
        for name in OpenCLAPI.entryPoints {
            let cParameters = try #require(headerParameterCount(name, in: header), "\(name) not in cl.h")
            #expect(swiftParameterCount(types[name]!) == cParameters, "\(name)")
        }
    }

    @Test("hand-written CLBlast declarations match clblast_c.h",
          .enabled(if: FileManager.default.fileExists(atPath: "/usr/include/clblast_c.h"), "clblast_c.h not installed (libclblast-dev)"))
    func clblastHeader() throws {
        let header = try String(contentsOfFile: "/usr/include/clblast_c.h", encoding: .utf8)
        #expect(header.contains("CLBlastLayoutRowMajor = \(CLBlast.rowMajor)"))
        #expect(header.contains("CLBlastTransposeNo = \(CLBlast.transposeNo)"))
        #expect(header.contains("CLBlastTransposeYes = \(CLBlast.transposeYes)"))
        #expect(headerParameterCount("CLBlastSgemm", in: header) == swiftParameterCount(CLBlast.Sgemm.self))
        #expect(headerParameterCount("CLBlastSgemmStridedBatched", in: header)
                == swiftParameterCount(CLBlast.SgemmStridedBatched.self))
    }
}

/// The repository root, found from this source file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// The value of `#define NAME value` in a header (decimal, hex, negative, or `(1 << n)`).
func headerConstant(_ name: String, in header: String) -> Int64? {
    for line in header.split(separator: "\n") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count >= 3, parts[0] == "#define", parts[1] == name else { continue }
        let text = parts[2...].joined(separator: " ").components(separatedBy: "/*")[0]
            .trimmingCharacters(in: .whitespaces)
        if let shift = text.range(of: "<<") {
            let lhs = text[..<shift.lowerBound].filter(\.isNumber), rhs = text[shift.upperBound...].filter(\.isNumber)
            return Int64(lhs).flatMap { l in Int64(rhs).map { l << $0 } }
        }
        let bare = text.trimmingCharacters(in: CharacterSet(charactersIn: "()"))
        if bare.hasPrefix("0x") || bare.hasPrefix("0X") { return Int64(bare.dropFirst(2), radix: 16) }
        return Int64(bare)
    }
    return nil
}

/// The number of parameters in the C declaration `name(...)`.
func headerParameterCount(_ name: String, in header: String) -> Int? {
    guard let start = header.range(of: "\(name)(") ?? header.range(of: "\(name) (") else { return nil }
    let rest = header[start.upperBound...]
    guard let end = rest.firstIndex(of: ";") else { return nil }
    let declaration = rest[..<end]
    var depth = 1, commas = 0
    for ch in declaration {
        if ch == "(" { depth += 1 } else if ch == ")" { depth -= 1; if depth == 0 { break } } else if ch == "," && depth == 1 { commas += 1 }
    }
    return commas + 1
}

/// The number of parameters of a Swift function type, from its printed signature.
func swiftParameterCount(_ type: Any.Type) -> Int {
    var text = String(describing: type)
    if text.hasPrefix("@convention(c) ") { text.removeFirst("@convention(c) ".count) }
    guard let open = text.firstIndex(of: "(") else { return 0 }
    var depth = 0, commas = 0
    for ch in text[open...] {
        if ch == "(" || ch == "<" { depth += 1 } else if ch == ")" || ch == ">" { depth -= 1; if depth == 0 { break } } else if ch == "," && depth == 1 { commas += 1 }
    }
    return commas + 1
}
