#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Admits the mount's mutating operations while this node may write, and
/// lets a role change wait for the ones already admitted.
///
/// Closing the gate is what "stop accepting writes" means: after
/// ``close()`` returns, no operation that changes a file is running and none
/// will start, so whatever follows (a handoff marker in the stream, a new
/// primary) comes after every change this node made. Each operation counts
/// itself in before it checks that the gate is open (both sequentially
/// consistent), so the closer's drain cannot miss it.
///
/// The gate also closes by itself at a deadline on this node's monotonic
/// clock: the time by which the lease could expire at the coordinator. A
/// primary that cannot renew (partitioned, or stopped and resumed) then
/// refuses writes even if no thread of it has run since.
final class WriteGate: Sendable {
    private let isOpen: Atomic<Bool>
    private let inFlight = Atomic<Int>(0)
    /// CLOCK_MONOTONIC nanoseconds after which writes are refused; 0: none.
    private let deadline = Atomic<UInt64>(0)

    init(open: Bool) {
        isOpen = Atomic(open)
    }

    /// Whether a mutating operation would be admitted now.
    /// Whether writes were opened and not closed since (the deadline may
    /// have passed).
    var isOpened: Bool { isOpen.load(ordering: .sequentiallyConsistent) }

    var admits: Bool { isOpen.load(ordering: .sequentiallyConsistent) && withinDeadline() }

    /// Counts an operation in; false (and not counted) when the gate is closed.
    @inline(__always)
    func enter() -> Bool {
        inFlight.wrappingAdd(1, ordering: .sequentiallyConsistent)
        if isOpen.load(ordering: .sequentiallyConsistent) && withinDeadline() { return true }
        inFlight.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        return false
    }

    /// Counts an admitted operation out.
    @inline(__always)
    func leave() {
        inFlight.wrappingSubtract(1, ordering: .sequentiallyConsistent)
    }

    /// Opens the gate, until `deadline` (monotonic nanoseconds) if given.
    func open(until deadline: UInt64? = nil) {
        self.deadline.store(deadline ?? 0, ordering: .sequentiallyConsistent)
        isOpen.store(true, ordering: .sequentiallyConsistent)
    }

    /// Moves the deadline (a lease renewal).
    func extend(until deadline: UInt64) {
        self.deadline.store(deadline, ordering: .sequentiallyConsistent)
    }

    /// Closes the gate and waits until every admitted operation has finished.
    func close() {
        isOpen.store(false, ordering: .sequentiallyConsistent)
        while inFlight.load(ordering: .sequentiallyConsistent) > 0 { usleep(50) }
    }

    /// Nanoseconds since the deadline passed while the gate is open (a
    /// primary that could not renew), nil otherwise.
    var deadlinePassedAgo: UInt64? {
        let limit = deadline.load(ordering: .relaxed)
        let now = MonotonicClock.nanoseconds()
        guard isOpen.load(ordering: .sequentiallyConsistent), limit != 0, now >= limit else { return nil }
        return now - limit
    }

    @inline(__always)
    private func withinDeadline() -> Bool {
        let limit = deadline.load(ordering: .relaxed)
        return limit == 0 || MonotonicClock.nanoseconds() < limit
    }
}
