/// A lease etcd granted: its ID, to attach keys to and keep alive, and the TTL
/// etcd actually chose (it raises anything below its minimum, 2 s by default).
public struct EtcdLeaseGrant: Sendable, Equatable {
    /// The lease ID, unique in the cluster; pass it to `keepAlive`, `revoke`
    /// and `createIfAbsent`.
    public var id: Int64
    /// How long the lease lives without a keepalive, as granted.
    public var ttl: Duration

    /// Builds a grant (the client builds them from replies).
    public init(id: Int64, ttl: Duration) {
        self.id = id
        self.ttl = ttl
    }
}
