// A backstop under the depth limits: parsing and rendering are recursive, and the thread they run on may have a
// small stack (a Swift concurrency thread, a test runner's). `StackGuard.run` notes where the current thread's stack
// ends; `StackGuard.check()` throws a `.limit` error once less than `reserve` bytes are left, instead of crashing.
import Foundation

enum StackGuard {
    /// Bytes kept free below the deepest frame the guard allows.
    static let reserve = 256 << 10

    @TaskLocal private static var lowestAllowed: UInt = 0

    /// Runs `body` with the guard set for the current thread (nested runs keep the outer bound).
    static func run<T>(_ body: () throws(TemplateError) -> T) throws(TemplateError) -> T {
        if lowestAllowed != 0 { return try body() }
        let bound = stackLowerBound().map { $0 + UInt(reserve) } ?? 0
        let result: Result<T, TemplateError> = $lowestAllowed.withValue(bound) {
            do throws(TemplateError) { return .success(try body()) } catch { return .failure(error) }
        }
        return try result.get()
    }

    @inline(never)
    static func check() throws(TemplateError) {
        let bound = lowestAllowed
        guard bound != 0 else { return }
        var marker: UInt8 = 0
        let here = withUnsafeMutablePointer(to: &marker) { UInt(bitPattern: $0) }
        if here < bound {
            throw TemplateError(.limit, "template nested too deeply for the thread's stack")
        }
    }

    /// The lowest address of the current thread's stack (stacks grow down on every platform Swift runs on).
    private static func stackLowerBound() -> UInt? {
        #if canImport(Glibc)
        // pthread_getattr_np is a GNU extension the Glibc module does not export; look it up at run time.
        typealias GetAttr = @convention(c) (pthread_t, UnsafeMutablePointer<pthread_attr_t>) -> Int32
        guard let symbol = dlsym(nil, "pthread_getattr_np") else { return nil }
        let getattr = unsafeBitCast(symbol, to: GetAttr.self)
        var attributes = pthread_attr_t()
        guard getattr(pthread_self(), &attributes) == 0 else { return nil }
        defer { pthread_attr_destroy(&attributes) }
        var address: UnsafeMutableRawPointer? = nil
        var size = 0
        guard pthread_attr_getstack(&attributes, &address, &size) == 0, let address else { return nil }
        return UInt(bitPattern: address)
        #elseif canImport(Darwin)
        let top = UInt(bitPattern: pthread_get_stackaddr_np(pthread_self()))
        return top - UInt(pthread_get_stacksize_np(pthread_self()))
        #else
        return nil
        #endif
    }
}
