// The OpenCL backend: one context and one in-order queue on one device. Ops enqueue kernels and return;
// nothing is flushed per op, and only `download`/`synchronize` wait. A second in-order queue carries only
// `beginTransfer`'s copies, fenced against the first with events (OpenCLBackend+HostMemory.swift). Programs are built once per
// (file, options) and cached for the life of the backend; buffers come from a caching pool.
import Foundation
import LoRARuntime

/// An argument of a kernel launch.
enum KernelArgument {
    case tensor(Tensor)
    case int(Int)
    /// An OpenCL `long` (64-bit), for offsets that may pass 2³¹.
    case long(Int)
    /// An OpenCL `uint`, for bit patterns (hash seeds, thresholds).
    case uint(UInt32)
    case float(Float)
}

/// Runs every op on one OpenCL device.
public final class OpenCLBackend: Backend, @unchecked Sendable {
    public let name: String
    public let device: OpenCLDeviceInfo
    public var deviceDescription: String { "\(device.name) (\(device.platformName), \(device.openCLVersion), driver \(device.driverVersion))" }
    /// The device's global memory.
    public var memoryCapacity: Int? { device.globalMemoryBytes }
    /// Whether CLBlast is loaded for this backend's GEMMs.
    public var hasCLBlast: Bool { clblast != nil }

    let api: OpenCLAPI
    let context: CLContext
    let queue: CLQueue
    /// Copies that may overlap the kernels of `queue` (`beginTransfer`); nothing else runs here.
    let transferQueue: CLQueue
    let pool: BufferPool
    let clblast: CLBlast?
    let kernelsDirectory: String?
    /// Guards the caches and kernel argument setting (a cl_kernel's arguments are not thread-safe).
    let lock = NSRecursiveLock()
    private var programs: [String: CLProgram] = [:]
    /// Created kernels by `file \0 options \0 name` (OpenCLBackend+KernelInventory.swift lists them).
    var kernels: [String: CLKernel] = [:]
    var chosenGEMMEngine: GEMMEngineChoice?
    /// The kernels' tunables (KernelParameters.swift); `lora tune` swaps them while it measures.
    var parameters: KernelParameters
    /// Where `kernelParameters` came from: "defaults", or "tuned: <cache file>" (TuningCache.swift).
    public private(set) var kernelParametersOrigin: String
    /// Why the device's tuning cache file was ignored (also printed on stderr), or nil.
    public private(set) var tuningCacheWarning: String?

    /// Opens device `opencl:<index>`.
    /// - Parameters:
    ///   - kernelsDirectory: load kernel sources from this folder instead of the embedded copies
    ///     (nil: `LORA_KERNELS_DIR` when set, else the embedded copies).
    ///   - useCLBlast: allow CLBlast for GEMM where it is installed.
    ///   - library: the OpenCL ICD loader to use (nil: `LORA_OPENCL_LIBRARY`, else `libOpenCL.so.1`).
    ///   - tuning: where the kernels' parameters come from (default: `lora tune`'s cache for this device, if any).
    public convenience init(index: Int, kernelsDirectory: String? = nil, useCLBlast: Bool = true,
                            library: String? = nil, tuning: KernelTuning = .cache(directory: nil)) throws {
        let api = try OpenCLAPI.resolve(library)
        let devices = try OpenCL.devices(api: api)
        guard devices.indices.contains(index) else {
            throw OpenCLError.deviceNotFound(requested: index, available: devices.map(\.description))
        }
        try self.init(device: devices[index], api: api,
                      kernelsDirectory: kernelsDirectory ?? environment("LORA_KERNELS_DIR"), useCLBlast: useCLBlast,
                      tuning: tuning)
    }

    init(device: OpenCLDeviceInfo, api: OpenCLAPI, kernelsDirectory: String?, useCLBlast: Bool,
         tuning: KernelTuning = .cache(directory: nil)) throws {
        (self.device, self.api, self.kernelsDirectory) = (device, api, kernelsDirectory)
        name = "opencl:\(device.index)"
        (parameters, kernelParametersOrigin, tuningCacheWarning) = try Self.resolve(tuning, device: device, kernelsDirectory: kernelsDirectory)
        if let tuningCacheWarning { FileHandle.standardError.write(Data("warning: \(tuningCacheWarning)\n".utf8)) }
        var status: Int32 = 0
        var deviceID: CLHandle? = device.deviceID
        let context = api.createContext(nil, 1, &deviceID, nil, nil, &status)
        try api.check(status, "clCreateContext")
        self.context = CLContext(context!, release: api.releaseContext)
        let queue = api.createCommandQueue(context, device.deviceID, 0, &status)
        try api.check(status, "clCreateCommandQueue")
        self.queue = CLQueue(queue!, release: api.releaseCommandQueue)
        let transferQueue = api.createCommandQueue(context, device.deviceID, 0, &status)
        try api.check(status, "clCreateCommandQueue")
        self.transferQueue = CLQueue(transferQueue!, release: api.releaseCommandQueue)
        pool = BufferPool(api: api, context: self.context, deviceName: device.name)
        clblast = useCLBlast ? CLBlast.shared : nil
    }

    deinit {
        _ = api.finish(queue.handle)
        _ = api.finish(transferQueue.handle)
    }

    /// The cl_mem of a tensor this backend owns.
    func buffer(_ t: Tensor) -> CLHandle { unsafeDowncast(t.storage, to: CLBufferStorage.self).handle }

    // MARK: - Memory

    /// Every byte cleared with the queue's fill command (any dtype).
    public func zeros(_ shape: [Int], dtype: DType) throws -> Tensor {
        let t = try empty(shape, dtype: dtype)
        var zero: UInt8 = 0
        try api.check(api.enqueueFillBuffer(queue.handle, buffer(t), &zero, 1, 0, t.byteCount, 0, nil, nil), "clEnqueueFillBuffer")
        return t
    }

    /// A tensor holding whatever its pooled buffer last held, until written.
    public func empty(_ shape: [Int], dtype: DType) throws -> Tensor {
        try Tensor.validate(shape: shape)
        let bytes = shape.reduce(1, *) * dtype.size
        guard bytes <= device.maxAllocationBytes else {
            throw OpenCLError.outOfMemory(bytes: bytes, device: "\(device.name) (largest allocation \(device.maxAllocationBytes) bytes)")
        }
        return try Tensor(shape: shape, dtype: dtype, storage: pool.allocate(bytes: bytes), backend: self)
    }

    public func upload(_ values: [Float], shape: [Int]) throws -> Tensor {
        try validateUpload(values, shape: shape)
        return try values.withUnsafeBytes { try write($0, into: empty(shape)) }
    }

    public func upload(bytes: UnsafeRawBufferPointer, dtype: DType, shape: [Int]) throws -> Tensor {
        try validateUpload(bytes: bytes, dtype: dtype, shape: shape)
        return try write(bytes, into: empty(shape, dtype: dtype))
    }

    /// Writes `bytes` (the whole tensor) and waits until the driver has taken them.
    private func write(_ bytes: UnsafeRawBufferPointer, into t: Tensor) throws -> Tensor {
        try api.check(api.enqueueWriteBuffer(queue.handle, buffer(t), CL.TRUE, 0, bytes.count, bytes.baseAddress, 0, nil, nil),
                      "clEnqueueWriteBuffer")
        return t
    }

    public func download(_ tensor: Tensor) throws -> [Float] {
        try requireOwned("download", tensor)
        try tensor.requireDType([.float32], op: "download", operand: "the tensor")
        var values = [Float](repeating: 0, count: tensor.count)
        try values.withUnsafeMutableBytes { try read(tensor, into: $0) }
        return values
    }

    public func downloadBytes(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws {
        try validateDownload(tensor, into: bytes)
        try read(tensor, into: bytes)
    }

    /// Reads the whole tensor into `bytes` after the queued work.
    private func read(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws {
        try api.check(api.enqueueReadBuffer(queue.handle, buffer(tensor), CL.TRUE, 0, bytes.count, bytes.baseAddress, 0, nil, nil),
                      "clEnqueueReadBuffer")
    }

    /// Bytes of device memory the buffer pool holds for reuse (freed tensors' buffers).
    public var cachedMemoryBytes: Int { pool.cachedBytes }

    /// Returns the pool's cached buffers to the driver (live tensors keep theirs).
    public func releaseCachedMemory() { pool.trim() }

    /// Waits for both queues (the compute queue first: a transfer may wait on a marker there).
    public func synchronize() throws {
        try api.check(api.finish(queue.handle), "clFinish")
        try api.check(api.finish(transferQueue.handle), "clFinish")
    }

    // MARK: - Programs and launches

    /// The built program for `Kernels/<file>.cl` with `options`, building it on first use.
    /// A failed build throws `OpenCLError.buildFailed` carrying the compiler's log.
    func program(_ file: String, options: String = "") throws -> CLProgram {
        try lock.withLock {
            let key = file + "\u{0}" + options
            if let cached = programs[key] { return cached }
            // common.cl (shared helpers) goes in front of every file; build logs count lines from its start.
            let source = try KernelSources.source(named: "common", directory: kernelsDirectory) + "\n"
                + KernelSources.source(named: file, directory: kernelsDirectory)
            let built = try build(source: source, name: file + ".cl", options: options)
            programs[key] = built
            return built
        }
    }

    /// Compiles OpenCL C source for this device.
    func build(source: String, name: String, options: String) throws -> CLProgram {
        var status: Int32 = 0
        let handle: CLHandle? = source.withCString { text in
            var pointer: UnsafePointer<CChar>? = text
            var length = strlen(text)
            return api.createProgramWithSource(context.handle, 1, &pointer, &length, &status)
        }
        try api.check(status, "clCreateProgramWithSource(\(name))")
        let program = CLProgram(handle!, release: api.releaseProgram)
        var deviceID: CLHandle? = device.deviceID
        let buildStatus = api.buildProgram(program.handle, 1, &deviceID, options, nil, nil)
        if buildStatus != CL.SUCCESS {
            let log = (try? buildLog(program)) ?? "(no build log available)"
            if buildStatus == -11 || buildStatus == -43 {  // CL_BUILD_PROGRAM_FAILURE, CL_INVALID_BUILD_OPTIONS
                throw OpenCLError.buildFailed(program: name, options: options, log: log)
            }
            try api.check(buildStatus, "clBuildProgram(\(name))")
        }
        return program
    }

    private func buildLog(_ program: CLProgram) throws -> String {
        var size = 0
        try api.check(api.getProgramBuildInfo(program.handle, device.deviceID, CL.PROGRAM_BUILD_LOG, 0, nil, &size), "clGetProgramBuildInfo")
        var bytes = [UInt8](repeating: 0, count: max(size, 1))
        try api.check(api.getProgramBuildInfo(program.handle, device.deviceID, CL.PROGRAM_BUILD_LOG, size, &bytes, nil), "clGetProgramBuildInfo")
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The kernel `name` of a program, created once and reused.
    func kernel(_ name: String, file: String, options: String = "") throws -> CLKernel {
        try lock.withLock {
            let key = file + "\u{0}" + options + "\u{0}" + name
            if let cached = kernels[key] { return cached }
            var status: Int32 = 0
            let handle = api.createKernel(try program(file, options: options).handle, name, &status)
            try api.check(status, "clCreateKernel(\(name))")
            let created = CLKernel(handle!, release: api.releaseKernel)
            kernels[key] = created
            return created
        }
    }

    /// The largest work-group size the device allows for `kernel`.
    func maxWorkGroupSize(_ kernel: CLKernel) throws -> Int {
        var size = 0
        try api.check(api.getKernelWorkGroupInfo(kernel.handle, device.deviceID, CL.KERNEL_WORK_GROUP_SIZE,
                                                 MemoryLayout<Int>.size, &size, nil), "clGetKernelWorkGroupInfo")
        return size
    }

    /// The work-group size for a kernel that reduces over rows of `cols` with common.cl's helpers: a power of two,
    /// at most `cap` (the program's GROUP_MAX: the family's `.WG` parameter) and the kernel's limit on the device,
    /// and no wider than the row needs.
    func rowGroupSize(_ kernel: CLKernel, cols: Int, cap: Int = 256) throws -> Int {
        let limit = min(cap, try maxWorkGroupSize(kernel), max(1, cols))
        var size = 1
        while size * 2 <= limit { size *= 2 }
        return size
    }

    /// Sets the arguments of `kernel` and enqueues it over `global` work-items (rounded up to `local`).
    /// Ints are passed as OpenCL `int`; the caller keeps tensors alive until the queue has run
    /// (tensors recycle their buffer into the pool, which only ever hands it to later commands of this queue).
    func launch(_ kernel: CLKernel, global: [Int], local: [Int]? = nil, _ arguments: [KernelArgument]) throws {
        try lock.withLock {
            for (index, argument) in arguments.enumerated() {
                let status: Int32
                switch argument {
                case .tensor(let t):
                    var handle: CLHandle? = buffer(t)
                    status = api.setKernelArg(kernel.handle, UInt32(index), MemoryLayout<CLHandle>.size, &handle)
                case .int(let value):
                    var v = Int32(clamping: value)
                    status = api.setKernelArg(kernel.handle, UInt32(index), 4, &v)
                case .long(let value):
                    var v = Int64(value)
                    status = api.setKernelArg(kernel.handle, UInt32(index), 8, &v)
                case .uint(let value):
                    var v = value
                    status = api.setKernelArg(kernel.handle, UInt32(index), 4, &v)
                case .float(let value):
                    var v = value
                    status = api.setKernelArg(kernel.handle, UInt32(index), 4, &v)
                }
                try api.check(status, "clSetKernelArg(\(index))")
            }
            var globalSize = global
            if let local {
                for d in global.indices { globalSize[d] = (global[d] + local[d] - 1) / local[d] * local[d] }
            }
            let status: Int32 = local.map { local in
                api.enqueueNDRangeKernel(queue.handle, kernel.handle, UInt32(global.count), nil, globalSize, local, 0, nil, nil)
            } ?? api.enqueueNDRangeKernel(queue.handle, kernel.handle, UInt32(global.count), nil, globalSize, nil, 0, nil, nil)
            try api.check(status, "clEnqueueNDRangeKernel")
        }
    }
}
