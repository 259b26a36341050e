// Errors for files read from disk: every file is treated as hostile, so each message names the file and what
// in it is wrong, and nothing is loaded halfway.

/// A file that cannot be read or does not hold what it should.
public enum FormatError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened, read or written (the OS's reason).
    case io(path: String, reason: String)
    /// The file's contents break its format.
    case invalid(path: String, reason: String)
    /// The file is valid but asks for something this project does not support (the field is named).
    case unsupported(path: String, reason: String)

    public var description: String {
        switch self {
        case .io(let path, let reason): "\(path): \(reason)"
        case .invalid(let path, let reason): "\(path): invalid: \(reason)"
        case .unsupported(let path, let reason): "\(path): unsupported: \(reason)"
        }
    }
}
