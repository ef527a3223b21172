/// What a lease keeper saw. The keeper decides nothing about the node: it
/// reports, and the ``RoleController`` carries the event out in the order
/// that keeps the invariants (design.md, invariants 3 to 5).
public enum LeaseEvent: Sendable {
    /// This node holds the lease for `epoch`, until `deadline` (CLOCK_MONOTONIC
    /// nanoseconds; nil for a lease without one). While the last replicated
    /// transactions apply before it takes office, `keepLease` is called every
    /// 100 ms: it renews the lease when due and returns the deadline it
    /// allows, or nil once the lease is lost.
    case elected(epoch: Epoch, deadline: UInt64?, keepLease: (@Sendable () -> UInt64?)?)
    /// The lease was renewed: writes may go on until `deadline`.
    case renewed(deadline: UInt64)
    /// Another node holds the lease (or was handed it) at `epoch`: follow it.
    case following(Peer, epoch: Epoch)
    /// The lease is lost (expired, taken away, not renewed in time): writes
    /// stop at once, then the application.
    case lost(reason: String)
    /// Something an operator should see in `status`.
    case failed(String)

    /// Elected without a deadline (a static lease).
    public static func elected(epoch: Epoch) -> LeaseEvent {
        .elected(epoch: epoch, deadline: nil, keepLease: nil)
    }
}

/// The node as a lease keeper sees it: what it needs to decide whether to
/// campaign and whom to follow, and the one door through which it reports
/// what happened. ``RoleController`` is the implementation.
public protocol LeaseHost: AnyObject, Sendable {
    /// Who this node is (name, address, candidacy).
    var identity: ReplicaClient.Identity { get }
    var role: NodeRole { get }
    var epoch: Epoch { get }
    var snapshot: RoleController.Snapshot { get }
    /// Why this node must not lead now (a stalled apply), if it must not.
    var cannotLead: String? { get }
    /// The epoch and primary persisted in `DATA/node.json`.
    func storedState() -> NodeState
    /// Where each database of this node stands (what a candidate publishes).
    func positions() -> [(database: String, position: Position)]
    /// Carries out `event` and returns once it is done (on the role queue;
    /// at once when called from it).
    func report(_ event: LeaseEvent)
}
