// A small HTTP/1.1 client over a real TCP socket for the server's tests: one request per connection
// ("Connection: close"), the response read to the end, chunked bodies decoded. Each request runs on a thread of its
// own: blocking reads must not hold Swift's cooperative threads, which the server's handlers need too.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LoRAFormats

/// The C library's send (inside `HTTPTestClient` the name is its own method's).
private func systemSend(_ fd: Int32, _ bytes: UnsafeRawPointer?, _ count: Int, _ flags: Int32) -> Int { send(fd, bytes, count, flags) }

struct HTTPReply: Sendable {
    let status: Int
    let headers: [String: String]
    let body: Data
    var text: String { String(decoding: body, as: UTF8.self) }
    /// The body as a JSON object (nil when it is not one).
    var json: [String: JSONValue]? { (try? JSONValue.parse(body))?.objectValue }
    /// Server-sent events' data lines, in order.
    var events: [String] {
        text.components(separatedBy: "\n\n").compactMap { block in
            block.hasPrefix("data: ") ? String(block.dropFirst(6)) : nil
        }
    }
}

struct HTTPClientError: Error, CustomStringConvertible {
    let description: String
}

enum HTTPTestClient {
    /// `method path` with `body` to 127.0.0.1:`port`; `onFirstBytes` runs once the first bytes of the answer came.
    static func send(port: Int, _ method: String = "POST", _ path: String, body: String? = nil,
                     onFirstBytes: (@Sendable () -> Void)? = nil) async throws -> HTTPReply {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try blockingSend(port: port, method, path, body: body, onFirstBytes: onFirstBytes) })
            }
            thread.start()
        }
    }

    static func post(port: Int, _ path: String, _ body: String) async throws -> HTTPReply { try await send(port: port, "POST", path, body: body) }

    static func blockingSend(port: Int, _ method: String, _ path: String, body: String?,
                             onFirstBytes: (@Sendable () -> Void)?) throws -> HTTPReply {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw HTTPClientError(description: "socket: errno \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw HTTPClientError(description: "connect to port \(port): errno \(errno)") }
        let payload = Data((body ?? "").utf8)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        if body != nil { head += "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\n" }
        let request = Data((head + "\r\n").utf8) + payload
        var sent = 0
        while sent < request.count {
            let n = request.withUnsafeBytes { systemSend(fd, $0.baseAddress! + sent, request.count - sent, 0) }
            guard n > 0 else { throw HTTPClientError(description: "send: errno \(errno)") }
            sent += n
        }
        var response = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        var first = true
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 { throw HTTPClientError(description: "recv: errno \(errno) after \(response.count) bytes") }
            if n == 0 { break }
            if first { onFirstBytes?(); first = false }
            response.append(contentsOf: buffer[0..<n])
        }
        return try parse(response)
    }

    static func parse(_ data: Data) throws -> HTTPReply {
        guard let split = data.range(of: Data("\r\n\r\n".utf8)) else { throw HTTPClientError(description: "no header end in \(data.count) bytes") }
        let lines = String(decoding: data[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw HTTPClientError(description: "bad status line \(lines[0])") }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Data(data[split.upperBound...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var decoded = Data()
            var rest = body[...]
            while let lineEnd = rest.range(of: Data("\r\n".utf8)) {
                let sizeText = String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self)
                guard let size = Int(sizeText.split(separator: ";")[0], radix: 16) else { throw HTTPClientError(description: "bad chunk size \(sizeText)") }
                if size == 0 { break }
                let start = lineEnd.upperBound
                guard rest.endIndex - start >= size else { throw HTTPClientError(description: "truncated chunk") }
                decoded.append(rest[start..<start + size])
                rest = rest[(start + size + 2)...]
            }
            body = decoded
        }
        return HTTPReply(status: status, headers: headers, body: body)
    }
}
