import Foundation
import ReplFS
import Testing

extension IntegrationTests {
    /// `replfsd log export NAME DIR` on a running node: the retained chain
    /// as single LTX files that an independent reader verifies and applies.
    @Suite("log export")
    struct LogExportTests {
        @Test("the retained chain of a database, on the primary and on a replica, verifies and applies to the same database")
        func exportChain() throws {
            try withCluster(size: 2) { cluster in
                try cluster.waitForPrimary()
                try cluster.primary.workload("app.db", ["--journal-mode", "wal", "--transactions", "200"])
                try cluster.waitForConvergence(["app.db"])
                let expected = try Command.dbhash(cluster.primary.mount + "/app.db")
                for node in cluster.nodes {
                    let directory = cluster.root + "/export-\(node.name)"
                    let result = try node.admin(["log", "export", "app.db", directory])
                    #expect(result.status == 0, "\(result)")
                    #expect(result.output.contains("LTX files of app.db"), "\(result)")
                    let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".ltx") }.sorted()
                    #expect(!files.isEmpty && files.first!.hasPrefix("0000000000000001-"), "\(node.name): the chain from its snapshot: \(files.prefix(3))")
                    let paths = files.map { directory + "/" + $0 }
                    let verified = try Command.run("/usr/bin/env", ["python3", TestEnvironment.referenceChecker, "verify"] + paths)
                    #expect(verified.status == 0 && verified.output.contains("ok"), "\(node.name): \(verified)")
                    let rebuilt = cluster.root + "/rebuilt-\(node.name).db"
                    let applied = try Command.run("/usr/bin/env", ["python3", TestEnvironment.referenceChecker, "apply", rebuilt] + paths)
                    #expect(applied.status == 0, "\(node.name): \(applied)")
                    #expect(try Command.dbhash(rebuilt) == expected, "\(node.name): the applied chain is the database")
                }
                // A database that does not exist is refused by name.
                let missing = try cluster.primary.admin(["log", "export", "nope.db", cluster.root + "/nope"])
                #expect(missing.status == 1 && missing.error.contains("no database nope.db"), "\(missing)")
            }
        }
    }
}
