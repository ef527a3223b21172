import Foundation

/// What the role controller keeps under its lock, and the picture of it
/// that status shows.
extension RoleController {
    struct State {
        var role: NodeRole
        var epoch: Epoch
        var primary: Peer?
        var client: ReplicaClient?
        var lastError: String? {
            didSet { lastErrorAt = lastError == nil ? nil : Date() }
        }
        var lastErrorAt: Date?
        /// The node a handoff in progress waits for, and its signal.
        var handoff: (target: String, accepted: Semaphore)?
        /// Set by ``shutdown()``: no more transitions.
        var closed = false
    }

    /// A consistent picture for status.
    public struct Snapshot: Sendable {
        public var role: NodeRole
        public var epoch: Epoch
        public var primary: Peer?
        public var writable: Bool
        public var upstream: ReplicaClient.Status?
        public var replicas: [ConnectedReplica]
        public var lastError: String?
        /// When ``lastError`` happened.
        public var lastErrorAt: Date?
    }
}
