import Foundation
import ReplFS
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// `backup.path`: the primary's continuous archive, restored by
    /// `replfsd restore` and by Litestream itself.
    @Suite("Backups")
    struct BackupTests {
        static var litestream: String { TestEnvironment.toolsDirectory + "/litestream/bin/litestream" }
        /// The oldest Litestream 0.5 release on PyPI (0.5.5): it reads page
        /// frames only as LZ4 frames, as the archive writes them.
        static var oldestLitestream: String { TestEnvironment.toolsDirectory + "/litestream-oldest/bin/litestream" }
        static var hasLitestream: Bool { FileManager.default.isExecutableFile(atPath: litestream) }

        @Test(
            "rows written in phases, an accidental DELETE and a promote in between: restore --timestamp at each phase boundary gives the database exactly as it was, with replfsd and with litestream; the new primary continues the archive with no gap or overlap; the key file's versions too",
            .enabled(if: hasLitestream))
        func phases() throws {
            let cluster = try Cluster(size: 2, backup: [])
            defer { cluster.destroy() }
            let archive = cluster.archive
            try cluster.start()
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])

            var moments: [(label: String, at: Date, hash: String, key: String, txid: UInt64)] = []
            /// A phase boundary: the archive caught up, then a moment
            /// strictly between the phase's last commit and the next one.
            func boundary(_ label: String, on primary: Node) throws {
                try Self.waitForArchive(primary)
                usleep(20_000)
                let at = Date()
                let hash = try Command.dbhash(primary.mount + "/app.db")
                let key = try String(contentsOfFile: primary.mount + "/noise_private.key", encoding: .utf8)
                let txid = try #require(primary.status().databases.first { $0.name == "app.db" }).txid
                moments.append((label, at, hash, key, txid))
                usleep(20_000)
            }
            func insert(_ phase: Int, _ rows: ClosedRange<Int>, on node: Node) throws {
                let statements = rows.map { "INSERT INTO t VALUES (\($0), \(phase), hex(randomblob(200)));" }.joined()
                _ = try Command.sqlite(node.mount + "/app.db", statements)
            }

            _ = try Command.sqlite(a.mount + "/app.db", "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, phase INT, body TEXT);")
            try "key-1\n".write(toFile: a.mount + "/noise_private.key", atomically: false, encoding: .utf8)
            try insert(1, 1...40, on: a)
            try Self.waitForPlainFile(archive, "noise_private.key", versions: 1)
            try boundary("phase 1", on: a)
            try insert(2, 41...80, on: a)
            try boundary("phase 2", on: a)

            let promoted = try b.admin(["promote"])
            #expect(promoted.status == 0, "\(promoted)")
            #expect(try cluster.waitForPrimary() === b)
            try insert(3, 81...120, on: b)
            try "key-2\n".write(toFile: b.mount + "/noise_private.key", atomically: false, encoding: .utf8)
            try Self.waitForPlainFile(archive, "noise_private.key", versions: 2)
            try boundary("phase 3, on the new primary", on: b)
            // The accident.
            _ = try Command.sqlite(b.mount + "/app.db", "DELETE FROM t WHERE phase = 2")
            try boundary("after the DELETE", on: b)

            let replicaDirectory = archive + "/app.db"
            for moment in moments {
                let stamp = Self.rfc3339(moment.at)
                let ours = archive + "/restored-\(moment.txid).db"
                let restored = try Command.run(TestEnvironment.replfsd, ["restore", "--from", archive, "--timestamp", stamp, "app.db", ours])
                #expect(restored.status == 0, "\(moment.label): \(restored)")
                #expect(restored.output.contains("checksums verified"), "\(restored)")
                #expect(try Command.dbhash(ours) == moment.hash, "\(moment.label): replfsd restore --timestamp \(stamp)")
                #expect(try Command.sqlite(ours, "PRAGMA integrity_check") == "ok")

                let theirs = archive + "/litestream-\(moment.txid).db"
                // Litestream refuses a moment after its newest file ("timestamp
                // does not exist"): the last one is its plain restore.
                let target = moment.txid == moments.last?.txid ? [] : ["-timestamp", stamp]
                let upstream = try Command.run(Self.litestream, ["restore", "-o", theirs] + target + ["file://" + replicaDirectory])
                #expect(upstream.status == 0, "\(moment.label): \(upstream)")
                #expect(try Command.dbhash(theirs) == moment.hash, "\(moment.label): litestream restore -timestamp \(stamp)")

                let byTXID = archive + "/txid-\(moment.txid).db"
                let restoredByTXID = try Command.run(TestEnvironment.replfsd, ["restore", "--from", archive, "--txid", "\(moment.txid)", "app.db", byTXID])
                #expect(restoredByTXID.status == 0, "\(restoredByTXID)")
                #expect(try Command.dbhash(byTXID) == moment.hash, "\(moment.label): replfsd restore --txid \(moment.txid)")

                let key = archive + "/key-\(moment.txid)"
                let keyRestored = try Command.run(TestEnvironment.replfsd, ["restore", "--from", archive, "--timestamp", stamp, "noise_private.key", key])
                #expect(keyRestored.status == 0, "\(keyRestored)")
                #expect((try? String(contentsOfFile: key, encoding: .utf8)) == moment.key, "\(moment.label): the key file as it was")
            }
            // The phase-2 rows, deleted by the accident, are back as of phase 2.
            let beforeAccident = archive + "/restored-\(moments[2].txid).db"
            #expect(try Command.sqlite(beforeAccident, "SELECT count(*) FROM t WHERE phase = 2") == "40")

            // The runbook's repair: the restored file imported into the
            // running cluster, replicated like any commit.
            let imported = try b.admin(["import", "app.db", beforeAccident])
            #expect(imported.status == 0, "\(imported)")
            try cluster.waitForConvergence(["app.db"])
            #expect(try Command.sqlite(a.mount + "/app.db", "SELECT count(*) FROM t WHERE phase = 2") == "40")
            #expect(try Command.dbhash(a.mount + "/app.db") == moments[2].hash)

            // No output is overwritten without --force.
            let again = try Command.run(TestEnvironment.replfsd, ["restore", "--from", archive, "app.db", beforeAccident])
            #expect(again.status != 0 && again.error.contains("exists"), "\(again)")

            // One history: level 0 is an unbroken chain (no gap, no overlap
            // where node-b took over), and node-b did not start over from a
            // snapshot of its own.
            try Self.waitForArchive(b)
            let archived = BackupArchive(root: archive)
            let levelZero = archived.files(of: "app.db", level: 0)
            for (previous, next) in zip(levelZero, levelZero.dropFirst()) {
                #expect(next.minTXID == previous.maxTXID.next, "level 0: \(previous.name) then \(next.name)")
            }
            #expect(archived.files(of: "app.db", level: BackupArchive.snapshotLevel).count == 1)
            #expect(levelZero.last.map { $0.maxTXID.rawValue >= moments.last!.txid } == true)
            // The import is archived like any commit.
            try Self.expectRestoresLatest(archive, equal: b.mount + "/app.db")

            let listing = try Command.run(TestEnvironment.replfsd, ["backups", "--from", archive, "--json"])
            #expect(listing.status == 0, "\(listing)")
            #expect(listing.output.contains("\"app.db\"") && listing.output.contains("noise_private.key"), "\(listing.output)")
            // The database's file, empty for a moment when SQLite created
            // it, is not taken for a plain file.
            #expect(PlainFileVersion.archivedPaths(in: archived) == ["noise_private.key"])
        }

        @Test(
            "etcd, a crash of the primary under writes: the new primary continues the archive (level 0 unbroken, or moved aside and started again from a snapshot if it lacks what the old one archived); both restores equal the new primary's database",
            .enabled(if: hasLitestream && EtcdServer.isInstalled))
        func crashFailover() throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let cluster = try Cluster(lease: .etcd(endpoint: etcd.endpoint), backup: [])
            defer { cluster.destroy() }
            let archive = cluster.archive
            try cluster.start()
            let first = try cluster.waitForPrimary()
            let writer = try FailoverWriter(cluster: cluster, seconds: 120)
            try writer.waitForCommits(200)
            try first.kill9()
            let next = try cluster.waitForPrimary(timeout: 30, not: first)
            try writer.waitForCommits(200)
            _ = try writer.stop()
            try Self.waitForArchive(next)
            let levelZero = BackupArchive(root: archive).files(of: "app.db", level: 0)
            let restarted = next.currentLog.contains("continuing from a new snapshot")
            if !restarted {
                for (previous, following) in zip(levelZero, levelZero.dropFirst()) {
                    #expect(following.minTXID == previous.maxTXID.next, "level 0: \(previous.name) then \(following.name)")
                }
            }
            print("backup crash failover: \(first.name) killed, \(next.name) continued the archive\(restarted ? " from a new snapshot" : ""); \(levelZero.count) level-0 files")
            try Self.expectRestoresLatest(archive, equal: next.mount + "/app.db")
        }

        @Test(
            "a replica that lacks what the lost primary archived is forced to take over: those files move aside (kept), the archive starts again from its snapshot, and restores give its database"
        )
        func archiveAhead() throws {
            let cluster = try Cluster(size: 2, backup: [])
            defer { cluster.destroy() }
            let archive = cluster.archive
            try cluster.start()
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            _ = try Command.sqlite(a.mount + "/app.db", "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
            try cluster.waitForConvergence(["app.db"])
            // node-b down: what node-a commits now reaches only the archive.
            try b.stop()
            _ = try Command.sqlite(a.mount + "/app.db", (2...20).map { "INSERT INTO t VALUES (\($0));" }.joined())
            try Self.waitForArchive(a)
            try a.kill9()
            try b.start()
            let forced = try b.admin(["promote", "--force"])
            #expect(forced.status == 0, "\(forced)")
            try waitUntil(timeout: 20, "node-b is a writable primary") { (try? b.status().writable) == true }
            _ = try Command.sqlite(b.mount + "/app.db", "INSERT INTO t VALUES (100)")
            try Self.waitForArchive(b)
            #expect(b.currentLog.contains("moved them aside"), "\(b.currentLog.suffix(2000))")
            let aside = BackupArchive(root: archive).asideDirectory("app.db")
            let kept = (try? FileManager.default.subpathsOfDirectory(atPath: aside))?.filter { $0.hasSuffix(".ltx") } ?? []
            #expect(!kept.isEmpty, "the lost primary's files are kept aside")
            try Self.expectRestoresLatest(archive, equal: b.mount + "/app.db")
            #expect(try Command.sqlite(b.mount + "/app.db", "SELECT count(*) FROM t") == "2")
        }

        @Test(
            "the archive's target full, then freed: every commit succeeds meanwhile, status says the archive is behind, it catches up from the log, and from a new snapshot once the log no longer holds what it lacks; restores stay exact",
            .enabled(if: hasLitestream))
        func targetFull() throws {
            // A short log retention: a second outage outlasts the log.
            let cluster = try Cluster(size: 1, retention: "2s", backup: [])
            defer { cluster.destroy() }
            let archive = cluster.archive
            let mounted = try Command.run("/bin/mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", archive])
            try #require(mounted.status == 0, "\(mounted)")
            defer { umount2(archive, Int32(MNT_DETACH)) }
            try cluster.start()
            let node = cluster.nodes[0]
            let database = node.mount + "/app.db"
            _ = try Command.sqlite(database, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB);")
            var next = 1
            func write(_ count: Int) throws {
                for _ in 0..<count {
                    // Every commit is acknowledged, whatever the archive does.
                    _ = try Command.sqlite(database, "INSERT INTO t VALUES (\(next), randomblob(20000))")
                    next += 1
                }
            }
            try write(5)
            try Self.waitForArchive(node)
            let snapshots = { BackupArchive(root: archive).files(of: "app.db", level: BackupArchive.snapshotLevel).count }
            #expect(snapshots() == 1)

            // Outage 1, shorter than the log's retention.
            let filler = archive + "/filler"
            func fill() throws {
                let result = try Command.run("/bin/dd", ["if=/dev/zero", "of=\(filler)", "bs=64k"])
                #expect(result.error.contains("No space left"), "\(result)")
            }
            try fill()
            try write(10)
            try waitUntil(timeout: 20, "status says the archive is behind and failing") {
                guard let backup = try node.status().backup, let db = backup.databases.first(where: { $0.name == "app.db" }) else { return false }
                return backup.error != nil && db.lagTransactions >= 10
            }
            try FileManager.default.removeItem(atPath: filler)
            // (Its retries back off to 30 s while the target stays full.)
            try Self.waitForArchive(node, timeout: 60)
            #expect(snapshots() == 1, "caught up from the log, without a new snapshot")
            try Self.expectRestoresLatest(archive, equal: database)
            let between = Date()
            let hashBetween = try Command.dbhash(database)
            usleep(20_000)

            // Outage 2: the log moves past what the archive holds.
            try fill()
            try write(10)
            let archivedTXID = try #require(node.status().backup?.databases.first { $0.name == "app.db" }?.archivedTXID)
            try waitUntil(timeout: 30, interval: 0.2, "the node's log no longer holds the transactions after TXID \(archivedTXID)") {
                try write(1)
                return Self.oldestLoggedTXID(node, "app.db") > archivedTXID + 1
            }
            try FileManager.default.removeItem(atPath: filler)
            // (Its retries back off to 30 s while the target stays full.)
            try Self.waitForArchive(node, timeout: 60)
            #expect(snapshots() == 2, "caught up from a new snapshot")
            #expect(node.currentLog.contains("continuing from a new snapshot"))
            try Self.expectRestoresLatest(archive, equal: database)
            // The moment between the outages is still restorable exactly.
            let restored = archive + "/between.db"
            let result = try Command.run(TestEnvironment.replfsd, ["restore", "--from", archive, "--timestamp", Self.rfc3339(between), "app.db", restored])
            #expect(result.status == 0, "\(result)")
            #expect(try Command.dbhash(restored) == hashBetween)
        }

        @Test(
            "retention: files older than the window go, keeping the snapshot a restore at the window's start needs; a restore there gives a state that existed then, before it is refused",
            .enabled(if: hasLitestream))
        func retention() throws {
            let cluster = try Cluster(size: 1, backup: ["retention: 4s", "snapshot-interval: 1s"])
            defer { cluster.destroy() }
            let archive = cluster.archive
            try cluster.start()
            let node = cluster.nodes[0]
            let database = node.mount + "/app.db"
            let start = Date()
            _ = try Command.sqlite(database, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT);")
            // (row, started, acknowledged)
            var rows: [(Int, Date, Date)] = []
            var id = 1
            while Date().timeIntervalSince(start) < 9 {
                let began = Date()
                _ = try Command.sqlite(database, "INSERT INTO t VALUES (\(id), hex(randomblob(100)))")
                rows.append((id, began, Date()))
                id += 1
                usleep(50_000)
            }
            try Self.waitForArchive(node)
            let archived = BackupArchive(root: archive)
            var oldest: BackupArchive.File?
            var stale: [BackupArchive.File] = []
            try waitUntil(timeout: 20, interval: 0.2, "retention removed the first seconds' files") {
                let files = archived.files(of: "app.db")
                guard let floor = files.filter({ $0.level == BackupArchive.snapshotLevel }).min(by: { $0.maxTXID < $1.maxTXID }) else { return false }
                oldest = floor
                stale = files.filter { $0.level < BackupArchive.snapshotLevel && $0.maxTXID <= floor.maxTXID }
                return floor.timestamp > Int64(start.timeIntervalSince1970 * 1000) + 3000 && stale.isEmpty
            }
            let floor = try #require(oldest)
            #expect(!archived.files(of: "app.db").contains { $0.timestamp < floor.timestamp }, "nothing older than the oldest snapshot kept")

            let at = Date(timeIntervalSince1970: Double(floor.timestamp) / 1000)
            let restored = archive + "/oldest.db"
            let result = try Command.run(TestEnvironment.replfsd, ["restore", "--from", archive, "--timestamp", Self.rfc3339(at), "app.db", restored])
            #expect(result.status == 0, "\(result)")
            let present = Set(try Command.sqlite(restored, "SELECT id FROM t").split(separator: "\n").compactMap { Int($0) })
            // A state that existed: rows 1...k, k at least every row acknowledged a
            // level-0 interval (1 s, batched under load) and a margin before it,
            // nothing begun after it.
            #expect(present == Set(1..<(1 + present.count)), "not a prefix of the commits: \(present.sorted().suffix(5))")
            for (row, began, acknowledged) in rows {
                if acknowledged < at.addingTimeInterval(-1.5) { #expect(present.contains(row), "row \(row), acknowledged 1.5 s before \(at), missing") }
                if began > at { #expect(!present.contains(row), "row \(row), begun after \(at), present") }
            }
            let tooEarly = try Command.run(
                TestEnvironment.replfsd, ["restore", "--from", archive, "--timestamp", Self.rfc3339(start.addingTimeInterval(0.5)), "app.db", archive + "/early.db"])
            #expect(tooEarly.status != 0, "\(tooEarly)")
            try Self.expectRestoresLatest(archive, equal: database)
        }

        // MARK: - Helpers

        /// Waits until the node's archive holds every database's newest
        /// transaction and writing it does not fail.
        static func waitForArchive(_ node: Node, timeout: Double = 30) throws {
            try waitUntil(timeout: timeout, interval: 0.05, "\(node.name)'s archive catches up") {
                guard let backup = try node.status().backup, backup.error == nil else { return false }
                let positions = try node.status().databases
                return !positions.isEmpty && positions.allSatisfy { position in
                    backup.databases.contains { $0.name == position.name && $0.archivedTXID == position.txid }
                }
            }
        }

        static func waitForPlainFile(_ archive: String, _ path: String, versions: Int) throws {
            try waitUntil(timeout: 10, interval: 0.05, "\(versions) versions of \(path) in the archive") {
                PlainFileVersion.versions(of: path, in: BackupArchive(root: archive)).count >= versions
            }
        }

        /// Restores the newest state with replfsd and with Litestream, and
        /// compares both with the live database.
        static func expectRestoresLatest(_ archive: String, equal database: String) throws {
            let expected = try Command.dbhash(database)
            let tag = UUID().uuidString.prefix(6)
            let ours = archive + "/latest-\(tag).db"
            let restored = try Command.run(TestEnvironment.replfsd, ["restore", "--from", archive, "app.db", ours])
            #expect(restored.status == 0, "\(restored)")
            #expect(try Command.dbhash(ours) == expected)
            for (index, tool) in [litestream, oldestLitestream].enumerated() where FileManager.default.isExecutableFile(atPath: tool) {
                let theirs = archive + "/litestream-\(tag)-\(index).db"
                let upstream = try Command.run(tool, ["restore", "-o", theirs, "file://" + archive + "/app.db"])
                #expect(upstream.status == 0, "\(tool): \(upstream)")
                #expect(try Command.dbhash(theirs) == expected, "\(tool)")
                try? FileManager.default.removeItem(atPath: theirs)
            }
            try? FileManager.default.removeItem(atPath: ours)
        }

        /// The first TXID the node's own LTX log still holds.
        static func oldestLoggedTXID(_ node: Node, _ database: String) -> UInt64 {
            let directory = node.data + "/ltx/" + database
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            return names.compactMap { name in UInt64(name.prefix(16), radix: 16) }.min() ?? 0
        }

        static func rfc3339(_ date: Date) -> String {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return formatter.string(from: date)
        }
    }
}
