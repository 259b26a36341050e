// The JSON bitsandbytes packs into a quantized weight's `weight.quant_state.bitsandbytes__<type>` tensor (uint8
// bytes, `QuantState.as_dict(packed=True)` → `pack_dict_to_tensor`, i.e. Python's `json.dumps`), e.g.
//     {"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [32, 88], "nested_blocksize": 256,
//      "nested_dtype": "float32", "nested_offset": 0.5435470938682556}
// (the nested_* keys only with double quantization). Parsing treats the bytes as hostile: every field is checked and
// any failure names the tensor; writing reproduces bitsandbytes' bytes exactly (key order, `", "` and `": "`
// separators, Python's float repr of the float32 offset).
import Foundation
import LoRAFormats

/// The non-tensor part of a bitsandbytes 4-bit quant state.
public struct BitsAndBytesQuantState: Sendable, Equatable {
    /// Double quantization's fields.
    public struct Nested: Sendable, Equatable {
        public var blocksize: Int
        /// The dtype of the absmax the 8-bit quantization ran on: always "float32" in bitsandbytes' files.
        public var dtype: String
        /// The mean subtracted before quantizing: a float32 value (JSON carries it as a double, which is exact).
        public var offset: Float
        public init(blocksize: Int, dtype: String = "float32", offset: Float) {
            (self.blocksize, self.dtype, self.offset) = (blocksize, dtype, offset)
        }
    }

    public var quantType: String
    public var blocksize: Int
    /// The weight's dtype when quantized: "float32", "bfloat16" or "float16".
    public var dtype: String
    /// The weight's logical shape (`[out, in]` for a linear layer).
    public var shape: [Int]
    public var nested: Nested?

    public init(quantType: String = "nf4", blocksize: Int, dtype: String = "float32", shape: [Int], nested: Nested?) {
        (self.quantType, self.blocksize, self.dtype, self.shape, self.nested) = (quantType, blocksize, dtype, shape, nested)
    }

    /// The keys bitsandbytes writes (`QuantState.valid_qs_keys` minus the tensors); any other key is refused, as
    /// `QuantState.from_dict` refuses it.
    static let keys: Set<String> = ["quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"]

    /// Parses the quant_state bytes of tensor `tensor` in file `path`; each error names both.
    public init(bytes: UnsafeRawBufferPointer, tensor: String, path: String) throws {
        func invalid(_ reason: String) -> FormatError { .invalid(path: path, reason: "\(tensor): \(reason)") }
        guard let text = String(validating: bytes, as: UTF8.self),
              let object = (try? JSONValue.parse(Data(text.utf8)))?.objectValue else {
            throw invalid("the quant_state bytes are not a UTF-8 JSON object")
        }
        if let unknown = object.keys.sorted().first(where: { !Self.keys.contains($0) }) {
            throw invalid("quant_state has an unknown key \(JSONValue.quote(unknown))")
        }
        func field(_ key: String) throws -> JSONValue {
            guard let value = object[key] else { throw invalid("quant_state has no \(JSONValue.quote(key))") }
            return value
        }
        guard let quantType = try field("quant_type").stringValue else { throw invalid("quant_state quant_type is not a string") }
        guard let blocksize = try field("blocksize").intValue else { throw invalid("quant_state blocksize is not an integer") }
        guard let dtype = try field("dtype").stringValue else { throw invalid("quant_state dtype is not a string") }
        guard let dims = try field("shape").arrayValue?.map(\.intValue), dims.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw invalid("quant_state shape is not a list of positive integers")
        }
        let nestedKeys = ["nested_blocksize", "nested_dtype", "nested_offset"].filter { object[$0] != nil }
        var nested: Nested?
        if nestedKeys.count == 3 {
            guard let b = object["nested_blocksize"]?.intValue else { throw invalid("quant_state nested_blocksize is not an integer") }
            guard let d = object["nested_dtype"]?.stringValue else { throw invalid("quant_state nested_dtype is not a string") }
            guard let offset = object["nested_offset"]?.doubleValue, offset.isFinite, Float(offset).isFinite else {
                throw invalid("quant_state nested_offset is not a finite number")
            }
            nested = Nested(blocksize: b, dtype: d, offset: Float(offset))
        } else if !nestedKeys.isEmpty {
            throw invalid("quant_state has \(nestedKeys.joined(separator: ", ")) but not all of nested_blocksize, nested_dtype, nested_offset")
        }
        self.init(quantType: quantType, blocksize: blocksize, dtype: dtype, shape: dims.map { $0! }, nested: nested)
    }

    /// The bytes bitsandbytes writes for this state (Python's `json.dumps` of `as_dict`'s non-tensor items).
    public var jsonText: String {
        var fields = ["\"quant_type\": " + JSONValue.quote(quantType), "\"blocksize\": \(blocksize)",
                      "\"dtype\": " + JSONValue.quote(dtype), "\"shape\": [" + shape.map(String.init).joined(separator: ", ") + "]"]
        if let nested {
            fields += ["\"nested_blocksize\": \(nested.blocksize)", "\"nested_dtype\": " + JSONValue.quote(nested.dtype),
                       "\"nested_offset\": " + pythonFloatRepr(Double(nested.offset))]
        }
        return "{" + fields.joined(separator: ", ") + "}"
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip (Swift's `description` finds the same digits),
/// written positionally when the decimal exponent is in -4...15 and as `d.ddde±XX` otherwise.
func pythonFloatRepr(_ value: Double) -> String {
    guard value.isFinite else { return value.isNaN ? "NaN" : (value < 0 ? "-Infinity" : "Infinity") }
    if value == 0 { return value.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description: "123.45", "1.2e-05", "1e+16", "9.999999999999998e+15". Take its digits and exponent.
    let text = value.magnitude.description
    var mantissa = Substring(text), exponent = 0
    if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        mantissa = text[..<e]
        exponent = Int(text[text.index(after: e)...])!
    }
    let parts = mantissa.split(separator: ".", omittingEmptySubsequences: false)
    let integer = String(parts[0]), fraction = parts.count > 1 ? String(parts[1]) : ""
    // digits d1 d2 ... with the value d1.d2... × 10^point
    var digits = integer + fraction
    var point = integer.count - 1 + exponent
    let leading = digits.prefix { $0 == "0" }.count
    digits.removeFirst(leading)
    point -= leading
    while digits.count > 1 && digits.hasSuffix("0") { digits.removeLast() }
    let sign = value < 0 ? "-" : ""
    if -4 <= point && point < 16 {
        if point < 0 { return sign + "0." + String(repeating: "0", count: -point - 1) + digits }
        if digits.count <= point + 1 { return sign + digits + String(repeating: "0", count: point + 1 - digits.count) + ".0" }
        let cut = digits.index(digits.startIndex, offsetBy: point + 1)
        return sign + digits[..<cut] + "." + digits[cut...]
    }
    let head = String(digits.prefix(1)), tail = String(digits.dropFirst())
    let exponentText = (point < 0 ? "-" : "+") + (abs(point) < 10 ? "0" : "") + String(abs(point))
    return sign + head + (tail.isEmpty ? "" : "." + tail) + "e" + exponentText
}
