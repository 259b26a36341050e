// The one error type of the data path: a file, the 1-based line in it when there is one, and what is wrong there.

/// Training data (or a model folder's chat settings) that cannot be used.
public struct DataError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String
    /// 1-based line of a JSONL file; 0 when the problem is the file as a whole.
    public let line: Int
    public let message: String

    public init(file: String, line: Int = 0, _ message: String) {
        (self.file, self.line, self.message) = (file, line, message)
    }

    public var description: String { line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)" }
}
