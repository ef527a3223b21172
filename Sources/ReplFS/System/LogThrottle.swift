import Synchronization

/// Says whether a repeated log line is due: at most once per `interval`.
///
/// A fault that every write meets (a full disk) must be in the log, but
/// once, not per write: the log must not become the next thing to fill
/// the disk or to slow the commit path.
final class LogThrottle: Sendable {
    private let interval: UInt64
    /// When the line was last due (monotonic nanoseconds; 0: never).
    private let last = Atomic<UInt64>(0)

    init(interval: Duration = .seconds(60)) {
        let (seconds, attoseconds) = interval.components
        self.interval = UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }

    /// True for the first call, then again once `interval` has passed.
    func isDue(now: UInt64 = MonotonicClock.nanoseconds()) -> Bool {
        let previous = last.load(ordering: .relaxed)
        guard previous == 0 || now &- previous >= interval else { return false }
        return last.compareExchange(expected: previous, desired: max(now, 1), ordering: .relaxed).exchanged
    }
}
