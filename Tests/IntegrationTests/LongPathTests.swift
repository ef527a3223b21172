import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// Any path the file system allows works and replicates: a database's
    /// log is named after its path, and a file name holds 255 bytes. (SQLite
    /// itself opens no database whose absolute path exceeds 512 bytes, its
    /// MAX_PATHNAME, on any file system; plain files have no such limit.)
    @Suite("Long paths")
    struct LongPathTests {
        /// `levels` nested directories of 60-byte names.
        static func nested(_ levels: Int, _ tag: Character) -> String {
            (0..<levels).map { level in String(repeating: tag, count: 57) + String(format: "%03d", level) }.joined(separator: "/")
        }

        @Test("databases 380 and 440 bytes below the mount (WAL, DELETE) and a file 900 bytes below commit, recover and replicate")
        func deepDatabases() throws {
            try withCluster(size: 2) { cluster in
                let primary = cluster.primary
                let wal = Self.nested(7, "w") + "/headscale.sqlite"
                let delete = Self.nested(6, "d") + "/other.sqlite"
                #expect(wal.utf8.count > 400 && delete.utf8.count > 350)
                #expect(primary.mount.utf8.count + wal.utf8.count + "-journal".utf8.count < 512, "within SQLite's own path limit")
                let plain = Self.nested(15, "p") + "/noise_private.key"
                try FileManager.default.createDirectory(atPath: primary.mount + "/" + (plain as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try "privkey:abc\n".write(toFile: primary.mount + "/" + plain, atomically: true, encoding: .utf8)
                for (path, mode) in [(wal, "wal"), (delete, "delete")] {
                    let directory = primary.mount + "/" + (path as NSString).deletingLastPathComponent
                    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                    _ = try Command.sqlite(
                        primary.mount + "/" + path,
                        "PRAGMA journal_mode=\(mode); CREATE TABLE t(x); INSERT INTO t VALUES(1); INSERT INTO t VALUES(2); INSERT INTO t VALUES(3);")
                    #expect(try Command.sqlite(primary.mount + "/" + path, "SELECT count(*) FROM t") == "3")
                }
                try cluster.waitForConvergence([wal, delete])
                try waitUntil(timeout: 30, "the deep plain file reaches the replica") {
                    (try? String(contentsOfFile: cluster.replicas[0].mount + "/" + plain, encoding: .utf8)) == "privkey:abc\n"
                }
                for path in [wal, delete] {
                    let replica = cluster.replicas[0]
                    #expect(try Command.sqlite(replica.mount + "/" + path, "SELECT group_concat(x) FROM t") == "1,2,3")
                    // The log is an ordinary chain an independent check accepts.
                    let verify = try Command.run(TestEnvironment.replfsd, ["verify", primary.ltxDirectory(path)])
                    #expect(verify.status == 0, "\(verify)")
                }
                // A restart finds the logs again by the paths they recorded.
                try primary.stop()
                try primary.start()
                try cluster.waitForPrimary()
                _ = try Command.sqlite(primary.mount + "/" + wal, "INSERT INTO t VALUES(4);")
                try cluster.waitForConvergence([wal, delete])
                #expect(try Command.sqlite(primary.mount + "/" + wal, "PRAGMA integrity_check") == "ok")
            }
        }
    }
}
