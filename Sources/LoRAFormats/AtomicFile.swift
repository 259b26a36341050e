// Writes that matter: to `path.tmp-<pid>` in the same folder, flushed to disk, then renamed over `path` (and the
// folder flushed, so renames reach the disk in the order they were made), so a reader, or a crash, sees the old
// file or the new one, never a mixture. The streamed form lets a large file be written without holding it whole.
import Foundation

/// Atomic file replacement.
public enum AtomicFile {
    /// Writes `data` to `path` through a temporary file and a rename.
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { emit in try data.withUnsafeBytes { try emit($0) } }
    }

    /// Writes the bytes `body` passes to its `emit` argument, in order, to `path` through a temporary file and a
    /// rename. Small pieces are gathered into 1 MiB writes. If `body` throws, the temporary file is removed, `path`
    /// is left as it was, and the error is rethrown.
    public static func write(to path: String, _ body: (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw FormatError.io(path: temporary, reason: String(cString: strerror(errno))) }
        let writer = BufferedWriter(fd: fd, path: temporary)
        do {
            try body { try writer.append($0) }
            try writer.flush()
            guard fsync(fd) == 0 else { throw FormatError.io(path: temporary, reason: "fsync: " + String(cString: strerror(errno))) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw FormatError.io(path: path, reason: "rename: " + reason)
        }
        syncFolder(of: path)
    }

    /// Renames `source` over `destination` (same folder), then flushes the folder.
    public static func move(_ source: String, to destination: String) throws {
        guard rename(source, destination) == 0 else {
            throw FormatError.io(path: destination, reason: "rename from \(source): " + String(cString: strerror(errno)))
        }
        syncFolder(of: destination)
    }

    /// Removes `path` if it exists (an error other than "no such file" is thrown), then flushes its folder.
    public static func remove(_ path: String) throws {
        guard unlink(path) == 0 || errno == ENOENT else {
            throw FormatError.io(path: path, reason: "unlink: " + String(cString: strerror(errno)))
        }
        syncFolder(of: path)
    }

    /// Best effort: a folder that cannot be opened or flushed (some file systems refuse) costs only durability.
    private static func syncFolder(of path: String) {
        let folder = (path as NSString).deletingLastPathComponent
        let fd = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}

/// Gathers small writes into one buffer; large ones go straight through.
private final class BufferedWriter {
    let fd: Int32, path: String
    let capacity = 1 << 20
    let buffer: UnsafeMutableRawPointer
    var used = 0

    init(fd: Int32, path: String) {
        (self.fd, self.path) = (fd, path)
        buffer = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { buffer.deallocate() }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if used + bytes.count <= capacity {
            (buffer + used).copyMemory(from: base, byteCount: bytes.count)
            used += bytes.count
            return
        }
        try flush()
        if bytes.count < capacity {
            buffer.copyMemory(from: base, byteCount: bytes.count)
            used = bytes.count
        } else {
            try writeAll(base, bytes.count)
        }
    }

    func flush() throws {
        try writeAll(UnsafeRawPointer(buffer), used)
        used = 0
    }

    private func writeAll(_ start: UnsafeRawPointer, _ count: Int) throws {
        var done = 0
        while done < count {
            let n = Foundation.write(fd, start + done, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw FormatError.io(path: path, reason: String(cString: strerror(errno)))
            }
            done += n
        }
    }
}
