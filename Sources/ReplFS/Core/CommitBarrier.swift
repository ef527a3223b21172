import Synchronization

/// What a commit waits for before it is reported to SQLite, if anything:
/// with `replication.sync-replicas`, that enough replicas hold it.
///
/// The capture calls it after the transaction is logged and its commit
/// point has reached the file, outside the database's lock, so that other
/// databases (and this one's readers) go on meanwhile.
public protocol CommitBarrier: Sendable {
    /// Returns once `txid` of `database` may be reported committed, or the
    /// error the operation that committed it fails with (the application
    /// then never takes the transaction for acknowledged).
    func committed(database: String, txid: TXID) -> Result<Void, FileSystemError>
}

/// The store's barrier, set once replication is wired (none: commits return at once).
final class CommitBarrierSlot: Sendable {
    private let barrier = Mutex<(any CommitBarrier)?>(nil)

    func set(_ value: (any CommitBarrier)?) {
        barrier.withLock { $0 = value }
    }

    var current: (any CommitBarrier)? { barrier.withLock { $0 } }
}
