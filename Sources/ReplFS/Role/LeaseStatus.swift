import Foundation

/// The lease as status shows it.
public struct LeaseStatus: Sendable {
    public var type: String
    public var candidate: Bool
    public var state: String
    public var key: String?
    public var expiresIn: Duration?
    public var lastError: String?
    /// When ``lastError`` happened, and whether it still holds (a later
    /// exchange with the coordinator succeeded: it does not).
    public var lastErrorAt: Date?
    public var lastErrorHolds = false
    /// Since the keeper last heard from the coordinator (etcd).
    public var lastContactAgo: Duration?
    /// Failed renewals so far (etcd).
    public var renewFailures: Int = 0
}
