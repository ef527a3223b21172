import Foundation
import Logging
import Synchronization

/// Removes LTX files older than `retention` (config key `retention`), so
/// disk use stays bounded under a steady write load.
///
/// The newest file of each database is always kept: it records the
/// position. Files go whole (a segment holds thousands of transactions). A replica whose position falls out of the retained files is
/// brought up to date with a snapshot instead of files.
public final class LogRetention: Sendable {
    private let store: Store
    private let retention: Duration
    private let logger: Logger
    private let passes = Locked<PeriodicTask?>(nil)

    public init(store: Store, retention: Duration, logger: Logger) {
        self.store = store
        self.retention = retention
        self.logger = logger
    }

    /// Prunes every quarter of `retention` (at least every 0.2 s, at most
    /// every 10 s), until ``stop()``.
    public func start() {
        let task = PeriodicTask(every: min(max(retention / 4, .milliseconds(200)), .seconds(10))) { [self] in prune() }
        passes.withLock { $0 = task }
        task.start()
    }

    public func stop() {
        passes.value?.stop()
    }

    /// One pass over every database's log; returns how many files went.
    ///
    /// A segment goes once its newest record is older than `retention`; the
    /// segment being written is sealed once its first record is half that
    /// old, so a log keeps between one and one and a half times `retention`.
    @discardableResult
    public func prune(now: Date = Date()) -> Int {
        let seconds = Double(retention.components.seconds) + Double(retention.components.attoseconds) / 1e18
        let cutoff = Int(now.addingTimeInterval(-seconds).timeIntervalSince1970)
        let sealAge = UInt64(seconds / 2 * 1e9)
        let monotonic = MonotonicClock.nanoseconds()
        let sealBefore = monotonic > sealAge ? monotonic - sealAge : 0
        var removed = 0
        for database in store.databases.withLock({ Array($0.values) }) {
            removed += database.pruneLog(modifiedBefore: cutoff, sealBefore: sealBefore)
        }
        if removed > 0 { logger.debug("retention removed LTX files", metadata: ["files": "\(removed)"]) }
        // What a burst of commits left free in the heap goes back once its
        // records expire, so an idle node's memory falls again.
        if removed > 0 { Syscall.releaseFreeMemory() }
        return removed
    }
}
