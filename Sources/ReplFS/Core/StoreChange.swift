import Synchronization

/// A change to the replicated directory, as the store saw it happen.
///
/// Replication subscribes with a ``StoreObserver``; the store reports every
/// change once it is final (a transaction once its commit point passed, a
/// plain file when it is closed), in the order they happened, so replicas
/// apply plain files and database transactions in the same order.
public enum StoreChange: Sendable {
    /// A committed transaction: its LTX file, and the epoch it was committed in.
    case transaction(database: String, txid: TXID, epoch: Epoch, ltx: LTXContent)
    /// A plain file's whole content and mode.
    case file(path: String, mode: UInt32, content: [UInt8])
    /// A plain file, symbolic link or directory was removed.
    case removed(path: String)
    /// A directory was created (or its mode changed).
    case directory(path: String, mode: UInt32)
    /// A symbolic link was created.
    case symlink(path: String, target: String)
    /// A plain file or directory was renamed.
    case renamed(from: String, to: String)
}

/// Where an LTX file's bytes are: in memory (most transactions), or in a
/// file (snapshots and other large ones, streamed).
public enum LTXContent: Sendable {
    case bytes([UInt8])
    case file(String)
}

/// Receives the store's changes, synchronously, in order. Implementations
/// must be quick: they run on the commit path (for transactions, under the
/// database's lock, so the order per database is the commit order).
public protocol StoreObserver: AnyObject, Sendable {
    func storeDidChange(_ change: StoreChange)
}

/// The store's current observer, shared with its databases.
final class ObserverSlot: Sendable {
    private let observer = Mutex<(any StoreObserver)?>(nil)

    func set(_ value: (any StoreObserver)?) {
        observer.withLock { $0 = value }
    }

    func publish(_ change: StoreChange) {
        observer.withLock { $0 }?.storeDidChange(change)
    }

    var isEmpty: Bool { observer.withLock { $0 == nil } }
}
