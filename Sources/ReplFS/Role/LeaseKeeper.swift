import Foundation

/// What decides the role: a static configuration (with handoffs by hand) or
/// a lease in etcd. The ``RoleController`` carries the decisions out and
/// asks the keeper where a decision depends on the kind of lease.
public protocol LeaseKeeper: AnyObject, Sendable {
    /// Starts deciding (the initial role, then changes).
    func start()
    /// Stops; a primary releases its lease so another node can take over at once.
    func stop()
    /// The epoch a handoff offers: static, the next one; etcd, 0 (the target
    /// takes the lease and its key's revision).
    func handoffEpoch(after epoch: Epoch) -> Epoch
    /// The handoff's target confirmed: let it take the role (etcd: revoke).
    func released(to target: Peer)
    /// The target did not confirm: the epoch to resume at, or nil to stay fenced.
    func resumeAfterFailedHandoff(offered: Epoch) -> Epoch?
    /// A handoff marker reached this replica (everything before it applied).
    func handoffReceived(_ handoff: ReplicationMessage.Handoff)
    /// A peer this node tried to follow named another primary.
    func redirected(to primary: Peer, epoch: Epoch, by node: String)
    /// `promote --force` with the primary unreachable.
    func forcePromotion() -> Result<Epoch, RoleError>
    /// When writes must stop (monotonic nanoseconds), if the lease sets it.
    var currentDeadline: UInt64? { get }
    var status: LeaseStatus { get }
}
