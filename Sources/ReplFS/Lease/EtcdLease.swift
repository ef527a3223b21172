import Logging

/// Placeholder until the etcd client lands.
public final class EtcdLease: LeaseKeeper, @unchecked Sendable {
    public init(controller: RoleController, config: Config, logger: Logger) throws(ConfigError) {
        throw ConfigError(key: "lease.type", "etcd is not available yet")
    }
    public func start() {}
    public func stop() {}
    public func handoffEpoch(after epoch: UInt64) -> UInt64 { 0 }
    public func released(to target: Peer) {}
    public func resumeAfterFailedHandoff(offered: UInt64) -> UInt64? { nil }
    public func handoffReceived(_ handoff: ReplicationMessage.Handoff) {}
    public func redirected(to primary: Peer, epoch: UInt64, by node: String) {}
    public func forcePromotion() -> Result<UInt64, RoleError> { .failure(RoleError(.failed, "")) }
    public var currentDeadline: UInt64? { nil }
    public var status: LeaseStatus { LeaseStatus(type: "etcd", candidate: false, state: "", key: nil, expiresIn: nil, lastError: nil) }
}
