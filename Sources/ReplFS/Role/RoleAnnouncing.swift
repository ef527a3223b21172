/// What the role controller tells the parts that point clients at the
/// primary (the virtual IP, the role hooks: ``PrimaryAnnouncer``), at the
/// points of a transition where each must happen.
public protocol RoleAnnouncing: Sendable {
    /// This node became the primary at `epoch` (writes open, application
    /// started). Returns at once: the announcement waits for the
    /// application to be ready.
    func becamePrimary(epoch: Epoch)
    /// This node is about to stop being the primary: returns once clients
    /// are no longer sent here (the virtual IP is gone), before the
    /// application stops.
    func leavingPrimary()
    /// This node is not the primary (it follows `primary`, or it lost its
    /// lease and knows no primary). Returns at once.
    func becameReplica(epoch: Epoch, primary: String?)
}
