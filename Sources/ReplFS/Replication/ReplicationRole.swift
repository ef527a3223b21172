/// A node of the cluster, by name and replication address.
public struct Peer: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var name: String
    /// `host:port` of its replication listener.
    public var address: String

    public init(name: String, address: String) {
        self.name = name
        self.address = address
    }

    public var description: String { "\(name) (\(address))" }
}

/// What a node says about the primary role in the handshake.
public struct ReplicationView: Sendable, Equatable {
    public var isPrimary: Bool
    /// The primary's epoch, or the highest this node has seen.
    public var epoch: Epoch
    /// The primary as this node knows it (itself when `isPrimary`).
    public var primary: Peer?

    public init(isPrimary: Bool, epoch: Epoch, primary: Peer?) {
        self.isPrimary = isPrimary
        self.epoch = epoch
        self.primary = primary
    }
}

/// The side of the node that owns its role (the lease), as the replication
/// server sees it: the view it shows peers, and the handoff requests and
/// acknowledgements that arrive on replica streams.
///
/// Implementations must not block: they are called on the event loop.
public protocol ReplicationRole: AnyObject, Sendable {
    var replicationView: ReplicationView { get }
    /// A connected replica asks to become the primary (`replfsd promote`).
    func handoffRequested(by node: String)
    /// The handoff's target has applied everything before the marker.
    func handoffAccepted(by node: String)
}

/// A replica connected to this primary, for status, lag and choosing a
/// handoff target.
public struct ConnectedReplica: Sendable {
    public var name: String
    /// Its node ID (random, made with its data directory).
    public var nodeID: UInt64
    /// Its network peer address (as seen here).
    public var peer: String
    /// Its advertised replication address.
    public var address: String
    public var candidate: Bool
    /// The last transaction it acknowledged, per database.
    public var acknowledged: [String: TXID]
    public var lastAcknowledgement: ContinuousClock.Instant?
    /// The last transaction durable in its log, per database (applied or not).
    public var logged: [String: TXID] = [:]

    /// Whether it holds `txid` of `database` durably (logged or applied).
    public func holds(_ database: String, _ txid: TXID) -> Bool {
        max(logged[database] ?? TXID(0), acknowledged[database] ?? TXID(0)) >= txid
    }
}
