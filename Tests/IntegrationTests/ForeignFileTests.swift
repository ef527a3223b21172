import Foundation
import ReplFS
import Testing

extension IntegrationTests {
    /// Files SQLite did not write: a database and its `-wal` copied into the
    /// mount by another program behave as on a normal disk, whatever the
    /// size and offset of its writes, and what they change is captured (at
    /// fsync, close or rename) and replicated.
    @Suite("Files written by other programs")
    struct ForeignFileTests {
        static let copier = TestEnvironment.packageRoot + "/Tests/tools/live_wal_copy.py"

        @Test(
            "a live WAL database and its -wal copied in with 4096-byte writes, with cp, either first, or renamed into place, open with every row and replicate",
            arguments: ["4096", "cp", "wal-first", "rename"])
        func liveWALCopy(method: String) throws {
            try withCluster(size: 2) { cluster in
                try cluster.waitForPrimary()
                let primary = cluster.primary
                let outside = cluster.root + "/outside"
                let copied = try Command.run("/usr/bin/python3", [Self.copier, outside, primary.mount, method == "cp" ? "stage" : method])
                #expect(copied.status == 0, "\(copied)\nreplfsd: \(primary.currentLog.suffix(3000))")
                if method == "cp" {
                    let cp = try Command.run("/bin/cp", [outside + "/staged/live.db", outside + "/staged/live.db-wal", primary.mount + "/"])
                    #expect(cp.status == 0, "\(cp)")
                }
                let expected = copied.output.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: " ", with: "|")
                #expect(expected == "400|79800", "the copier's database: \(copied.output)")
                let db = primary.mount + "/live.db"
                #expect(try Command.sqlite(db, "SELECT count(*), sum(v) FROM t") == expected)
                #expect(try Command.sqlite(db, "PRAGMA integrity_check") == "ok")
                try cluster.waitForConvergence(["live.db"])
                let replica = cluster.replicas[0]
                #expect(try Command.sqlite(replica.mount + "/live.db", "SELECT count(*), sum(v) FROM t") == expected)
                #expect(try Command.sqlite(replica.mount + "/live.db", "PRAGMA integrity_check") == "ok")
                // The database goes on as any other, and replicas follow.
                _ = try Command.sqlite(db, "INSERT INTO t(v) VALUES(1000)")
                try cluster.waitForConvergence(["live.db"])
                #expect(try Command.sqlite(replica.mount + "/live.db", "SELECT count(*) FROM t") == "401")
            }
        }
    }
}
