import Foundation

/// The daemon's configuration, as read from YAML (see `etc/replfsd.yml`).
///
/// Every key has a default except `mount` and `data`. With no `lease`
/// section the node is a lone primary (static lease, no peers).
public struct Config: Sendable, Equatable {
    /// Name of the cluster; a data directory remembers it and refuses another.
    public var cluster = "replfs"
    /// This node's name (default: the host name).
    public var node: String
    /// What applications open.
    public var mount: String
    /// Real files, LTX logs, node state.
    public var data: String
    public var replication = Replication()
    public var lease = Lease()
    public var admin = Admin()
    public var exec: Exec?
    public var metrics = Metrics()
    public var http = HTTP()
    /// `hooks`: commands run after a role change.
    public var hooks: Hooks?
    /// `vip`: the virtual IP the primary holds.
    public var vip: VIP?
    /// `backup`: the continuous archive the primary writes.
    public var backup: Backup?
    /// Keys of the design that this version reads and validates but does
    /// not act on yet, in the order they appear: ``requireImplemented()``
    /// refuses them at start.
    public var pending: [String] = []
    /// How long LTX files are kept for catch-up.
    public var retention: Duration = .seconds(600)

    /// `backup`: Litestream 0.5 file replicas of every database (and the
    /// plain files' versions) under `path`, for point-in-time restore.
    public struct Backup: Sendable, Equatable {
        public var path: String
        public var retention: Duration = .seconds(168 * 3600)
        public var snapshotInterval: Duration = .seconds(24 * 3600)
    }

    public struct Replication: Sendable, Equatable {
        public var listen = "0.0.0.0:20202"
        public var advertise: String?
        public var tokenFile: String?
        public var tls: TLS?
        public var syncReplicas = 0
        public var syncTimeout: Duration = .seconds(10)
        public var syncDegrade = false
    }

    /// A node's TLS files: its certificate (with any intermediates after
    /// it), its private key, and the CA bundle its peers' certificates must
    /// chain to (PEM files, re-read when they change).
    public struct TLS: Sendable, Equatable {
        public var cert: String
        public var key: String
        public var ca: String
        /// The name a dialed peer's certificate must carry instead of the
        /// address dialed (`replication.tls.server-name`); nil: the address.
        public var serverName: String?

        public init(cert: String, key: String, ca: String, serverName: String? = nil) {
            self.cert = cert
            self.key = key
            self.ca = ca
            self.serverName = serverName
        }
    }

    public struct Lease: Sendable, Equatable {
        public enum Kind: String, Sendable, Equatable { case `static`, etcd }
        public var type = Kind.static
        public var candidate = true
        public var staticPrimary: String?
        public var staticPeers: [String: String] = [:]
        public var etcdEndpoints = ["http://127.0.0.1:2379"]
        /// Client certificate, key and CA for an etcd that requires them.
        public var etcdTLS: TLS?
        public var etcdKey = "/replfs/primary"
        public var etcdTTL: Duration = .seconds(2)
        /// `lease.max-lag`: without synchronous replication, a candidate
        /// further behind the last primary than this does not take over
        /// by itself (etcd lease); zero: no limit.
        public var maxLag: Duration = .zero
    }

    public struct Admin: Sendable, Equatable {
        public var socket = "/run/replfs/replfsd.sock"
    }

    public struct Exec: Sendable, Equatable {
        public var command: [String]
        public var stopTimeout: Duration = .seconds(10)
        /// `exec.ready`: how to tell the application serves; nil: running is ready.
        public var ready: ReadinessProbe?
    }

    public struct Hooks: Sendable, Equatable {
        public var onPrimary: [String]?
        public var onReplica: [String]?
        public var timeout: Duration = .seconds(10)
    }

    public struct VIP: Sendable, Equatable {
        public var address: VirtualAddress
        public var interface: String
    }

    public struct Metrics: Sendable, Equatable {
        /// Kept as an alias of `http.listen`'s `/metrics`.
        public var listen: String?
    }

    /// `http`: the health endpoints (`/health`, `/primary`, `/replica`) and `/metrics`.
    public struct HTTP: Sendable, Equatable {
        public var listen: String?
        /// `/replica` answers 200 only while the replica is connected and
        /// nothing it received has waited longer than this to be applied.
        public var maxLag: Duration = .seconds(1)
    }

    public init(node: String, mount: String, data: String) {
        self.node = node
        self.mount = mount
        self.data = data
    }

    /// How peers reach this node's replication listener:
    /// `replication.advertise`, else this node's entry in
    /// `lease.static.peers`, else `replication.listen` (with the host name
    /// for a wildcard address).
    public var advertisedAddress: String {
        if let advertise = replication.advertise { return advertise }
        if let own = lease.staticPeers[node] { return own }
        let listen = replication.listen
        if Config.isWildcard(listen), let port = Config.port(of: listen) {
            return ProcessInfo.processInfo.hostName + ":" + port
        }
        return listen
    }

    /// Whether a `host:port` listens on every address (0.0.0.0, [::]).
    static func isWildcard(_ address: String) -> Bool {
        ["0.0.0.0:", "[::]:", ":::"].contains { address.hasPrefix($0) }
    }

    /// The port of a `host:port`.
    static func port(of address: String) -> Substring? {
        address.lastIndex(of: ":").map { address[address.index(after: $0)...] }
    }
}
