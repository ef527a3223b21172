import Foundation
import ReplFS
import Testing

extension IntegrationTests {
    /// Two histories that reach the same TXID and the same checksum are still
    /// told apart: a position carries the epoch its transaction was committed
    /// in (design.md, invariant 1), and a node that rejoins with another
    /// epoch's transaction keeps its copy aside and takes a snapshot
    /// (invariant 6).
    @Suite("Divergence")
    struct DivergenceTests {
        /// The LTX checksum is linear: one byte changed at one offset of two
        /// different pages moves it the same way. Each table is one page
        /// holding one identical row, so `counter = 5` in `n1` or in `n2`
        /// gives one checksum.
        @Test("the same TXID and checksum from two epochs is divergence: the old primary's copy is kept aside", arguments: ["wal", "delete"])
        func collidingChecksums(mode: String) throws {
            try withCluster(size: 2) { cluster in
                let x = cluster.nodes[0]
                let y = cluster.nodes[1]
                try cluster.waitForPrimary()
                _ = try Command.sqlite(x.mount + "/n.db", """
                    PRAGMA journal_mode=\(mode);
                    CREATE TABLE n1(counter INTEGER, b BLOB);
                    CREATE TABLE n2(counter INTEGER, b BLOB);
                    CREATE TABLE n3(counter INTEGER, b BLOB);
                    INSERT INTO n1 VALUES(0, zeroblob(3000));
                    INSERT INTO n2 VALUES(0, zeroblob(3000));
                    INSERT INTO n3 VALUES(0, zeroblob(3000));
                    """)
                try cluster.waitForConvergence(["n.db"])
                try y.kill9()

                _ = try Command.sqlite(x.mount + "/n.db", "UPDATE n1 SET counter = 5")
                try x.waitForLog("n.db")
                let onX = try #require(Cluster.position(of: x, "n.db"))
                try x.kill9()

                try y.start()
                let promoted = try y.admin(["promote", "--force"])
                #expect(promoted.status == 0, "\(promoted)")
                try waitUntil(timeout: 30, "node-b is a writable primary") { (try? y.status())?.writable == true }
                _ = try Command.sqlite(y.mount + "/n.db", "UPDATE n2 SET counter = 5")
                try y.waitForLog("n.db")
                let onY = try #require(Cluster.position(of: y, "n.db"))
                // The collision this test is about: without epochs the two
                // nodes could not tell their histories apart.
                #expect(onX == onY, "same TXID and checksum on both nodes: \(onX) and \(onY)")
                let epochX = try #require(try Self.epoch(of: "n.db", on: y))
                #expect(epochX >= 2, "node-b commits in a newer epoch")

                try x.start()
                cluster.primary = y
                try cluster.waitForPrimary()
                #expect(cluster.primary === y)
                try cluster.waitForConvergence(["n.db"], nodes: [x])
                #expect(try Command.sqlite(x.mount + "/n.db", "SELECT n1.counter, n2.counter FROM n1, n2") == "0|5")
                #expect(try Command.sqlite(x.mount + "/n.db", "PRAGMA integrity_check") == "ok")
                #expect(try Self.epoch(of: "n.db", on: x) == Self.epoch(of: "n.db", on: y), "node-a took node-b's epochs with its history")

                // node-a's own transaction is kept, not silently dropped.
                let asides = try x.status().asides
                #expect(asides.count == 1, "node-a's diverged copy is kept aside: \(asides)")
                if let copy = asides.first {
                    #expect(try Command.sqlite(copy, "SELECT n1.counter, n2.counter FROM n1, n2") == "5|0")
                }
                #expect(y.currentLog.contains("committed in another epoch"), "the primary names the divergence")
                #expect(x.currentLog.contains("moved this node's database aside"), "node-a names its copy")
            }
        }

        static func epoch(of database: String, on node: Node) throws -> Epoch? {
            try node.status().databases.first { $0.name == database }?.epoch
        }
    }
}
