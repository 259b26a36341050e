// Enumerating OpenCL platforms and devices. Devices are numbered across all platforms in the order the
// ICD loader reports them; that number is the N of `LORA_DEVICE=opencl:N`.

/// What kind of device an OpenCL device is.
public enum OpenCLDeviceKind: String, Sendable {
    case gpu, cpu, accelerator, other
}

/// One OpenCL device and the facts `lora devices` shows.
public struct OpenCLDeviceInfo: @unchecked Sendable, CustomStringConvertible {
    /// Position across all platforms: `opencl:<index>`.
    public let index: Int
    public let platformName: String
    public let platformVersion: String
    public let name: String
    public let vendor: String
    public let driverVersion: String
    /// e.g. `OpenCL 3.0 CUDA`.
    public let openCLVersion: String
    public let kind: OpenCLDeviceKind
    public let computeUnits: Int
    public let globalMemoryBytes: Int
    public let maxAllocationBytes: Int
    public let localMemoryBytes: Int
    public let maxWorkGroupSize: Int
    let platformID: CLHandle
    let deviceID: CLHandle

    public var description: String { "\(name) (\(kind.rawValue), \(platformName), driver \(driverVersion))" }
}

/// Entry points for OpenCL discovery.
public enum OpenCL {
    /// Every OpenCL device on this machine. Throws `OpenCLError.libraryUnavailable` where OpenCL is not installed.
    /// - Parameter library: the ICD loader (nil: `LORA_OPENCL_LIBRARY`, else `libOpenCL.so.1`).
    public static func devices(library: String? = nil) throws -> [OpenCLDeviceInfo] {
        try devices(api: OpenCLAPI.resolve(library))
    }

    /// Whether CLBlast (`libclblast.so.1`) could be loaded.
    public static var isCLBlastAvailable: Bool { CLBlast.shared != nil }

    static func devices(api: OpenCLAPI) throws -> [OpenCLDeviceInfo] {
        var result: [OpenCLDeviceInfo] = []
        for platform in try platforms(api) {
            let platformName = try string(api, platform, CL.PLATFORM_NAME, api.getPlatformInfo)
            let platformVersion = try string(api, platform, CL.PLATFORM_VERSION, api.getPlatformInfo)
            var count: UInt32 = 0
            let status = api.getDeviceIDs(platform, CL.DEVICE_TYPE_ALL, 0, nil, &count)
            if status == CL.DEVICE_NOT_FOUND || count == 0 { continue }
            try api.check(status, "clGetDeviceIDs")
            var ids = [CLHandle?](repeating: nil, count: Int(count))
            try api.check(api.getDeviceIDs(platform, CL.DEVICE_TYPE_ALL, count, &ids, nil), "clGetDeviceIDs")
            for case let id? in ids {
                result.append(try describeDevice(api, id, platform: platform, index: result.count,
                                                 platformName: platformName, platformVersion: platformVersion))
            }
        }
        return result
    }

    private static func platforms(_ api: OpenCLAPI) throws -> [CLHandle] {
        var count: UInt32 = 0
        let status = api.getPlatformIDs(0, nil, &count)
        if status == -1001 || count == 0 { return [] }  // CL_PLATFORM_NOT_FOUND_KHR: no ICD installed
        try api.check(status, "clGetPlatformIDs")
        var ids = [CLHandle?](repeating: nil, count: Int(count))
        try api.check(api.getPlatformIDs(count, &ids, nil), "clGetPlatformIDs")
        return ids.compactMap { $0 }
    }

    private static func describeDevice(_ api: OpenCLAPI, _ id: CLHandle, platform: CLHandle, index: Int,
                                       platformName: String, platformVersion: String) throws -> OpenCLDeviceInfo {
        let info = api.getDeviceInfo
        let type: UInt64 = try scalar(api, id, CL.DEVICE_TYPE, info)
        let kind: OpenCLDeviceKind =
            type & CL.DEVICE_TYPE_GPU != 0 ? .gpu
            : type & CL.DEVICE_TYPE_CPU != 0 ? .cpu
            : type & CL.DEVICE_TYPE_ACCELERATOR != 0 ? .accelerator : .other
        let units: UInt32 = try scalar(api, id, CL.DEVICE_MAX_COMPUTE_UNITS, info)
        let global: UInt64 = try scalar(api, id, CL.DEVICE_GLOBAL_MEM_SIZE, info)
        let maxAlloc: UInt64 = try scalar(api, id, CL.DEVICE_MAX_MEM_ALLOC_SIZE, info)
        let local: UInt64 = try scalar(api, id, CL.DEVICE_LOCAL_MEM_SIZE, info)
        let workGroup: Int = try scalar(api, id, CL.DEVICE_MAX_WORK_GROUP_SIZE, info)
        return OpenCLDeviceInfo(
            index: index, platformName: platformName, platformVersion: platformVersion,
            name: try string(api, id, CL.DEVICE_NAME, info), vendor: try string(api, id, CL.DEVICE_VENDOR, info),
            driverVersion: try string(api, id, CL.DRIVER_VERSION, info),
            openCLVersion: try string(api, id, CL.DEVICE_VERSION, info), kind: kind,
            computeUnits: Int(units), globalMemoryBytes: Int(global), maxAllocationBytes: Int(maxAlloc),
            localMemoryBytes: Int(local), maxWorkGroupSize: workGroup, platformID: platform, deviceID: id)
    }

    typealias InfoFunction = @convention(c) (CLHandle?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32

    static func string(_ api: OpenCLAPI, _ object: CLHandle, _ param: UInt32, _ get: InfoFunction) throws -> String {
        var size = 0
        try api.check(get(object, param, 0, nil, &size), "clGet*Info(0x\(String(param, radix: 16)))")
        var bytes = [UInt8](repeating: 0, count: max(size, 1))
        try api.check(get(object, param, size, &bytes, nil), "clGet*Info(0x\(String(param, radix: 16)))")
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self).trimmingSpaces()
    }

    static func scalar<T: FixedWidthInteger>(_ api: OpenCLAPI, _ object: CLHandle, _ param: UInt32,
                                             _ get: InfoFunction) throws -> T {
        var value: T = 0
        try api.check(get(object, param, MemoryLayout<T>.size, &value, nil), "clGet*Info(0x\(String(param, radix: 16)))")
        return value
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
