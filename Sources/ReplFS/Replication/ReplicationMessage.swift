/// One message of the replication protocol.
///
/// A connection starts with a handshake (replica `hello`, primary
/// `challenge`, replica `authenticate`, primary `welcome`), then the primary
/// streams changes in
/// the order they were committed: LTX files per database (in TXID order) and
/// plain-file updates, with a heartbeat every second; the replica
/// acknowledges what it has applied. See ``ReplicationFrameCodec`` for the
/// framing.
public enum ReplicationMessage: Equatable, Sendable {
    /// Replica to primary, first: who it is, and a nonce for the primary to prove itself with.
    case hello(Hello)
    /// Answer to `hello`: the node's proof that it knows the token, and a
    /// nonce for the replica. Nothing about the node: a peer that has not
    /// proven the token learns nothing (not the cluster, epoch or primary).
    case challenge(Challenge)
    /// Replica to primary: its proof and where it stands.
    case authenticate(Authenticate)
    /// Answer to a proven `authenticate`: who the node is, its epoch,
    /// whether it is the primary (and if not, who is, as far as it knows),
    /// under a proof of its own. A node that is not the primary, or that
    /// answers a probe, closes after this: the replica, or a node probing
    /// its peers, learns where to go.
    case welcome(Welcome)
    /// Either side: the connection is refused, and why (then it is closed).
    case refused(reason: String)
    /// Primary to replica, before the LTX files of a database and whenever it
    /// changes: in which epoch each of its transactions was committed. The
    /// replica adopts it as it applies the files.
    case epochs(database: String, history: EpochHistory)
    /// Primary to replica: part of an LTX file for a database.
    case ltx(database: String, part: LTXPart, bytes: [UInt8])
    /// Primary to replica: a plain file's whole content (written atomically).
    case putFile(PlainFile)
    /// Primary to replica: a plain file, symbolic link or empty directory is gone.
    case removePath(String)
    /// Primary to replica: a directory exists.
    case makeDirectory(path: String, mode: UInt32)
    /// Primary to replica: a symbolic link.
    case symlink(path: String, target: String)
    /// Primary to replica, every second when idle: the primary is alive.
    case heartbeat(epoch: Epoch)
    /// Replica to primary: a database is applied up to this transaction.
    case acknowledge(database: String, txid: TXID)
    /// Replica to primary (protocol 5 on both sides): a database's
    /// transactions up to this one are durable in the replica's log, not
    /// yet written into its database file. Sent before the write, so that
    /// a synchronous commit waits for a replica's fdatasync and not for
    /// its page writes (`acknowledge` follows once they are applied).
    case logged(database: String, txid: TXID)
    /// Replica to primary: hand the primary role to me (`replfsd promote`).
    case handoffRequest(node: String)
    /// Primary to replicas, in stream order after its last change: the
    /// primary has stopped writing and hands over to `node`.
    case handoff(Handoff)
    /// Replica to primary: everything before the handoff is applied here.
    case handoffAccepted(node: String)

    /// The version this node speaks; it also accepts peers of
    /// ``oldestProtocolVersion`` and up (a rolling upgrade), and a
    /// connection speaks the lower of the two.
    public static let protocolVersion: UInt16 = 5
    public static let oldestProtocolVersion: UInt16 = 4
    /// The first version with ``logged(database:txid:)``.
    public static let loggedVersion: UInt16 = 5

    public struct Hello: Equatable, Sendable {
        public var version: UInt16
        public var cluster: String
        public var node: String
        /// The random ID of the node's data directory: two daemons that
        /// claim one name are told apart by it.
        public var nodeID: UInt64
        public var nonce: [UInt8]

        /// Who the peer says it is, covered by its `authenticate` proof.
        public var identityClaims: [UInt8] {
            var bytes = Array(node.utf8) + [0]
            withUnsafeBytes(of: nodeID.bigEndian) { bytes += $0 }
            return bytes
        }
    }

    public struct Challenge: Equatable, Sendable {
        public var version: UInt16
        public var nonce: [UInt8]
        public var proof: [UInt8]
    }

    public struct Welcome: Equatable, Sendable {
        public var node: String
        public var nodeID: UInt64
        /// The primary's epoch, or the highest a non-primary has seen.
        public var epoch: Epoch
        public var isPrimary: Bool
        /// The primary as this node knows it (itself when `isPrimary`); empty if unknown.
        public var primary: String
        public var primaryAddress: String
        public var proof: [UInt8]

        /// The claims the proof covers.
        public var claims: [UInt8] {
            var bytes = Array(node.utf8) + [0]
            withUnsafeBytes(of: nodeID.bigEndian) { bytes += $0 }
            withUnsafeBytes(of: epoch.rawValue.bigEndian) { bytes += $0 }
            bytes.append(isPrimary ? 1 : 0)
            bytes += Array(primary.utf8) + [0] + Array(primaryAddress.utf8)
            return bytes
        }
    }

    public struct Authenticate: Equatable, Sendable {
        public var proof: [UInt8]
        /// The highest primary epoch the replica has followed.
        public var epoch: Epoch
        /// Whether the replica may become primary (`lease.candidate`).
        public var candidate: Bool
        /// Only asking who is primary (``ReplicationProbe``): answered with
        /// `welcome` and closed, never streamed to.
        public var probe: Bool = false
        /// How peers reach the replica (`replication.advertise`), should it take over.
        public var address: String
        public var positions: [DatabasePosition]
        public var files: [FileDigest]

        /// The claims the proof covers, with the identity of the `hello`
        /// before it.
        public func claims(identity hello: Hello) -> [UInt8] {
            var bytes = hello.identityClaims
            withUnsafeBytes(of: epoch.rawValue.bigEndian) { bytes += $0 }
            bytes.append(candidate ? 1 : 0)
            bytes.append(probe ? 1 : 0)
            bytes += Array(address.utf8)
            return bytes
        }
    }

    /// A change of primary: `node` (reachable at `address`) takes over. With
    /// a static lease its epoch is given; with etcd it is 0 and the node
    /// takes the lease (the epoch is the new key's create revision).
    public struct Handoff: Equatable, Sendable {
        public var node: String
        public var address: String
        public var epoch: Epoch
        public init(node: String, address: String, epoch: Epoch) {
            self.node = node
            self.address = address
            self.epoch = epoch
        }
    }

    /// Where a replica's database stands.
    public struct DatabasePosition: Equatable, Sendable {
        public var database: String
        public var position: Position
    }

    /// A replica's plain file, so the primary sends only what differs.
    public struct FileDigest: Equatable, Sendable {
        public var path: String
        public var checksum: UInt64
    }

    public struct PlainFile: Equatable, Sendable {
        public var path: String
        public var mode: UInt32
        public var content: [UInt8]
    }

    /// Which part of an LTX file a frame carries (large files are split).
    public struct LTXPart: OptionSet, Equatable, Sendable {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let first = LTXPart(rawValue: 1)
        public static let last = LTXPart(rawValue: 2)
        public static let whole: LTXPart = [.first, .last]
        /// On the first part of a snapshot: the primary could not confirm the
        /// replica's history as its own, so the replica keeps its copy aside.
        public static let divergent = LTXPart(rawValue: 4)
    }
}
