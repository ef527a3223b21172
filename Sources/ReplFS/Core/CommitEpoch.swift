import Synchronization

/// The epoch this node commits in while it is the primary: recorded in each
/// database's ``EpochHistory`` with the first transaction of the term.
///
/// 0 until the node first becomes primary (a transaction recorded then, by
/// recovery, continues the epoch of the transaction before it).
final class CommitEpoch: Sendable {
    private let value = Atomic<UInt64>(0)

    var current: Epoch { Epoch(value.load(ordering: .acquiring)) }

    func set(_ epoch: Epoch) {
        value.store(epoch.rawValue, ordering: .releasing)
    }
}
