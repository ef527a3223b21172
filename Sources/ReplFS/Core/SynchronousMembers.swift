/// Which replicas a synchronous primary counts, as it publishes them where
/// a successor looks after a crash (etcd: `<lease key>.sync`).
///
/// The promise it carries: every commit this primary acknowledged is
/// durable on at least `replicas` of `members` (or on `primary` itself).
/// A candidate that takes over after a crash must prove it holds all of
/// them: it must be a member (or the primary named), and compare its
/// position with enough members that any `replicas` of them include one of
/// those it compared with (|members| - replicas + 1), and be the most
/// advanced of those. `degraded`: commits went on unconfirmed
/// (`sync-degrade`), so there is nothing more to prove than without
/// synchronous replication.
public struct SynchronousMembers: Codable, Equatable, Sendable {
    /// The term of the primary that published it.
    public var epoch: Epoch
    public var primary: String
    /// `replication.sync-replicas` of that primary.
    public var replicas: Int
    /// Sorted node names.
    public var members: [String]
    public var degraded: Bool

    public init(epoch: Epoch, primary: String, replicas: Int, members: Set<String>, degraded: Bool) {
        self.epoch = epoch
        self.primary = primary
        self.replicas = replicas
        self.members = members.sorted()
        self.degraded = degraded
    }

    /// How many members' positions a successor must know (its own included).
    public var quorum: Int { max(1, members.count - replicas + 1) }
}

/// Where the primary publishes its ``SynchronousMembers`` (the etcd lease).
/// With a static lease nothing is published: any candidate counts, and
/// `promote` checks by hand.
public protocol SynchronousMembership: AnyObject, Sendable {
    /// What this node published in its current term, or nil (not primary,
    /// or nothing published yet in this term).
    func publishedMembers() -> SynchronousMembers?
    /// Publishes `members` for this node's current term, only while it
    /// still holds the lease; returns whether it did.
    func publish(_ members: SynchronousMembers) -> Bool
    /// This node's name and its current term (nil: not primary).
    var term: (node: String, epoch: Epoch)? { get }
}
