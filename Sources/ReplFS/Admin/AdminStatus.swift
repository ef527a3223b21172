/// What `replfsd status` shows: this node's role and term, its lease, the
/// position of every database, and, depending on the role, the replicas it
/// streams to or the primary it follows.
///
/// It is the JSON of `GET /status` on the admin socket, so scripts and
/// monitoring read exactly what an operator reads. Fields that only apply
/// to one role are optional or empty on the other.
public struct AdminStatus: Codable, Sendable, Equatable {
    /// This node's name (`node`).
    public var node: String
    /// This node's ID (16 hex digits, random, made with its data directory).
    public var nodeID: String?
    /// The cluster name (`cluster`).
    public var cluster: String
    /// "primary", "replica", "candidate", "fenced" or "handing-off".
    public var role: String
    /// Whether the mount accepts writes now (only a primary holding its lease).
    public var writable: Bool
    /// The primary term this node knows of (invariant 5).
    public var epoch: Epoch
    /// The current primary as this node knows it; `nil` when none is known.
    public var primary: Peer?
    public var lease: Lease
    public var databases: [Database]
    /// On the primary: the replicas streaming from it.
    public var replicas: [Replica]
    /// On a replica: its connection to the primary.
    public var upstream: Upstream?
    /// The supervised application (`exec`), if configured.
    public var process: Process?
    /// Databases moved aside when rejoining (invariant 6): kept, never deleted.
    public var asides: [String]
    /// The last error worth an operator's attention, if any.
    public var lastError: String?
    /// When ``lastError`` happened (ISO 8601).
    public var lastErrorAt: String?
    /// Set while the LTX log is held back ("log stalled: no space on DATA").
    public var logStall: String?
    /// Set while replicated transactions cannot be recorded or written
    /// (replica: "apply stalled: ..."); the node does not lead meanwhile.
    public var applyStall: String?
    /// Replication's TLS (`replication.tls`); `nil`: off, the stream is in clear.
    public var tls: TLS?
    /// Synchronous replication (`replication.sync-replicas`); `nil`: asynchronous.
    public var synchronous: Synchronous?
    /// The virtual IP (`vip`): "10.0.0.100/24 on eth0", and whether this
    /// node holds it now.
    public var vip: VirtualIPStatus?
    /// The continuous archive (`backup`), on the primary: where it stands.
    public var backup: ArchiveStatus?

    public struct VirtualIPStatus: Codable, Sendable, Equatable {
        public var address: String
        public var interface: String
        public var held: Bool

        public init(address: String, interface: String, held: Bool) {
            self.address = address
            self.interface = interface
            self.held = held
        }
    }

    public init(
        node: String, cluster: String, role: String, writable: Bool, epoch: Epoch, primary: Peer? = nil, lease: Lease,
        databases: [Database] = [], replicas: [Replica] = [], upstream: Upstream? = nil, process: Process? = nil,
        asides: [String] = [], lastError: String? = nil
    ) {
        self.node = node
        self.cluster = cluster
        self.role = role
        self.writable = writable
        self.epoch = epoch
        self.primary = primary
        self.lease = lease
        self.databases = databases
        self.replicas = replicas
        self.upstream = upstream
        self.process = process
        self.asides = asides
        self.lastError = lastError
    }

    /// Whether commits wait for replicas now.
    public struct Synchronous: Codable, Sendable, Equatable {
        /// `replication.sync-replicas`.
        public var replicas: Int
        /// Going on asynchronously since replicas missed `sync-timeout`
        /// (`sync-degrade: true`), until they catch up.
        public var degraded: Bool
        /// The replicas whose confirmations count, as published for a
        /// successor (etcd lease, on the primary); nil: every candidate counts.
        public var members: [String]?

        public init(replicas: Int, degraded: Bool, members: [String]? = nil) {
            self.replicas = replicas
            self.degraded = degraded
            self.members = members
        }
    }

    /// The certificate replication presents now (after any rotation).
    public struct TLS: Codable, Sendable, Equatable {
        /// The certificate's subject ("CN=node-a,O=ReplFS").
        public var subject: String
        /// The end of its validity (ISO 8601).
        public var notAfter: String
        /// Whole days left (negative once expired).
        public var daysToExpiry: Int

        public init(subject: String, notAfter: String, daysToExpiry: Int) {
            self.subject = subject
            self.notAfter = notAfter
            self.daysToExpiry = daysToExpiry
        }
    }

    /// Another node, by name and replication address.
    public struct Peer: Codable, Sendable, Equatable {
        public var name: String
        public var address: String

        public init(name: String, address: String) {
            self.name = name
            self.address = address
        }
    }

    /// The lease as this node sees it.
    public struct Lease: Codable, Sendable, Equatable {
        /// "static" or "etcd".
        public var type: String
        /// Whether this node may become primary (`lease.candidate`).
        public var candidate: Bool
        /// The keeper's state ("held", "following", "campaigning", ...).
        public var state: String
        /// The etcd key, for an etcd lease.
        public var key: String?
        /// Time left before the lease expires at the coordinator, when held.
        public var expiresInMs: Int?
        public var lastError: String?
        /// When the last error happened (ISO 8601), and whether it still
        /// holds (false once a later exchange with the coordinator succeeded).
        public var lastErrorAt: String?
        public var lastErrorHolds: Bool?
        /// Since this node last heard from the coordinator (etcd): how old
        /// what it shows about the primary is.
        public var lastContactMsAgo: Int?

        public init(type: String, candidate: Bool, state: String, key: String? = nil, expiresInMs: Int? = nil, lastError: String? = nil) {
            self.type = type
            self.candidate = candidate
            self.state = state
            self.key = key
            self.expiresInMs = expiresInMs
            self.lastError = lastError
        }
    }

    /// A database's position (invariant 1) and size.
    public struct Database: Codable, Sendable, Equatable {
        public var name: String
        public var txid: UInt64
        /// The post-apply LTX checksum as 16 hex digits: equal on two nodes means equal bytes.
        public var checksum: String
        /// The epoch in which `txid` was committed (0: not known, a log
        /// from before epochs were recorded). Same TXID and epoch on two
        /// nodes means the same history.
        public var epoch: Epoch?
        public var pageCount: UInt32
        public var pageSize: UInt32

        public init(name: String, txid: UInt64, checksum: String, epoch: Epoch = .unknown, pageCount: UInt32, pageSize: UInt32) {
            self.name = name
            self.txid = txid
            self.checksum = checksum
            self.epoch = epoch
            self.pageCount = pageCount
            self.pageSize = pageSize
        }
    }

    /// A replica as the primary sees it.
    public struct Replica: Codable, Sendable, Equatable {
        public var node: String
        /// Its node ID: a name is bound to one node ID while it is connected.
        public var nodeID: String?
        public var address: String
        public var connected: Bool
        public var databases: [Position]
        /// Milliseconds since its last acknowledgement.
        public var lastAckMsAgo: Int?

        public init(node: String, address: String, connected: Bool, databases: [Position] = [], lastAckMsAgo: Int? = nil) {
            self.node = node
            self.address = address
            self.connected = connected
            self.databases = databases
            self.lastAckMsAgo = lastAckMsAgo
        }

        /// What a replica acknowledged for one database, and how far behind that is.
        public struct Position: Codable, Sendable, Equatable {
            public var name: String
            public var txid: UInt64
            public var lagTransactions: UInt64

            public init(name: String, txid: UInt64, lagTransactions: UInt64) {
                self.name = name
                self.txid = txid
                self.lagTransactions = lagTransactions
            }
        }
    }

    /// A replica's connection to its primary.
    public struct Upstream: Codable, Sendable, Equatable {
        public var primary: String
        public var connected: Bool
        public var lastError: String?
        /// How long the oldest change received from the primary and not
        /// yet applied has waited (0: nothing waits).
        public var lagMs: Int?

        public init(primary: String, connected: Bool, lastError: String? = nil, lagMs: Int? = nil) {
            self.primary = primary
            self.connected = connected
            self.lastError = lastError
            self.lagMs = lagMs
        }
    }

    /// The supervised application.
    public struct Process: Codable, Sendable, Equatable {
        public var command: [String]
        /// "running", "stopped", "starting", "stopping", "backoff", ...
        public var state: String
        public var pid: Int32?
        public var restarts: Int
        /// How it last ended ("exit 1", "signal 9"), if it has.
        public var lastExit: String?
        /// Whether it runs and answered its readiness probe (`exec.ready`).
        public var ready: Bool?
        /// Why a running application is not ready yet.
        public var notReady: String?

        public init(
            command: [String], state: String, pid: Int32? = nil, restarts: Int = 0, lastExit: String? = nil, ready: Bool? = nil, notReady: String? = nil
        ) {
            self.command = command
            self.state = state
            self.pid = pid
            self.restarts = restarts
            self.lastExit = lastExit
            self.ready = ready
            self.notReady = notReady
        }
    }
}
