@testable import ReplFS

/// Runs blocking test code (socket clients, semaphores) on a thread of its
/// own and returns its result, so that it never holds a thread of the
/// concurrency pool that the server under test needs to answer it.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DetachedThread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Page numbers written as literals in tests (`[1, 5]`, `committedPages[3]`).
extension PageNumber: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: UInt32) {
        self.init(value)
    }
}
