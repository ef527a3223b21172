import Foundation
import ReplFS
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// One node, one identity: a name is bound to the node ID of a data
    /// directory, so a second daemon started under another node's name can
    /// never be streamed to, handed the primary role, or become a second
    /// writable "node-b".
    @Suite("Node identity")
    struct IdentityTests {
        /// The node ID a data directory recorded.
        static func nodeID(_ node: Node) throws -> String? {
            let data = try Data(contentsOf: URL(fileURLWithPath: node.data + "/replfs.json"))
            return try JSONDecoder().decode(DataDirectory.Identity.self, from: data).nodeID
        }

        @Test("a second daemon claiming node-b's name is refused at the handshake, logged with both addresses, and never made primary by demote")
        func duplicateName() throws {
            try withCluster(size: 2) { cluster in
                let (a, b) = (cluster.nodes[0], cluster.nodes[1])
                _ = try Command.sqlite(a.mount + "/app.db", "CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                try cluster.waitForConvergence(["app.db"])
                let ids = try cluster.nodes.map { try #require(try Self.nodeID($0)) }
                #expect(ids[0] != ids[1], "each data directory has its own random ID")
                #expect(try b.status().nodeID == ids[1])

                // Its own mount, data and port, node-b's name and advertised
                // address: a copied config that was not edited.
                let impostor = try Node(name: "node-b", root: cluster.root + "/impostor")
                defer { impostor.destroy() }
                let port = Cluster.freePorts(1)[0]
                var config = try String(contentsOfFile: b.configPath, encoding: .utf8)
                config = config.replacingOccurrences(of: b.root, with: impostor.root)
                config = config.replacingOccurrences(
                    of: "listen: 127.0.0.1:\(cluster.ports[1])", with: "listen: 127.0.0.1:\(port)\n  advertise: 127.0.0.1:\(cluster.ports[1])")
                try impostor.writeConfig(config)
                try impostor.start()
                try waitUntil(timeout: 30, "the primary refuses the second node-b") {
                    a.currentLog.contains("refused a node claiming a name another node holds")
                }
                let line = try #require(a.currentLog.split(separator: "\n").first { $0.contains("refused a node claiming a name") })
                #expect(line.contains(ids[1]), "names the holder's ID: \(line)")
                #expect(line.contains("peer=") && line.contains("holder=ID"), "both addresses: \(line)")
                let impostorID = try #require(try Self.nodeID(impostor))
                #expect(line.contains(impostorID), "names the claimant's ID: \(line)")
                let replicas = try a.status().replicas
                #expect(replicas.map(\.node) == ["node-b"])
                #expect(replicas.first?.nodeID == ids[1], "the real node-b is the one streamed to")

                // demote hands over to the real node-b only.
                let demoted = try a.admin(["demote"])
                #expect(demoted.status == 0, "\(demoted)")
                try waitUntil(timeout: 30, "node-b is the writable primary") {
                    let status = try b.status()
                    return status.role == "primary" && status.writable
                }
                _ = try Command.sqlite(b.mount + "/app.db", "INSERT INTO t VALUES(2);")
                let impostorStatus = try impostor.status()
                #expect(!impostorStatus.writable, "the second node-b never becomes writable: \(impostorStatus.role)")
                #expect(impostorStatus.role != "primary")
                let write = try Command.run("/usr/bin/sqlite3", [impostor.mount + "/app.db", "INSERT INTO t VALUES(3);"], timeout: 30)
                #expect(write.status != 0, "the second node-b's mount refuses writes")
                try cluster.waitForConvergence(["app.db"], nodes: [a])
            }
        }

        @Test("the node ID is kept across restarts and added to a data directory made before it existed")
        func persisted() throws {
            try withNode { node in
                let first = try #require(try Self.nodeID(node))
                #expect(first.count == 16)
                try node.stop()
                try node.start()
                #expect(try Self.nodeID(node) == first)
                #expect(try node.status().nodeID == first)
                // An older directory without one gets one at start.
                try node.stop()
                let path = node.data + "/replfs.json"
                var identity = try JSONDecoder().decode(DataDirectory.Identity.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
                identity.nodeID = nil
                try JSONEncoder().encode(identity).write(to: URL(fileURLWithPath: path))
                try node.start()
                let added = try #require(try Self.nodeID(node))
                #expect(added.count == 16 && added != first)
            }
        }
    }
}
