// bitsandbytes 4-bit weights in Hugging Face safetensors files, as transformers saves a `Linear4bit`
// (`_save_to_state_dict` + `QuantState.as_dict(packed=True)`), for a quantized linear `<m>`:
//     <m>.weight                                 U8  [(n+1)/2, 1]   packed codes (n = rows·columns)
//     <m>.weight.absmax                          F32 [blocks], or U8 [blocks] with double quantization
//     <m>.weight.quant_map                       F32 [16]           NF4's code book
//     <m>.weight.nested_absmax                   F32 [ceil(blocks / nested_blocksize)]   (double quantization)
//     <m>.weight.nested_quant_map                F32 [256]          the 8-bit dynamic map (double quantization)
//     <m>.weight.quant_state.bitsandbytes__nf4   U8  [bytes]        JSON (BitsAndBytesQuantState.swift)
//     <m>.bias                                   as the model's dtype, unquantized
// Reading validates every tensor against the quant_state and each other before anything is used (a file is
// hostile): each error is a FormatError naming the file and the tensor. FP4 and other quant types, storages other
// than uint8 and dtypes bitsandbytes does not write are refused by name. The NF4 code book in the file must be
// bitsandbytes' (its 4-bit kernels ignore `quant_map` and use their built-in table, so a different one would
// silently mean different weights); the nested map is read from the file, as bitsandbytes reads it.
import Foundation
import LoRAFormats
import LoRARuntime

/// Names of the tensors bitsandbytes stores a 4-bit linear's weight as.
public enum BitsAndBytes4Bit {
    /// The quant-state tensor's name prefix after the module: `.weight.quant_state.bitsandbytes__` + quant type.
    public static let quantStatePrefix = ".weight.quant_state.bitsandbytes__"
    /// Statistic tensors' suffixes after the module (the packed codes are `<module>.weight`).
    public static let statisticSuffixes = [".weight.absmax", ".weight.quant_map", ".weight.nested_absmax", ".weight.nested_quant_map"]

    /// The module a statistic or quant-state tensor belongs to (`m` for `m.weight.absmax` or
    /// `m.weight.quant_state.bitsandbytes__nf4`); nil for any other name, `m.weight` included.
    public static func module(ofStatistic name: String) -> String? {
        if let range = name.range(of: quantStatePrefix, options: .backwards), !name[range.upperBound...].isEmpty,
           !name[range.upperBound...].contains(".") {
            return String(name[..<range.lowerBound])
        }
        for suffix in statisticSuffixes where name.hasSuffix(suffix) { return String(name.dropLast(suffix.count)) }
        return nil
    }

    /// The tensor names a module's quantized weight is stored as, in name order.
    public static func tensorNames(module: String, doubleQuantized: Bool, quantType: String = "nf4") -> [String] {
        var names = [module + ".weight", module + ".weight.absmax", module + ".weight.quant_map",
                     module + quantStatePrefix + quantType]
        if doubleQuantized { names += [module + ".weight.nested_absmax", module + ".weight.nested_quant_map"] }
        return names.sorted()
    }
}

/// Where tensors are read from: a model folder (`SafeTensorsCheckpoint`) or one file.
protocol NF4TensorSource {
    var tensorNames: [String] { get }
    func contains(_ name: String) -> Bool
    func entry(_ name: String) throws -> SafeTensorsFile.Entry
    func withBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R
    func path(of name: String) -> String
}

extension SafeTensorsCheckpoint: NF4TensorSource {
    var tensorNames: [String] { names }
}

extension SafeTensorsFile: NF4TensorSource {
    var tensorNames: [String] { entries.keys.sorted() }
    func contains(_ name: String) -> Bool { entries[name] != nil }
    func path(of name: String) -> String { path }
}

/// A quantized module's tensors, validated; the packed codes are still in the file.
struct ValidatedNF4 {
    let state: BitsAndBytesQuantState
    let rows: Int, columns: Int
    let weightName: String
    let map: [Float]
    let absmax: NF4HostWeight.Absmax
    let dtype: DType
}

extension NF4TensorSource {
    /// Every module with a quant-state tensor, sorted.
    func nf4Modules() -> [String] {
        Set(tensorNames.compactMap { name in name.contains(BitsAndBytes4Bit.quantStatePrefix) ? BitsAndBytes4Bit.module(ofStatistic: name) : nil }).sorted()
    }

    func nf4IsQuantized(_ module: String) -> Bool {
        contains(module + BitsAndBytes4Bit.quantStatePrefix + "nf4")
            || tensorNames.contains { $0.hasPrefix(module + BitsAndBytes4Bit.quantStatePrefix) && BitsAndBytes4Bit.module(ofStatistic: $0) == module }
    }

    /// Checks every tensor of `module`'s quantized weight (see the file header).
    func validateNF4(module: String) throws -> ValidatedNF4 {
        let weightName = module + ".weight"
        func invalid(_ tensor: String, _ reason: String) -> FormatError { .invalid(path: path(of: tensor), reason: "\(tensor): \(reason)") }
        func unsupported(_ tensor: String, _ reason: String) -> FormatError { .unsupported(path: path(of: tensor), reason: "\(tensor): \(reason)") }
        // The usual name is looked up directly; only its absence scans for other quant types (one pass per module
        // would cost a sort of every name in a large checkpoint).
        let nf4Name = module + BitsAndBytes4Bit.quantStatePrefix + "nf4"
        let stateNames = contains(nf4Name) ? [nf4Name] : tensorNames.filter { $0.hasPrefix(module + ".weight.quant_state.") }
        guard let stateName = stateNames.first else {
            throw invalid(weightName, "no \(weightName).quant_state.bitsandbytes__<type> tensor: not a bitsandbytes 4-bit weight")
        }
        guard stateNames.count == 1 else {
            throw invalid(stateName, "\(stateNames.count) quant_state tensors for one weight: \(stateNames.joined(separator: ", "))")
        }
        let typeInName = String(stateName.dropFirst((module + BitsAndBytes4Bit.quantStatePrefix).count))
        guard stateName.hasPrefix(module + BitsAndBytes4Bit.quantStatePrefix), !typeInName.isEmpty else {
            throw invalid(stateName, "a quant_state tensor must be named \(module)\(BitsAndBytes4Bit.quantStatePrefix)<quant type>")
        }
        guard typeInName == "nf4" else {
            throw unsupported(stateName, "quant type \(JSONValue.quote(typeInName))" + (typeInName == "fp4" ? " (bitsandbytes FP4)" : "")
                + " is not supported; only nf4")
        }
        let stateEntry = try entry(stateName)
        guard stateEntry.dtype == .u8, stateEntry.shape.count == 1 else {
            throw invalid(stateName, "quant_state is \(stateEntry.dtype.rawValue) \(stateEntry.shape), expected U8 [bytes]")
        }
        let state = try withBytes(stateName) { try BitsAndBytesQuantState(bytes: $0, tensor: stateName, path: path(of: stateName)) }
        guard state.quantType == typeInName else {
            throw invalid(stateName, "quant_state quant_type \(JSONValue.quote(state.quantType)) disagrees with the tensor's name")
        }
        guard NF4HostWeight.blocksizes.contains(state.blocksize) else {
            throw invalid(stateName, "quant_state blocksize \(state.blocksize) is not one of bitsandbytes' block sizes (powers of two 32...4096)")
        }
        let dtypes: [String: DType] = ["float32": .float32, "bfloat16": .bfloat16, "float16": .float16]
        guard let dtype = dtypes[state.dtype] else {
            throw unsupported(stateName, "quant_state dtype \(JSONValue.quote(state.dtype)) (expected float32, bfloat16 or float16)")
        }
        guard state.shape.count == 2 else {
            throw unsupported(stateName, "quant_state shape \(state.shape): only 2-D (linear) weights are supported")
        }
        let (rows, columns) = (state.shape[0], state.shape[1])
        let (n, overflow) = rows.multipliedReportingOverflow(by: columns)
        guard !overflow, n <= Int(Int32.max) else { throw invalid(stateName, "quant_state shape \(state.shape) is too large") }
        let blocks = (n + state.blocksize - 1) / state.blocksize

        guard contains(weightName) else { throw invalid(stateName, "its packed weight \(weightName) is missing") }
        let weight = try entry(weightName)
        guard weight.dtype == .u8 else {
            throw unsupported(weightName, "packed weight stored as \(weight.dtype.rawValue): only uint8 storage (bnb_4bit_quant_storage \"uint8\") is supported")
        }
        guard weight.count == (n + 1) / 2 else {
            throw invalid(weightName, "\(weight.shape) holds \(weight.count) bytes, but quant_state shape \(state.shape) needs \((n + 1) / 2)")
        }

        func floats(_ name: String, count: Int) throws -> [Float] {
            guard contains(name) else { throw invalid(stateName, "\(name) is missing") }
            let e = try entry(name)
            guard e.dtype == .f32 else { throw unsupported(name, "is \(e.dtype.rawValue), expected F32") }
            guard e.count == count else {
                throw invalid(name, "has \(e.count) elements, expected \(count) for quant_state shape \(state.shape) in blocks of \(state.blocksize)")
            }
            let values = try withBytes(name) { raw in
                (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            }
            if let bad = values.firstIndex(where: { !$0.isFinite }) { throw invalid(name, "element \(bad) is \(values[bad])") }
            return values
        }

        let mapName = module + ".weight.quant_map"
        let map = try floats(mapName, count: 16)
        guard map == BitsAndBytesCodebook.nf4 else {
            throw unsupported(mapName, "is not bitsandbytes' NF4 code book (its 4-bit kernels ignore quant_map and use the standard table)")
        }
        let absmaxName = module + ".weight.absmax"
        let nestedNames = [module + ".weight.nested_absmax", module + ".weight.nested_quant_map"]
        let absmax: NF4HostWeight.Absmax
        if let nested = state.nested {
            guard nested.dtype == "float32" else {
                throw unsupported(stateName, "quant_state nested_dtype \(JSONValue.quote(nested.dtype)) (only float32)")
            }
            guard nested.blocksize >= 1, nested.blocksize <= 4096, nested.blocksize & (nested.blocksize - 1) == 0 else {
                throw invalid(stateName, "quant_state nested_blocksize \(nested.blocksize) is not a power of two up to 4096")
            }
            guard contains(absmaxName) else { throw invalid(stateName, "\(absmaxName) is missing") }
            let codes = try entry(absmaxName)
            guard codes.dtype == .u8 else {
                throw invalid(absmaxName, "is \(codes.dtype.rawValue), but quant_state has nested_offset (double quantization: U8 codes)")
            }
            guard codes.count == blocks else {
                throw invalid(absmaxName, "has \(codes.count) codes, expected \(blocks) for quant_state shape \(state.shape) in blocks of \(state.blocksize)")
            }
            let scales = try floats(nestedNames[0], count: (blocks + nested.blocksize - 1) / nested.blocksize)
            let nestedMap = try floats(nestedNames[1], count: 256)
            absmax = .doubleQuantized(codes: try withBytes(absmaxName) { Array($0) }, map: nestedMap, scales: scales,
                                      offset: nested.offset, blocksize: nested.blocksize)
        } else {
            if let stray = nestedNames.first(where: contains) {
                throw invalid(stray, "present, but quant_state has no nested_offset (no double quantization)")
            }
            guard contains(absmaxName) else { throw invalid(stateName, "\(absmaxName) is missing") }
            let e = try entry(absmaxName)
            guard e.dtype == .f32 else {
                throw invalid(absmaxName, "is \(e.dtype.rawValue), but quant_state has no nested_offset (float32 absmax expected)")
            }
            absmax = .float32(try floats(absmaxName, count: blocks))
        }
        return ValidatedNF4(state: state, rows: rows, columns: columns, weightName: weightName, map: map, absmax: absmax, dtype: dtype)
    }

    func nf4HostWeight(module: String) throws -> NF4HostWeight {
        let v = try validateNF4(module: module)
        let codes = try withBytes(v.weightName) { Array($0) }
        return try NF4HostWeight(rows: v.rows, columns: v.columns, blocksize: v.state.blocksize, codes: codes,
                                 map: v.map, absmax: v.absmax, dtype: v.dtype)
    }

    func nf4Upload(module: String, to backend: any Backend) throws -> NF4Weight {
        let v = try validateNF4(module: module)
        // The statistics are small: go through a host weight without codes, then upload the codes from the mapping.
        let codes = try withBytes(v.weightName) { try backend.upload(bytes: $0, dtype: .uint8, shape: [$0.count]) }
        let deviceAbsmax: NF4Weight.Absmax
        switch v.absmax {
        case .float32(let a): deviceAbsmax = .float32(try backend.upload(a, shape: [a.count]))
        case .doubleQuantized(let c, let m, let s, let offset, let nested):
            let codeTensor = try c.withUnsafeBytes { try backend.upload(bytes: $0, dtype: .uint8, shape: [c.count]) }
            deviceAbsmax = .doubleQuantized(codes: codeTensor, map: try backend.upload(m, shape: [256]),
                                            scales: try backend.upload(s, shape: [s.count]), offset: offset, blocksize: nested)
        }
        return try NF4Weight(rows: v.rows, columns: v.columns, blocksize: v.state.blocksize, codes: codes,
                             map: try backend.upload(v.map, shape: [16]), absmax: deviceAbsmax, dtype: v.dtype)
    }

    /// Checks that every statistic or quant-state tensor belongs to a module with a valid NF4 weight.
    func validateAllNF4() throws -> [String] {
        let modules = nf4Modules()
        var states: [String: [String]] = [:]
        for name in tensorNames where name.contains(".weight.quant_state.") {
            let module = String(name[..<name.range(of: ".weight.quant_state.", options: .backwards)!.lowerBound])
            states[module, default: []].append(name)
        }
        if let (module, names) = states.sorted(by: { $0.key < $1.key }).first(where: { $0.value.count > 1 }) {
            throw FormatError.invalid(path: path(of: names[0]), reason: "\(module).weight: \(names.count) quant_state tensors for one weight: \(names.joined(separator: ", "))")
        }
        for module in modules { _ = try validateNF4(module: module) }
        let known = Set(modules)
        if let stray = tensorNames.first(where: { name in BitsAndBytes4Bit.module(ofStatistic: name).map { !known.contains($0) } ?? false }) {
            throw FormatError.invalid(path: path(of: stray), reason: "\(stray): a bitsandbytes statistic without a quant_state tensor for its weight")
        }
        return modules
    }
}

// MARK: - Public reading API

extension SafeTensorsCheckpoint {
    /// Every module whose weight is bitsandbytes 4-bit (has a `<module>.weight.quant_state.bitsandbytes__*`
    /// tensor), sorted. FP4 modules are listed too; `readNF4` refuses them.
    public var quantizedModules: [String] { nf4Modules() }

    /// Whether `module`'s weight is bitsandbytes 4-bit.
    public func isQuantized(module: String) -> Bool { nf4IsQuantized(module) }

    /// Validates every quantized module and refuses statistic tensors whose module has no quant state.
    /// - Returns: the quantized modules, sorted.
    @discardableResult
    public func validateQuantizedModules() throws -> [String] { try validateAllNF4() }

    /// `module`'s NF4 weight, every tensor validated (FormatErrors name the tensor).
    public func readNF4(module: String) throws -> NF4HostWeight { try nf4HostWeight(module: module) }

    /// `module`'s NF4 weight uploaded to `backend`: the packed codes straight from the mapped file (no host copy
    /// of the weight), the statistics through small host arrays.
    public func uploadNF4(module: String, to backend: any Backend) throws -> NF4Weight {
        try nf4Upload(module: module, to: backend)
    }
}

extension SafeTensorsFile {
    /// Every module with a quant-state tensor in this file, sorted.
    public var quantizedModules: [String] { nf4Modules() }

    /// `module`'s NF4 weight from this one file (see `SafeTensorsCheckpoint.readNF4`).
    public func readNF4(module: String) throws -> NF4HostWeight { try nf4HostWeight(module: module) }
}

// MARK: - Writing

extension NF4HostWeight {
    /// The quant state bitsandbytes would record for this weight.
    public var quantState: BitsAndBytesQuantState {
        let dtypeName = switch dtype { case .bfloat16: "bfloat16"; case .float16: "float16"; default: "float32" }
        var nested: BitsAndBytesQuantState.Nested?
        if case .doubleQuantized(_, _, _, let offset, let b) = absmax { nested = .init(blocksize: b, offset: offset) }
        return BitsAndBytesQuantState(blocksize: blocksize, dtype: dtypeName, shape: [rows, columns], nested: nested)
    }

    /// The tensors transformers saves for a quantized linear `module` (`<module>.weight` U8 `[(n+1)/2, 1]`,
    /// its statistics and quant state; see the file header), sorted by name, for `SafeTensorsWriter`.
    /// The module's bias, if any, is the caller's (unquantized, in the model's dtype).
    public func safeTensorsItems(module: String) -> [SafeTensorsWriter.Item] {
        func bytes(_ values: [UInt8]) -> Data { Data(values) }
        func floats(_ values: [Float]) -> Data {
            var data = Data(count: 4 * values.count)
            data.withUnsafeMutableBytes { out in
                for (i, v) in values.enumerated() { out.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            }
            return data
        }
        let prefix = module + ".weight"
        var items = [
            SafeTensorsWriter.Item(name: prefix, dtype: .u8, shape: [codes.count, 1], bytes: bytes(codes)),
            SafeTensorsWriter.Item(name: prefix + ".quant_map", dtype: .f32, shape: [map.count], bytes: floats(map)),
        ]
        switch absmax {
        case .float32(let a):
            items.append(.init(name: prefix + ".absmax", dtype: .f32, shape: [a.count], bytes: floats(a)))
        case .doubleQuantized(let c, let m, let s, _, _):
            items += [.init(name: prefix + ".absmax", dtype: .u8, shape: [c.count], bytes: bytes(c)),
                      .init(name: prefix + ".nested_absmax", dtype: .f32, shape: [s.count], bytes: floats(s)),
                      .init(name: prefix + ".nested_quant_map", dtype: .f32, shape: [m.count], bytes: floats(m))]
        }
        let json = Array(quantState.jsonText.utf8)
        items.append(.init(name: module + BitsAndBytes4Bit.quantStatePrefix + quantState.quantType, dtype: .u8,
                           shape: [json.count], bytes: Data(json)))
        return items.sorted { $0.name < $1.name }
    }
}
