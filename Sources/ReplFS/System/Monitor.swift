#if canImport(Glibc)
import Glibc
#endif

/// A value behind a pthread mutex with a condition variable, for OS threads
/// that must wait (with a deadline) until another thread changes the value.
///
/// ``Locked`` cannot wait, and ``Semaphore`` carries no state: a supervisor's
/// `stop()` must wait "until the child is reaped, or the stop timeout passes",
/// on a thread of its own, never a Swift concurrency thread. The condition
/// uses `CLOCK_MONOTONIC`, so a change of the wall clock neither shortens nor
/// stretches a wait. The pthread objects and the value live on the heap so
/// their addresses never move.
final class Monitor<State: Sendable & Equatable>: @unchecked Sendable {
    /// What a ``wait(_:)`` body decides after looking at the state.
    enum Step<Result> {
        /// Stop waiting and return this.
        case done(Result)
        /// Release the lock and wait for a change (or until the deadline,
        /// if any), then look again. The body must return `.done` once its
        /// deadline has passed.
        case wait(until: ContinuousClock.Instant?)
    }

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let state: UnsafeMutablePointer<State>

    init(_ initial: State) {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        state = .allocate(capacity: 1)
        state.initialize(to: initial)
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        state.deinitialize(count: 1)
        state.deallocate()
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` with the lock held, then wakes every waiter if it changed
    /// the state.
    func withLock<T>(_ body: (inout State) throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try changing(body)
    }

    /// Runs `body` with the lock held until it returns `.done`: after each
    /// `.wait` it sleeps (lock released) until the state changes or the
    /// deadline passes, and runs again. A run of `body` that changes the
    /// state wakes the other waiters (only then: two waiters must not wake
    /// each other for nothing, forever).
    func wait<T>(_ body: (inout State) throws -> Step<T>) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while true {
            switch try changing(body) {
            case .done(let result):
                return result
            case .wait(until: nil):
                pthread_cond_wait(condition, mutex)
            case .wait(until: let deadline?):
                let remaining = deadline - .now
                if remaining <= .zero { continue }
                var until = timespec()
                clock_gettime(CLOCK_MONOTONIC, &until)
                let (seconds, attoseconds) = remaining.components
                let nanoseconds = Int(until.tv_nsec) + Int(attoseconds / 1_000_000_000) + 1
                until.tv_sec += Int(seconds) + nanoseconds / 1_000_000_000
                until.tv_nsec = nanoseconds % 1_000_000_000
                pthread_cond_timedwait(condition, mutex, &until)
            }
        }
    }

    /// Runs `body` (lock held) and broadcasts if the state changed.
    private func changing<T>(_ body: (inout State) throws -> T) rethrows -> T {
        let before = state.pointee
        let result = try body(&state.pointee)
        if state.pointee != before { pthread_cond_broadcast(condition) }
        return result
    }

    /// A copy of the state.
    var value: State { withLock { $0 } }
}
