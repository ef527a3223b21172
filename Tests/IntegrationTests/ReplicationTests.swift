import Foundation
import ReplFS
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// A primary and two replicas as separate replfsd processes on loopback.
    @Suite("Replication")
    struct ReplicationTests {
        @Test("randomized workloads: every replica reaches the primary's position and dbhash", arguments: ["delete", "wal"])
        func convergence(mode: String) throws {
            try withCluster { cluster in
                try cluster.primary.workload("app.db", ["--journal-mode", mode, "--transactions", "300", "--rollback-every", "7", "--vacuum-every", "100"])
                try FileManager.default.createDirectory(atPath: cluster.primary.mount + "/sub", withIntermediateDirectories: true)
                try cluster.primary.workload("sub/other.db", ["--journal-mode", mode == "wal" ? "delete" : "wal", "--transactions", "100"])
                try cluster.waitForConvergence(["app.db", "sub/other.db"])
                for replica in cluster.replicas {
                    #expect(try Command.sqlite(replica.mount + "/app.db", "PRAGMA integrity_check") == "ok")
                }
            }
        }

        @Test("readers on both replicas never see a torn or older state during transfers", arguments: ["wal", "delete"])
        func bankConsistency(mode: String) throws {
            try withCluster { cluster in
                let stop = cluster.root + "/stop-audit"
                let db = "bank-\(mode).db"
                let auditors = try cluster.replicas.map { replica in
                    try Command.start(TestEnvironment.testkit, ["bank", "audit", "--db", replica.mount + "/" + db, "--until", stop])
                }
                let writer = try Command.run(
                    TestEnvironment.testkit, ["bank", "transfers", "--db", cluster.primary.mount + "/" + db, "--journal-mode", mode, "--transactions", "1500"])
                #expect(writer.status == 0, "\(writer)")
                try cluster.waitForConvergence([db])
                FileManager.default.createFile(atPath: stop, contents: nil)
                for (replica, auditor) in zip(cluster.replicas, auditors) {
                    let result = auditor.finish()
                    #expect(result.status == 0, "\(replica.name): \(result)")
                    let summary = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Int] ?? [:]
                    #expect((summary["reads"] ?? 0) > 100, "\(replica.name) read while the transfers ran: \(result.output)")
                    // Several states, not a number of them: the replica applies the
                    // transfers in batches, larger when the machine is busy.
                    #expect((summary["distinctStates"] ?? 0) >= 3, "\(replica.name) saw the database move: \(result.output)")
                    #expect(summary["lastCounter"] == 1500, "\(replica.name) saw the last transfer without reopening: \(result.output)")
                }
            }
        }

        @Test("an apply drops from the kernel's cache only the pages it changed", arguments: ["wal", "delete"])
        func applyKeepsUnchangedPagesCached(mode: String) throws {
            try withCluster(size: 2) { cluster in
                let db = "cached-\(mode).db"
                _ = try Command.sqlite(cluster.primary.mount + "/" + db, """
                    PRAGMA journal_mode=\(mode); CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
                    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) INSERT INTO t SELECT i, randomblob(900) FROM n;
                    """)
                try cluster.waitForConvergence([db])
                let path = cluster.replicas[0].mount + "/" + db
                _ = FileManager.default.contents(atPath: path)
                let warm = try Self.residentPages(path)
                #expect(warm.total > 900 && warm.resident == warm.total, "the whole file is cached after reading it: \(warm)")

                _ = try Command.sqlite(cluster.primary.mount + "/" + db, "UPDATE t SET v = x'C0FFEE' WHERE id = 2000")
                try waitUntil(timeout: 30, "a reader on the replica sees the update") {
                    (try? Command.sqlite(path, "SELECT hex(v) FROM t WHERE id = 2000")) == "C0FFEE"
                }
                let after = try Self.residentPages(path)
                #expect(after.resident >= warm.resident - 8, "the pages the update did not change stay cached: \(warm) then \(after)")
                #expect(try Command.sqlite(path, "PRAGMA integrity_check") == "ok")
                try cluster.waitForConvergence([db])
            }
        }

        /// How many of a file's pages are in the kernel's page cache
        /// (mincore over a shared read-only mapping).
        static func residentPages(_ path: String) throws -> (resident: Int, total: Int) {
            let fd = open(path, O_RDONLY)
            guard fd >= 0 else { throw Failure("open \(path): errno \(errno)") }
            defer { close(fd) }
            var info = stat()
            guard fstat(fd, &info) == 0, info.st_size > 0 else { throw Failure("fstat \(path): errno \(errno)") }
            let size = Int(info.st_size)
            guard let mapping = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), mapping != MAP_FAILED else { throw Failure("mmap \(path): errno \(errno)") }
            defer { munmap(mapping, size) }
            let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
            var vector = [UInt8](repeating: 0, count: (size + pageSize - 1) / pageSize)
            guard mincore(mapping, size, &vector) == 0 else { throw Failure("mincore \(path): errno \(errno)") }
            return (vector.filter { $0 & 1 != 0 }.count, vector.count)
        }

        @Test("writes on a replica fail with EROFS (SQLite: readonly database) and change nothing")
        func readOnlyReplica() throws {
            try withCluster(size: 2) { cluster in
                _ = try Command.sqlite(cluster.primary.mount + "/app.db", "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                try "k".write(toFile: cluster.primary.mount + "/plain.txt", atomically: false, encoding: .utf8)
                try cluster.waitForConvergence(["app.db"])
                let replica = cluster.replicas[0]
                let before = try Command.dbhash(replica.mount + "/app.db")
                let write = try Command.run("/usr/bin/sqlite3", [replica.mount + "/app.db", "INSERT INTO t VALUES(2)"])
                #expect(write.status != 0)
                #expect(write.error.contains("attempt to write a readonly database"), "\(write)")
                for (what, call) in [
                    ("create", { creat(replica.mount + "/new.txt", 0o644) }),
                    ("open for writing", { open(replica.mount + "/plain.txt", O_WRONLY) }),
                    ("mkdir", { mkdir(replica.mount + "/dir", 0o755) }),
                    ("unlink", { unlink(replica.mount + "/plain.txt") }),
                    ("rename", { rename(replica.mount + "/plain.txt", replica.mount + "/moved.txt") }),
                    ("truncate", { truncate(replica.mount + "/app.db", 0) }),
                ] as [(String, () -> Int32)] {
                    let result = call()
                    #expect(result < 0 && errno == EROFS, "\(what) must fail with EROFS")
                }
                #expect(try Command.dbhash(replica.mount + "/app.db") == before)
                #expect(try String(contentsOfFile: replica.mount + "/plain.txt", encoding: .utf8) == "k")
                #expect(replica.currentLog.contains("refused a write on a replica"), "logged with the pid: \(replica.currentLog)")
                #expect(replica.currentLog.contains("pid="))
            }
        }

        @Test("noise_private.key, a cache directory and plain-file changes follow, byte-identical and whole")
        func plainFiles() throws {
            try withCluster { cluster in
                let p = cluster.primary.mount
                let key = (0..<32).map { _ in UInt8.random(in: 0...255) }
                try Data(key).write(to: URL(fileURLWithPath: p + "/noise_private.key"))
                try FileManager.default.createDirectory(atPath: p + "/cache/certs", withIntermediateDirectories: true)
                try "cert".write(toFile: p + "/cache/certs/a.pem", atomically: true, encoding: .utf8)
                try "old".write(toFile: p + "/cache/gone.txt", atomically: false, encoding: .utf8)
                try FileManager.default.removeItem(atPath: p + "/cache/gone.txt")
                try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: p + "/noise_private.key")
                try FileManager.default.createSymbolicLink(atPath: p + "/current.pem", withDestinationPath: "cache/certs/a.pem")
                try "v1".write(toFile: p + "/renamed-from.txt", atomically: false, encoding: .utf8)
                try FileManager.default.moveItem(atPath: p + "/renamed-from.txt", toPath: p + "/renamed-to.txt")
                _ = try Command.sqlite(p + "/db.sqlite", "CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                try cluster.waitForConvergence(["db.sqlite"])
                for replica in cluster.replicas {
                    let r = replica.mount
                    #expect(try Data(contentsOf: URL(fileURLWithPath: r + "/noise_private.key")) == Data(key), "\(replica.name)")
                    #expect(try FileManager.default.attributesOfItem(atPath: r + "/noise_private.key")[.posixPermissions] as? Int == 0o600)
                    #expect(try String(contentsOfFile: r + "/cache/certs/a.pem", encoding: .utf8) == "cert")
                    #expect(!FileManager.default.fileExists(atPath: r + "/cache/gone.txt"))
                    #expect(try FileManager.default.destinationOfSymbolicLink(atPath: r + "/current.pem") == "cache/certs/a.pem")
                    #expect(!FileManager.default.fileExists(atPath: r + "/renamed-from.txt"))
                    #expect(try String(contentsOfFile: r + "/renamed-to.txt", encoding: .utf8) == "v1")
                }

                // A reader on a replica never sees half a file while it is rewritten.
                let replica = cluster.replicas[0]
                let patterns = (0..<8).map { n in Data(repeating: UInt8(65 + n), count: 256 * 1024) }
                let stop = cluster.root + "/stop-reader"
                let reader = Thread.detachNewReader(path: replica.mount + "/noise_private.key", allowed: Set(patterns + [Data(key)]), stop: stop)
                for round in 0..<160 {
                    try patterns[round % patterns.count].write(to: URL(fileURLWithPath: p + "/noise_private.key"))
                }
                try waitUntil(timeout: 30, "the last version reaches the replica") {
                    (try? Data(contentsOf: URL(fileURLWithPath: replica.mount + "/noise_private.key"))) == patterns[159 % patterns.count]
                }
                FileManager.default.createFile(atPath: stop, contents: nil)
                let (reads, bad) = reader.result()
                #expect(bad == 0, "a reader saw a partial key file")
                #expect(reads > 0)
            }
        }

        @Test("a replica killed mid-stream, and one started after 10,000 transactions, converge")
        func restartAndLateJoin() throws {
            try withCluster(start: false) { cluster in
                try cluster.nodes[0].start()
                try cluster.nodes[1].start()
                let writer = try Command.start(TestEnvironment.testkit, [
                    "workload", "--db", cluster.primary.mount + "/app.db", "--journal-mode", "wal", "--transactions", "10000", "--max-payload", "2000",
                ])
                try waitUntil(timeout: 60, "some transactions replicate") { (Cluster.position(of: cluster.nodes[1], "app.db")?.txid.rawValue ?? 0) > 200 }
                try cluster.nodes[1].kill9()
                try waitUntil(timeout: 120, "more transactions commit") { (Cluster.position(of: cluster.primary, "app.db")?.txid.rawValue ?? 0) > 2000 }
                try cluster.nodes[1].start()
                let result = writer.finish()
                #expect(result.status == 0, "\(result)")
                try cluster.primary.waitForLog("app.db")
                #expect((Cluster.position(of: cluster.primary, "app.db")?.txid.rawValue ?? 0) >= 10000)
                try cluster.nodes[2].start()
                try cluster.waitForConvergence(["app.db"], timeout: 120)
            }
        }

        @Test("a replica behind the retained log gets a snapshot; one with diverged writes keeps its copy aside")
        func snapshotsAndDivergence() throws {
            try withCluster(retention: "1s") { cluster in
                try cluster.primary.workload("app.db", ["--journal-mode", "wal", "--transactions", "50"])
                try cluster.waitForConvergence(["app.db"])
                let behind = cluster.replicas[0]
                let diverged = cluster.replicas[1]
                try behind.stop()
                try diverged.stop()
                // The diverged node commits a transaction the primary never sees.
                _ = try Command.sqlite(diverged.data + "/files/app.db", "INSERT INTO ledger(writer, seq) VALUES(99, 1)")
                try cluster.primary.workload("app.db", ["--journal-mode", "wal", "--transactions", "50"])
                // Let retention remove the files the stopped replicas would need.
                // (A commit now and then: the segment being written is never
                // the one removed, so a later one must start.)
                var tick = 0
                try waitUntil(timeout: 30, interval: 0.2, "the primary's old LTX files are pruned") {
                    tick += 1
                    _ = try? Command.sqlite(cluster.primary.mount + "/app.db", "INSERT INTO ledger(writer, seq) VALUES(98, \(tick))")
                    return (cluster.primary.ltxFiles("app.db").first.map { !$0.hasSuffix("0000000000000001-0000000000000001.ltx") }) ?? false
                }
                try behind.start()
                try diverged.start()
                try cluster.waitForConvergence(["app.db"])
                let aside = (try? FileManager.default.contentsOfDirectory(atPath: diverged.data + "/aside")) ?? []
                #expect(aside.count == 1, "the diverged copy is kept: \(aside)")
                if let copy = aside.first {
                    #expect(try Command.sqlite(diverged.data + "/aside/" + copy, "SELECT count(*) FROM ledger WHERE writer = 99") == "1")
                }
                #expect(diverged.currentLog.contains("moved this node's database aside"), "named in the log")
                // The replica that was only behind got a snapshot too (its files were pruned).
                #expect(behind.currentLog.contains("following the primary"))
            }
        }

        @Test("retention keeps the log bounded under a steady write load")
        func retentionBoundsTheLog() throws {
            try withCluster(size: 1, retention: "1s") { cluster in
                var counts: [Int] = []
                for round in 0..<4 {
                    try cluster.primary.workload("app.db", ["--journal-mode", "wal", "--transactions", "300", "--seed", "\(round)"])
                    usleep(1_500_000)
                    try cluster.primary.waitForLog("app.db")
                    counts.append(cluster.primary.ltxFiles("app.db").count)
                }
                #expect(counts.last! < 700, "retention removes old files: \(counts)")
                #expect(counts.last! >= 1, "the newest file is kept")
                #expect(Cluster.position(of: cluster.primary, "app.db")?.txid.rawValue ?? 0 >= 1200)
            }
        }

        @Test("a flipped byte, a truncated frame or a replayed frame is refused, and the replica recovers", arguments: TamperingProxy.Mode.allCases)
        func tamperedStream(mode: TamperingProxy.Mode) throws {
            try withCluster(size: 2, start: false) { cluster in
                let proxy = try TamperingProxy(upstream: cluster.ports[0], mode: mode)
                defer { proxy.stop() }
                let replica = cluster.replicas[0]
                let config = try String(contentsOfFile: replica.configPath, encoding: .utf8)
                try config.replacingOccurrences(of: "node-a: 127.0.0.1:\(cluster.ports[0])", with: "node-a: 127.0.0.1:\(proxy.port)")
                    .write(toFile: replica.configPath, atomically: true, encoding: .utf8)
                try cluster.start()
                try cluster.primary.workload("app.db", ["--journal-mode", "wal", "--transactions", "200"])
                try waitUntil(timeout: 30, "the proxy damaged the stream") { proxy.didTamper }
                try cluster.primary.workload("app.db", ["--journal-mode", "wal", "--transactions", "20"])
                try cluster.waitForConvergence(["app.db"])
                let expected: String
                switch mode {
                case .flipByte: expected = "checksum-mismatch"
                case .truncate: expected = "truncated"
                case .replay: expected = "does not follow position"
                }
                #expect(replica.currentLog.contains(expected), "\(mode): \(replica.currentLog)")
                #expect(try Command.sqlite(replica.mount + "/app.db", "PRAGMA integrity_check") == "ok")
            }
        }

        @Test("a peer with the wrong token or cluster is refused and nothing is applied")
        func wrongPeers() throws {
            try withCluster(size: 2) { cluster in
                _ = try Command.sqlite(cluster.primary.mount + "/app.db", "CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                try cluster.waitForConvergence(["app.db"])
                let replica = cluster.replicas[0]
                try replica.stop()
                try "another-token\n".write(toFile: cluster.root + "/other-token", atomically: true, encoding: .utf8)
                chmod(cluster.root + "/other-token", 0o600)
                let config = try String(contentsOfFile: replica.configPath, encoding: .utf8)
                try config.replacingOccurrences(of: cluster.tokenPath, with: cluster.root + "/other-token").write(toFile: replica.configPath, atomically: true, encoding: .utf8)
                try replica.start()
                _ = try Command.sqlite(cluster.primary.mount + "/app.db", "INSERT INTO t VALUES(2);")
                try waitUntil(timeout: 30, "the primary refuses the replica") { cluster.primary.currentLog.contains("authentication failed") }
                #expect(try Command.sqlite(replica.mount + "/app.db", "SELECT count(*) FROM t") == "1", "nothing applied")
                #expect(replica.currentLog.contains("authentication failed") || replica.currentLog.contains("refused"), "\(replica.currentLog)")
            }
        }
    }
}

/// A reader thread checking every read of a file is one of the allowed versions.
final class FileReader: @unchecked Sendable {
    private var reads = 0
    private var bad = 0
    private let done = DispatchSemaphore(value: 0)

    init(path: String, allowed: Set<Data>, stop: String) {
        Thread.detachNewThread { [self] in
            while !FileManager.default.fileExists(atPath: stop) {
                if let data = FileManager.default.contents(atPath: path) {
                    reads += 1
                    if !allowed.contains(data) { bad += 1 }
                }
            }
            done.signal()
        }
    }

    func result() -> (reads: Int, bad: Int) {
        done.wait()
        return (reads, bad)
    }
}

extension Thread {
    static func detachNewReader(path: String, allowed: Set<Data>, stop: String) -> FileReader {
        FileReader(path: path, allowed: allowed, stop: stop)
    }
}
