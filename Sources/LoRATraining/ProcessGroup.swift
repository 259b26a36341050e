// The ranks of a data-parallel job as training sees them: a few collectives on host buffers (MPI provides them in
// the `lora` tool; tests use threads), and what training builds on them: errors every rank learns about, a check that
// every rank runs the same configuration, and variable-length broadcasts.
import Foundation

/// A group of processes (ranks) that train one model together, each on its share of every batch.
/// Every collective must be called by every rank, in the same order, with the same lengths.
public protocol ProcessGroup: AnyObject {
    /// This rank, 0 ..< size; rank 0 writes the files.
    var rank: Int { get }
    var size: Int { get }
    /// Sums `values` over every rank, in place.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
    /// Sums `values` over every rank, in place.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws
    /// Root's `bytes` into every rank's (the same length on each).
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Every rank's `bytes` (the same length on each) side by side in `into`, in rank order.
    func allGather(_ bytes: UnsafeRawBufferPointer, into: UnsafeMutableRawBufferPointer) throws
}

/// What went wrong on which ranks, known to every rank.
public struct ProcessGroupError: Error, CustomStringConvertible, Equatable {
    /// (rank, its message), in rank order.
    public let failures: [(rank: Int, message: String)]
    public let size: Int

    public init(failures: [(rank: Int, message: String)], size: Int) { (self.failures, self.size) = (failures, size) }

    public static func == (a: Self, b: Self) -> Bool {
        a.size == b.size && a.failures.map(\.rank) == b.failures.map(\.rank) && a.failures.map(\.message) == b.failures.map(\.message)
    }

    public var description: String {
        // Ranks that failed the same way are named together.
        var groups: [(ranks: [Int], message: String)] = []
        for failure in failures {
            if let i = groups.firstIndex(where: { $0.message == failure.message }) { groups[i].ranks.append(failure.rank) } else {
                groups.append(([failure.rank], failure.message))
            }
        }
        return groups.map { group in
            let who = group.ranks.count == size ? "every rank" : (group.ranks.count == 1 ? "rank " : "ranks ")
                + (group.ranks.count == size ? "" : group.ranks.map(String.init).joined(separator: ", "))
            return "\(who) of \(size): \(group.message)"
        }.joined(separator: "; ")
    }
}

extension ProcessGroup {
    /// Bytes of one rank's message in `agree` (longer messages are cut).
    static var messageBytes: Int { 1024 }

    /// Runs `body` on every rank; when it throws on any rank, throws on every rank a `ProcessGroupError` naming each
    /// failed rank with its error, so no rank goes on to wait for one that stopped.
    public func agree<T>(_ body: () throws -> T) throws -> T {
        let result = Result { try body() }
        var message = [UInt8](repeating: 0, count: Self.messageBytes)
        if case .failure(let error) = result {
            message[0] = 1
            let text = Array("\(error)".utf8.prefix(Self.messageBytes - 1))
            message.replaceSubrange(1..<(1 + text.count), with: text)
        }
        var all = [UInt8](repeating: 0, count: Self.messageBytes * size)
        try message.withUnsafeBytes { send in try all.withUnsafeMutableBytes { try allGather(send, into: $0) } }
        let failures = (0..<size).compactMap { r -> (rank: Int, message: String)? in
            let block = all[(r * Self.messageBytes)..<((r + 1) * Self.messageBytes)]
            guard block.first == 1 else { return nil }
            let text = block.dropFirst().prefix { $0 != 0 }
            return (r, String(decoding: text, as: UTF8.self))
        }
        guard failures.isEmpty else { throw ProcessGroupError(failures: failures, size: size) }
        return try result.get()
    }

    /// `bytes` of rank `root`, on every rank (any length: the length goes first).
    public func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
        var count = [Double(bytes.count)]
        try count.withUnsafeMutableBytes { try broadcast($0, root: root) }
        var result = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count[0]))
        try result.withUnsafeMutableBytes { try broadcast($0, root: root) }
        return result
    }

    /// Checks that every rank runs with the same `settings` (model, data, flags): rank 0's are sent to every rank,
    /// each compares them with its own, and every rank throws, naming the ranks and the settings that differ, when
    /// any does. Cheap (a few kilobytes once), so it runs before anything is trained.
    public func requireSameSettings(_ settings: [String: String]) throws {
        let encoded = try JSONSerialization.data(withJSONObject: settings, options: [.sortedKeys])
        let root = try broadcast(Array(encoded), root: 0)
        let reference = (try JSONSerialization.jsonObject(with: Data(root))) as? [String: String] ?? [:]
        try agree {
            let differing = Set(settings.keys).union(reference.keys).filter { settings[$0] != reference[$0] }.sorted()
            guard differing.isEmpty else {
                throw TrainingError.invalidSetup("this rank's configuration differs from rank 0's: "
                    + differing.map { "\($0) is \(settings[$0] ?? "unset") here but \(reference[$0] ?? "unset") on rank 0" }
                        .joined(separator: "; ")
                    + " (every rank must run the same command on the same files)")
            }
        }
    }
}
