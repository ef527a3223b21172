/// What a promote or demote did.
public struct RoleChange: Sendable {
    public var primary: String
    public var epoch: Epoch
    public var duration: Duration
}
