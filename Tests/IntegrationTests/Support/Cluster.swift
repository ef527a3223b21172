import Foundation
import ReplFS

#if canImport(Glibc)
import Glibc
#endif

/// Several `replfsd` nodes on loopback with a static lease: `node-a` is the
/// primary, the others replicas. Each has its own mount, data directory and
/// port; they share a token file.
final class Cluster: @unchecked Sendable {
    let root: String
    let nodes: [Node]
    let ports: [Int]
    /// The node tests treat as primary (the configured one until a test moves it).
    var primary: Node
    var replicas: [Node] { nodes.filter { $0 !== primary } }
    var tokenPath: String { root + "/token" }
    /// The supervised stand-in application (`exec.command`), when configured.
    var applicationScript: String { root + "/app.sh" }
    var applicationLog: String { root + "/app.log" }
    /// The directory every node's `backup.path` names (with `backup`).
    var archive: String { root + "/backup" }

    /// How the nodes decide who is primary.
    enum LeaseKind {
        case staticLease
        /// etcd at `endpoint`, with this TTL (and this client certificate, for an etcd that requires one).
        case etcd(endpoint: String, ttl: String = "2s", tls: Config.TLS? = nil)
    }

    /// - Parameters:
    ///   - tls: a cluster CA in `root/pki` (made with `replfsd tls init`) and
    ///     a certificate per node (`tls issue`, for 127.0.0.1), in every
    ///     node's `replication.tls`.
    ///   - backup: `backup` keys besides `path` (which is ``archive``, the
    ///     same for every node); nil: no archive.
    ///   - dialed: ports the other nodes dial instead of a node's own (a
    ///     relay or a proxy in front of it), by node name.
    init(
        size: Int = 3, retention: String = "10m", extra: String = "", lease: LeaseKind = .staticLease, application: Bool = false, tls: Bool = false,
        dialed: [String: Int] = [:], ports: [Int]? = nil, token: Bool = true, replication: [String] = [], backup: [String]? = nil
    ) throws {
        root = NSTemporaryDirectory() + "replfs-cluster-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // With `backup` (its keys besides path), one archive for all nodes.
        var extra = extra
        if let backup {
            try FileManager.default.createDirectory(atPath: root + "/backup", withIntermediateDirectories: true)
            extra += "\nbackup:\n  path: \(root)/backup\n" + backup.map { "  " + $0 + "\n" }.joined()
        }
        try "cluster-secret-\(UUID().uuidString)\n".write(toFile: root + "/token", atomically: true, encoding: .utf8)
        chmod(root + "/token", 0o600)
        let chosen = ports ?? Cluster.freePorts(size)
        self.ports = chosen
        let names = (0..<size).map { "node-" + String(UnicodeScalar(UInt8(97 + $0))) }
        func peers(seenBy viewer: String) -> String {
            zip(names, chosen).map { name, port in "\(name): 127.0.0.1:\(name == viewer ? port : dialed[name] ?? port)" }.joined(separator: ", ")
        }
        if tls {
            try Cluster.tls(["init", root + "/pki"])
            for name in names { try Cluster.tls(["issue", root + "/pki", name, "--ip", "127.0.0.1", "--dns", name]) }
        }
        if application {
            // Records where and when it runs; stops on SIGTERM.
            try """
                #!/bin/sh
                echo "$1 start $(date +%s.%N)" >> \(root)/app.log
                trap 'echo "$1 stop $(date +%s.%N)" >> \(root)/app.log; exit 0' TERM
                while true; do sleep 0.05; done
                """.write(toFile: root + "/app.sh", atomically: true, encoding: .utf8)
            chmod(root + "/app.sh", 0o755)
        }
        var nodes: [Node] = []
        for (index, name) in names.enumerated() {
            let node = try Node(name: name, root: root + "/" + name)
            let leaseSection: String
            switch lease {
            case .staticLease:
                leaseSection = """
                    lease:
                      static:
                        primary: node-a
                        peers: {\(peers(seenBy: name))}
                    """
            case .etcd(let endpoint, let ttl, let etcdTLS):
                leaseSection = """
                    lease:
                      type: etcd
                      etcd:
                        endpoints: [\(endpoint)]
                        key: /replfs/\(root.split(separator: "/").last!)/primary
                        ttl: \(ttl)
                    \(etcdTLS.map { "    tls: {cert: \($0.cert), key: \($0.key), ca: \($0.ca)}" } ?? "")
                    """
            }
            let execSection = application ? "exec:\n  command: [\(root)/app.sh, \(name)]\n  stop-timeout: 2s" : ""
            try node.writeConfig("""
                node: \(name)
                mount: \(node.mount)
                data: \(node.data)
                retention: \(retention)
                replication:
                  listen: 127.0.0.1:\(chosen[index])
                \(token ? "  token-file: \(root)/token" : "")
                \(replication.map { "  " + $0 }.joined(separator: "\n"))
                \(tls ? "  tls: {cert: \(root)/pki/\(name).crt, key: \(root)/pki/\(name).key, ca: \(root)/pki/ca.crt}" : "")
                \(leaseSection)
                \(execSection)
                \(extra)
                """)
            nodes.append(node)
        }
        self.nodes = nodes
        primary = nodes[0]
    }

    /// Runs `replfsd tls ARGS`, as an operator would.
    static func tls(_ arguments: [String]) throws {
        let result = try Command.run(TestEnvironment.replfsd, ["tls"] + arguments)
        guard result.status == 0 else { throw Failure("replfsd tls \(arguments.joined(separator: " ")): \(result)") }
    }

    /// Ports nobody listens on now (bound to port 0 and released).
    static func freePorts(_ count: Int) -> [Int] {
        var ports: [Int] = []
        var sockets: [Int32] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
            sockets.append(fd)
        }
        for fd in sockets { close(fd) }
        return ports
    }

    func start() throws {
        for node in nodes { try node.start() }
    }

    func destroy() {
        for node in nodes { node.destroy() }
        if ProcessInfo.processInfo.environment["REPLFS_KEEP_TEST_DATA"] == nil {
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    deinit { destroy() }

    // MARK: - Positions

    /// A node's position for a database, from the newest file of its log.
    static func position(of node: Node, _ database: String) -> Position? {
        guard let last = node.ltxFiles(database).last, let source = try? LTXFileSource(path: last) else { return nil }
        defer { source.close() }
        var decoder = LTXDecoder(source: source)
        guard let header = try? decoder.decodeHeader(), let trailer = try? decoder.finish() else { return nil }
        return Position(txid: header.maxTXID, checksum: trailer.postApplyChecksum)
    }

    /// Waits until every replica holds the primary's content and position
    /// for each database (positions in the logs, dbhash through the mounts).
    ///
    /// A replica records a batch in its log before the pages land, and while
    /// they land it holds readers off with SQLite's locks; dbhash sets no busy
    /// timeout, so it can fail then. Both are part of the poll: at the
    /// deadline the failure names the last difference seen.
    func waitForConvergence(_ databases: [String], timeout: Double = 60, nodes: [Node]? = nil) throws {
        let followers = nodes ?? replicas
        var difference = "no position yet"
        do {
            try waitUntil(timeout: timeout, interval: 0.1, "replicas converge on \(databases)") {
                for database in databases {
                    guard let position = Cluster.position(of: primary, database) else { return false }
                    for node in followers where Cluster.position(of: node, database) != position {
                        difference = "\(node.name): \(database) at \(String(describing: Cluster.position(of: node, database))), primary at \(position)"
                        return false
                    }
                }
                for database in databases {
                    let expected = try Command.dbhash(primary.mount + "/" + database)
                    for node in followers {
                        do {
                            let hash = try Command.dbhash(node.mount + "/" + database)
                            guard hash == expected else {
                                difference = "\(node.name): \(database) dbhash \(hash) != primary's \(expected)"
                                return false
                            }
                        } catch {
                            difference = "\(node.name): \(error)"
                            return false
                        }
                    }
                }
                return true
            }
        } catch {
            throw Failure("\(error); last difference: \(difference)")
        }
    }
}

/// Runs `body` with a started cluster that is destroyed afterwards.
func withCluster<T>(size: Int = 3, retention: String = "10m", start: Bool = true, _ body: (Cluster) throws -> T) throws -> T {
    let cluster = try Cluster(size: size, retention: retention)
    defer { cluster.destroy() }
    if start { try cluster.start() }
    return try body(cluster)
}
