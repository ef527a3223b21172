import Foundation
import ReplFS
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// Roles that change at run time: handoffs by hand (static lease and
    /// etcd), automatic failover with etcd, fencing, and the supervised
    /// application following the primary role.
    @Suite("Failover")
    struct FailoverTests {
        /// Every acknowledged transaction is in `database` on `node`.
        static func expectAllAcknowledged(_ writer: FailoverWriter, on node: Node, _ database: String = "app.db") throws {
            let acknowledged = Set(writer.acknowledged)
            let present = try Command.sqlite(node.mount + "/" + database, "SELECT seq FROM acks")
            let stored = Set(present.split(separator: "\n").compactMap { Int($0) })
            let missing = acknowledged.subtracting(stored)
            #expect(missing.isEmpty, "\(missing.count) acknowledged transactions missing on \(node.name): \(missing.sorted().prefix(10))")
            #expect(!acknowledged.isEmpty)
        }

        @Test("static lease: promote and demote under continuous writes lose nothing, and a restarted old primary stays a replica")
        func staticHandoff() throws {
            let cluster = try Cluster(application: true)
            defer { cluster.destroy() }
            try cluster.start()
            try cluster.waitForPrimary()
            let sampler = ApplicationSampler(cluster: cluster)
            let writer = try FailoverWriter(cluster: cluster)
            try writer.waitForCommits(300)

            // promote on a replica: the primary hands over to it.
            let b = cluster.nodes[1]
            let promoted = try b.admin(["promote"])
            #expect(promoted.status == 0, "\(promoted)")
            #expect(promoted.output.contains("node-b is the primary at epoch 2"), "\(promoted)")
            #expect(try cluster.waitForPrimary() === b)
            try writer.waitForCommits(300)

            // demote on the primary: the most caught-up candidate takes over.
            let demoted = try b.admin(["demote"])
            #expect(demoted.status == 0, "\(demoted)")
            let third = try cluster.waitForPrimary(not: b)
            #expect(try third.status().epoch == 3)
            try writer.waitForCommits(300)

            let summary = try writer.stop()
            try cluster.waitForConvergence(["app.db"], nodes: cluster.replicas)
            try Self.expectAllAcknowledged(writer, on: third)
            for node in cluster.nodes { #expect(try node.status().asides.isEmpty, "\(node.name) moved a database aside") }
            print("static handoff: \(summary.commits) commits, longest write gap \(summary.max_gap_ms) ms")
            #expect(summary.max_gap_ms < 5_000)

            // The application ran on one node at a time, and now on the primary.
            try waitUntil(timeout: 10, "the application runs on \(third.name)") {
                ApplicationSampler.runningNodes(script: cluster.applicationScript, names: cluster.nodes.map(\.name)) == [third.name]
            }
            let runs = sampler.stop()
            #expect(runs.maximum == 1, "the application ran on several nodes at once: \(runs.violations.prefix(5))")

            // The epoch is persisted: node-a (configured primary) restarts as a replica.
            let a = cluster.nodes[0]
            if a !== third {
                try a.stop()
                try a.start()
                let status = try a.status()
                #expect(status.role == "replica")
                #expect(status.primary?.name == third.name)
                #expect(status.epoch == 3)
            }
        }

        @Test("promote on a non-candidate, demote with no candidate or on a replica, a malformed admin request: clear errors, nothing changed")
        func badRequests() throws {
            let cluster = try Cluster(size: 2, extra: "")
            defer { cluster.destroy() }
            // node-b may never become primary.
            let b = cluster.nodes[1]
            let text = try String(contentsOfFile: b.configPath, encoding: .utf8)
            try b.writeConfig(text.replacingOccurrences(of: "lease:\n", with: "lease:\n  candidate: false\n"))
            try cluster.start()
            let a = try cluster.waitForPrimary()
            #expect(a.name == "node-a")

            let promote = try b.admin(["promote"])
            #expect(promote.status == 1)
            #expect(promote.error.contains("candidate: false"), "\(promote)")
            let demoteReplica = try b.admin(["demote"])
            #expect(demoteReplica.status == 1)
            #expect(demoteReplica.error.contains("not the primary"), "\(demoteReplica)")
            let demote = try a.admin(["demote"])
            #expect(demote.status == 1)
            #expect(demote.error.contains("no candidate"), "\(demote)")

            // A malformed request on the socket is refused with a message.
            let reply = try Command.run("/usr/bin/curl", ["-s", "--unix-socket", a.adminSocket, "-X", "POST", "-d", "{not json", "http://replfsd/promote"])
            #expect(reply.output.contains("bad-request"), "\(reply)")

            let status = try a.status()
            #expect(status.role == "primary" && status.writable && status.epoch == 1)
            #expect(try b.status().role == "replica")
        }

        @Test("export gives a consistent copy on any node; import on the primary replaces a database everywhere")
        func exportImport() throws {
            try withCluster(size: 2) { cluster in
                try cluster.waitForPrimary()
                _ = try cluster.primary.workload("app.db", ["--transactions", "200", "--journal-mode", "wal"])
                try cluster.waitForConvergence(["app.db"])
                let copy = cluster.root + "/copy.db"
                let exported = try cluster.replicas[0].admin(["export", "app.db", copy])
                #expect(exported.status == 0, "\(exported)")
                #expect(try Command.sqlite(copy, "PRAGMA integrity_check") == "ok")
                #expect(try Command.dbhash(copy) == Command.dbhash(cluster.primary.mount + "/app.db"))

                let source = cluster.root + "/source.db"
                _ = try Command.sqlite(source, "CREATE TABLE t(x); INSERT INTO t VALUES (42);")
                let refused = try cluster.replicas[0].admin(["import", "app.db", source])
                #expect(refused.status == 1 && refused.error.contains("not the primary"), "\(refused)")
                let imported = try cluster.primary.admin(["import", "app.db", source])
                #expect(imported.status == 0, "\(imported)")
                try cluster.waitForConvergence(["app.db"])
                #expect(try Command.sqlite(cluster.replicas[0].mount + "/app.db", "SELECT x FROM t") == "42")
                let bad = try cluster.primary.admin(["import", "app.db", cluster.root + "/token"])
                #expect(bad.status == 1, "\(bad)")
                #expect(try Command.sqlite(cluster.primary.mount + "/app.db", "SELECT x FROM t") == "42")
            }
        }

        @Test(
            "etcd: kill -9 of the primary under writes: another node takes over, writes resume; the killed node rejoins and converges",
            .enabled(if: EtcdServer.isInstalled))
        func etcdCrashFailover() throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let cluster = try Cluster(lease: .etcd(endpoint: etcd.endpoint), application: true)
            defer { cluster.destroy() }
            // node-c may never campaign: the other survivor must win.
            let c = cluster.nodes[2]
            let text = try String(contentsOfFile: c.configPath, encoding: .utf8)
            try c.writeConfig(text.replacingOccurrences(of: "lease:\n", with: "lease:\n  candidate: false\n"))
            try cluster.start()
            let first = try cluster.waitForPrimary()
            #expect(first !== c)
            let sampler = ApplicationSampler(cluster: cluster)
            let writer = try FailoverWriter(cluster: cluster)
            try writer.waitForCommits(300)

            let killed = Date()
            try first.kill9()
            try writer.waitForCommits(1, timeout: 30)
            let failover = Date().timeIntervalSince(killed)
            print("etcd crash failover: kill -9 to the first acknowledged write on the new primary: \(Int(failover * 1000)) ms")
            #expect(failover < 10)
            let second = try cluster.waitForPrimary(not: first)
            #expect(second !== c, "a node with lease.candidate: false became primary")
            try writer.waitForCommits(300)
            let summary = try writer.stop()

            // The killed node comes back as a replica and converges.
            try first.start()
            try cluster.waitForPrimary()
            #expect(cluster.primary === second)
            try cluster.waitForConvergence(["app.db"], nodes: cluster.replicas)
            #expect(try first.status().role == "replica")
            let runs = sampler.stop()
            #expect(runs.maximum == 1, "the application ran on several nodes at once: \(runs.violations.prefix(5))")
            #expect(ApplicationSampler.runningNodes(script: cluster.applicationScript, names: cluster.nodes.map(\.name)) == [second.name])
            print("etcd crash failover: \(summary.commits) commits, longest write gap \(summary.max_gap_ms) ms")
        }

        @Test(
            "etcd: a hung primary (SIGSTOP past the TTL) has stopped writing when another is elected, and follows it after resuming",
            .enabled(if: EtcdServer.isInstalled))
        func etcdHungPrimary() throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let cluster = try Cluster(lease: .etcd(endpoint: etcd.endpoint), application: true)
            defer { cluster.destroy() }
            try cluster.start()
            let hung = try cluster.waitForPrimary()
            _ = try Command.sqlite(hung.mount + "/app.db", "PRAGMA journal_mode=wal; CREATE TABLE acks(seq INTEGER PRIMARY KEY, node, at);")
            // The application has started (not only its watchdog, which
            // could otherwise start it between the listing below and the
            // SIGSTOP, leaving it running unfrozen).
            try waitUntil(timeout: 20, "the application runs on \(hung.name)") {
                ApplicationSampler.runningNodes(script: cluster.applicationScript, names: [hung.name]) == [hung.name]
            }
            let sampler = ApplicationSampler(cluster: cluster)
            let samplerStarted = Date()
            // The whole node hangs: the daemon and its application.
            let application = ApplicationSampler.pids(script: cluster.applicationScript, node: hung.name)
            let stopped = Date()
            for pid in [hung.pid!] + application { kill(pid, SIGSTOP) }
            var elected: Node?
            try waitUntil(timeout: 20, interval: 0.05, "another node is elected") {
                elected = cluster.nodes.first { $0 !== hung && (try? $0.status().role) == "primary" }
                return elected != nil
            }
            print("etcd hung primary: SIGSTOP to a new primary elected: \(Int(Date().timeIntervalSince(stopped) * 1000)) ms")
            print("etcd hung primary: sampler started \(Int(stopped.timeIntervalSince(samplerStarted) * 1000)) ms before SIGSTOP")
            // replfsd resumes first and fences itself within 50 ms (its lease
            // deadline passed); its application, frozen with it, is killed by
            // its watchdog, which sees the deadline passed. (Resumed at the
            // same instant, the application could run for that moment without
            // being able to write: the mount refuses writes from the deadline on.)
            // The application's watchdog (`replfsd app-watchdog`, frozen
            // with it) is part of replfsd's machinery and resumes with it.
            let watchdogs = application.filter { pid in
                (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).split(separator: 0).contains { $0.elementsEqual("app-watchdog".utf8) }
            }
            kill(hung.pid!, SIGCONT)
            for pid in watchdogs { kill(pid, SIGCONT) }
            try waitUntil(timeout: 5, interval: 0.01, "the resumed old primary fences itself") {
                guard let role = try? hung.status().role else { return false }
                return role != "primary"
            }
            // Its application is killed, not asked to stop: it never gets to
            // run (a SIGTERM handler, say) next to the new primary's.
            let frozen = application.filter { !watchdogs.contains($0) }
            try waitUntil(timeout: 5, interval: 0.01, "the watchdog kills the frozen application") {
                frozen.allSatisfy { pid in
                    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return true }
                    return stat[stat.index(close, offsetBy: 2)] == "Z"
                }
            }
            for pid in frozen { kill(pid, SIGCONT) }
            // After resuming, a write on it fails: its lease ran out while it was stopped.
            let write = try Command.run("/usr/bin/sqlite3", [hung.mount + "/app.db", "INSERT INTO acks VALUES (1, 'hung', 0)"])
            #expect(write.status != 0, "a write on the resumed old primary must fail: \(write)")
            let primary = try cluster.waitForPrimary()
            #expect(primary === elected)
            #expect(try hung.status().role == "replica")
            _ = try Command.sqlite(primary.mount + "/app.db", "INSERT INTO acks VALUES (2, 'new', 0)")
            try cluster.waitForConvergence(["app.db"], nodes: cluster.replicas)
            #expect(try Command.sqlite(hung.mount + "/app.db", "SELECT group_concat(seq) FROM acks") == "2")
            let runs = sampler.stop()
            #expect(runs.maximum == 1, "the application ran on several nodes at once: \(runs.violations.prefix(5))")
        }

        @Test(
            "etcd: a primary cut off by a network partition stops writing within its TTL, before another is elected, and rejoins keeping what it committed alone aside",
            .enabled(if: EtcdServer.isInstalled && NetworkNamespace.isAvailable), arguments: ["wal", "delete"])
        func etcdPartition(journalMode: String) throws {
            let namespace = try NetworkNamespace()
            defer { namespace.destroy() }
            let etcd = try EtcdServer(start: false)
            etcd.extraClientHost = namespace.hostAddress
            try etcd.start()
            defer { etcd.stop() }
            let cluster = try Cluster.started(across: namespace, etcd: etcd)
            defer { cluster.destroy() }
            let a = cluster.nodes[0]
            _ = try Command.sqlite(a.mount + "/app.db", "PRAGMA journal_mode=\(journalMode); CREATE TABLE acks(seq INTEGER PRIMARY KEY, node, at);")
            try cluster.waitForConvergence(["app.db"])

            let cut = Date()
            try namespace.cut()
            // An application that keeps its connection (as Headscale does):
            // what it commits stays in node-a's WAL, never checkpointed.
            let writer = try ConnectionWriter(database: a.mount + "/app.db", insert: "INSERT INTO acks VALUES (?, 'a', 0)", busyTimeout: 5, pause: 0.005)
            defer { writer.kill() }
            var refusedAt: Date?
            var electedAt: Date?
            try waitUntil(timeout: 30, interval: 0.02, "node-a refuses writes and another node is elected") {
                if refusedAt == nil, writer.refused { refusedAt = Date() }
                if electedAt == nil, cluster.replicas.contains(where: { (try? $0.status().role) == "primary" }) { electedAt = Date() }
                return refusedAt != nil && electedAt != nil
            }
            let seq = writer.acknowledged.count + 1
            let refused = refusedAt!.timeIntervalSince(cut)
            let elected = electedAt!.timeIntervalSince(cut)
            print("etcd partition: node-a refused writes after \(Int(refused * 1000)) ms, another node elected after \(Int(elected * 1000)) ms")
            #expect(refused < 2.0, "the cut-off primary must stop writing within its TTL (2 s)")
            #expect(refused < elected, "the cut-off primary must stop writing before another node is elected")
            // The refusal says why: the lease, and since when; not "a replica".
            try waitUntil(timeout: 10, "node-a logs why it refuses writes") { a.currentLog.contains("refused a write: this node") }
            #expect(!a.currentLog.contains("refused a write on a replica"), "\(a.currentLog.suffix(2000))")

            try namespace.heal()
            let primary = try cluster.waitForPrimary(timeout: 30)
            #expect(primary !== a)
            _ = try Command.sqlite(primary.mount + "/app.db", "INSERT INTO acks VALUES (100000, 'new', 0)")
            do {
                try cluster.waitForConvergence(["app.db"], nodes: cluster.replicas)
            } catch {
                // What the rejoining node did, for the failure report.
                print("node-a's log:\n\(a.currentLog.suffix(8000))")
                throw error
            }
            #expect(try a.status().role == "replica")

            // What node-a acknowledged alone is not on the new primary; it is
            // in node-a's aside copy, complete, which opens by itself.
            let alone = seq - 1
            try #require(alone > 0, "node-a acknowledged nothing during the partition")
            #expect(try Command.sqlite(primary.mount + "/app.db", "SELECT count(*) FROM acks WHERE seq < 100000") == "0")
            let asides = try a.status().asides
            #expect(asides.count == 1, "\(asides)")
            if let copy = asides.first {
                let kept = FileManager.default.temporaryDirectory.path + "/aside-\(UUID().uuidString).db"
                try FileManager.default.copyItem(atPath: copy, toPath: kept)
                defer { try? FileManager.default.removeItem(atPath: kept) }
                #expect(try Command.sqlite(kept, "PRAGMA integrity_check") == "ok")
                #expect(try Command.sqlite(kept, "SELECT count(*) FROM acks WHERE seq BETWEEN 1 AND \(alone)") == "\(alone)", "node-a acknowledged \(alone) rows alone")
                let summary = try a.admin(["status"]).output
                #expect(summary.contains("app.db through TXID"), "\(summary)")
            }
        }

        @Test(
            "etcd: replfsd frozen (SIGSTOP) past the TTL while its application runs: the application is gone within the TTL, never two at once",
            .enabled(if: EtcdServer.isInstalled))
        func etcdFrozenDaemon() throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let cluster = try Cluster(lease: .etcd(endpoint: etcd.endpoint), application: true)
            defer { cluster.destroy() }
            try cluster.start()
            let frozen = try cluster.waitForPrimary()
            let sampler = ApplicationSampler(cluster: cluster)
            func application() -> [Int32] { ApplicationSampler.pids(script: cluster.applicationScript, node: frozen.name) }
            try waitUntil(timeout: 10, "the application runs on \(frozen.name)") { !application().isEmpty }
            // Only the daemon freezes; its application would run on.
            let stoppedAt = Date()
            kill(frozen.pid!, SIGSTOP)
            try waitUntil(timeout: 5, interval: 0.01, "the frozen node's application is killed") { application().isEmpty }
            let gone = Date().timeIntervalSince(stoppedAt)
            var elected: Node?
            try waitUntil(timeout: 20, interval: 0.05, "another node is elected") {
                elected = cluster.nodes.first { $0 !== frozen && (try? $0.status().role) == "primary" }
                return elected != nil
            }
            let electedAfter = Date().timeIntervalSince(stoppedAt)
            print("etcd frozen daemon: its application gone after \(Int(gone * 1000)) ms, another node elected after \(Int(electedAfter * 1000)) ms")
            #expect(gone < 2.0, "the application must be gone within the lease TTL (2 s)")
            #expect(gone < electedAfter)
            #expect(electedAfter < 4.0, "failover within the usual time")
            kill(frozen.pid!, SIGCONT)
            let primary = try cluster.waitForPrimary()
            #expect(primary === elected)
            #expect(try frozen.status().role == "replica")
            let runs = sampler.stop()
            #expect(runs.maximum == 1, "the application ran on several nodes at once: \(runs.violations.prefix(5))")
            #expect(frozen.currentLog.contains("lease deadline passed"), "the watchdog says why: \(frozen.currentLog.suffix(1500))")
        }

        @Test(
            "etcd: SIGTERM to every node under writes, then starting them all, loses no acknowledged commit and keeps nothing aside",
            .enabled(if: EtcdServer.isInstalled))
        func etcdWholeClusterRestart() throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let cluster = try Cluster(lease: .etcd(endpoint: etcd.endpoint))
            defer { cluster.destroy() }
            try cluster.start()
            for round in 1...3 {
                let primary = try cluster.waitForPrimary(timeout: 30)
                let writer = try FailoverWriter(cluster: cluster)
                try writer.waitForCommits(200)
                // Every node at once, as a host shutdown or `systemctl stop` would.
                for node in cluster.nodes { node.terminate() }
                for node in cluster.nodes { try node.stop(signal: false) }
                let summary = try writer.stop(tolerateCrash: true)
                // The replicas first: the first to start must not simply win.
                for node in cluster.nodes.reversed() { try node.start() }
                let next = try cluster.waitForPrimary(timeout: 30)
                print("whole-cluster restart \(round): \(summary.commits) commits on \(primary.name), then \(next.name) became primary")
                try Self.expectAllAcknowledged(writer, on: next)
                try cluster.waitForConvergence(["app.db"], nodes: cluster.nodes.filter { $0 !== next })
                for node in cluster.nodes { #expect(try node.status().asides.isEmpty, "round \(round): \(node.name) moved a database aside\n\(cluster.currentLogs)") }
            }
        }

        @Test(
            "etcd unreachable: a replica says how old what it shows about the primary is, and its last error says when it happened and that it cleared",
            .enabled(if: EtcdServer.isInstalled))
        func etcdOutageStatus() throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let cluster = try Cluster(size: 2, lease: .etcd(endpoint: etcd.endpoint))
            defer { cluster.destroy() }
            try cluster.start()
            let primary = try cluster.waitForPrimary()
            let replica = cluster.nodes.first { $0 !== primary }!
            #expect(try replica.status().lease.lastContactMsAgo.map { $0 < 2000 } == true)

            etcd.pause()
            var status: AdminStatus?
            try waitUntil(timeout: 20, "the replica notices etcd is unreachable") {
                status = try? replica.status()
                return status?.lease.lastErrorHolds == true && (status?.lease.lastContactMsAgo ?? 0) >= 1500
            }
            #expect(status?.lease.lastErrorAt != nil)
            let text = try replica.admin(["status"]).output
            #expect(text.contains("etcd not reached since"), "\(text)")
            #expect(text.contains("(still holds)"), "\(text)")
            #expect(try replica.status().lastError != nil, "an error that holds is shown")

            etcd.resume()
            try waitUntil(timeout: 30, "the replica hears from etcd again") {
                status = try? replica.status()
                return status?.lease.lastErrorHolds == false && (status?.lease.lastContactMsAgo ?? .max) < 1000
            }
            let after = try replica.admin(["status"]).output
            #expect(!after.contains("etcd not reached since"), "\(after)")
            #expect(after.contains("(cleared since)"), "\(after)")
            #expect(status?.lastError == nil, "a cleared lease error is not shown as the node's error: \(String(describing: status?.lastError))")
        }

        @Test("etcd: promote and demote hand over through the lease and lose nothing", .enabled(if: EtcdServer.isInstalled))
        func etcdHandoff() throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let cluster = try Cluster(lease: .etcd(endpoint: etcd.endpoint), application: true)
            defer { cluster.destroy() }
            try cluster.start()
            let first = try cluster.waitForPrimary()
            let sampler = ApplicationSampler(cluster: cluster)
            let writer = try FailoverWriter(cluster: cluster)
            try writer.waitForCommits(300)
            let target = cluster.replicas[0]
            // A long read on the other replica holds its apply back, so it
            // sees the old primary's key go before it reads the handoff
            // marker: it must still not campaign (the key is handed over
            // through etcd, not only through the stream).
            let bystander = cluster.replicas[1]
            let reader = try Command.start("/usr/bin/env", [
                "python3", "-c",
                "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN'); "
                    + "c.execute('SELECT count(*) FROM acks').fetchall(); sys.stderr.write('held\\n'); sys.stderr.flush(); time.sleep(60)",
                bystander.mount + "/app.db",
            ])
            try waitUntil(timeout: 30, "a read transaction is open on \(bystander.name)") { reader.errorSoFar.contains("held") }
            try writer.waitForCommits(100)
            let promoted = try target.admin(["promote"])
            kill(reader.process.processIdentifier, SIGKILL)
            _ = reader.finish()
            #expect(promoted.status == 0, "\(promoted)\n\(cluster.currentLogs)")
            #expect(try cluster.waitForPrimary() === target)
            let epochAfterPromote = try target.status().epoch
            #expect(epochAfterPromote.rawValue > (try first.status().epoch).rawValue - 1)
            try writer.waitForCommits(300)
            let demoted = try target.admin(["demote"])
            #expect(demoted.status == 0, "\(demoted)\n\(cluster.currentLogs)")
            let last = try cluster.waitForPrimary(not: target)
            #expect(try last.status().epoch > epochAfterPromote)
            try writer.waitForCommits(300)
            let summary = try writer.stop()
            try cluster.waitForConvergence(["app.db"], nodes: cluster.replicas)
            try Self.expectAllAcknowledged(writer, on: last)
            for node in cluster.nodes { #expect(try node.status().asides.isEmpty, "\(node.name) moved a database aside") }
            print("etcd handoff: \(summary.commits) commits, longest write gap \(summary.max_gap_ms) ms")
            #expect(summary.max_gap_ms < 5_000)
            let runs = sampler.stop()
            #expect(runs.maximum == 1, "the application ran on several nodes at once: \(runs.violations.prefix(5))")
        }
    }
}

extension ApplicationSampler {
    /// The processes of the application of `node`.
    static func pids(script: String, node: String) -> [Int32] {
        var pids: [Int32] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let arguments = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if arguments.contains(script), arguments.last == node { pids.append(pid) }
        }
        return pids
    }
}

extension Cluster {
    /// Three nodes on an etcd lease (`etcd` answering on the namespace's
    /// host address too), node-a inside `namespace`, the others on the host
    /// side of the link; node-a starts first and is the primary.
    static func started(across namespace: NetworkNamespace, etcd: EtcdServer, replication: [String] = []) throws -> Cluster {
        let cluster = try Cluster(lease: .etcd(endpoint: etcd.extraEndpoint!), replication: replication)
        do {
            for (index, node) in cluster.nodes.enumerated() {
                let address = index == 0 ? namespace.namespaceAddress : namespace.hostAddress
                let text = try String(contentsOfFile: node.configPath, encoding: .utf8)
                try node.writeConfig(text.replacingOccurrences(of: "listen: 127.0.0.1:", with: "listen: \(address):"))
            }
            let a = cluster.nodes[0]
            a.launcher = ["/usr/bin/nsenter", "--net=\(namespace.path)"]
            try a.start()
            try waitUntil(timeout: 20, "node-a is primary") { (try? a.status().role) == "primary" }
            for node in cluster.replicas { try node.start() }
            guard try cluster.waitForPrimary() === a else { throw Failure("node-a is not the primary") }
        } catch {
            cluster.destroy()
            throw error
        }
        return cluster
    }
}

/// An application that keeps one SQLite connection (as Headscale does) and
/// inserts row after row with `insert` (one `?`, the sequence number); it
/// reports each commit SQLite returned ("ack N"), and stops at the first
/// refusal.
final class ConnectionWriter {
    private let started: Command.Started

    init(database: String, insert: String, busyTimeout: Double, pause: Double) throws {
        started = try Command.start("/usr/bin/env", [
            "python3", "-c",
            """
            import sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=float(sys.argv[3]))
            seq = 1
            while True:
                try:
                    c.execute(sys.argv[2], (seq,))
                except Exception as e:
                    sys.stderr.write("refused %s\\n" % e); sys.stderr.flush(); time.sleep(3600)
                sys.stderr.write("ack %d\\n" % seq); sys.stderr.flush()
                seq += 1
                time.sleep(float(sys.argv[4]))
            """,
            database, insert, "\(busyTimeout)", "\(pause)",
        ])
    }

    /// The sequence numbers whose commit returned.
    var acknowledged: [Int] { started.errorSoFar.split(separator: "\n").filter { $0.hasPrefix("ack ") }.compactMap { Int($0.dropFirst(4)) } }
    /// A commit failed (the writer stopped there).
    var refused: Bool { started.errorSoFar.contains("refused") }

    func kill() { Glibc.kill(started.process.processIdentifier, SIGKILL) }
}

/// A network namespace joined to the host by a veth pair, to cut a node off
/// (link down: packets vanish, as in a real partition).
final class NetworkNamespace {
    let name: String
    let hostDevice: String
    let hostAddress: String
    let namespaceAddress: String
    var path: String { "/run/netns/" + name }

    static var isAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") && FileManager.default.isExecutableFile(atPath: "/usr/bin/nsenter")
    }

    init() throws {
        let tag = String(UUID().uuidString.prefix(4)).lowercased()
        name = "rfs-" + tag
        hostDevice = "rfsh" + tag
        let subnet = Int.random(in: 1...250)
        hostAddress = "10.201.\(subnet).1"
        namespaceAddress = "10.201.\(subnet).2"
        for arguments in [
            ["netns", "add", name],
            ["link", "add", hostDevice, "type", "veth", "peer", "name", "rfsn" + tag],
            ["link", "set", "rfsn" + tag, "netns", name],
            ["addr", "add", hostAddress + "/24", "dev", hostDevice],
            ["link", "set", hostDevice, "up"],
            ["netns", "exec", name, "ip", "addr", "add", namespaceAddress + "/24", "dev", "rfsn" + tag],
            ["netns", "exec", name, "ip", "link", "set", "rfsn" + tag, "up"],
            ["netns", "exec", name, "ip", "link", "set", "lo", "up"],
        ] {
            let result = try Command.run("/usr/sbin/ip", arguments)
            guard result.status == 0 else {
                destroy()
                throw Failure("ip \(arguments.joined(separator: " ")): \(result)")
            }
        }
    }

    func cut() throws {
        let result = try Command.run("/usr/sbin/ip", ["link", "set", hostDevice, "down"])
        guard result.status == 0 else { throw Failure("cannot cut the link: \(result)") }
    }

    func heal() throws {
        let result = try Command.run("/usr/sbin/ip", ["link", "set", hostDevice, "up"])
        guard result.status == 0 else { throw Failure("cannot restore the link: \(result)") }
    }

    func destroy() {
        _ = try? Command.run("/usr/sbin/ip", ["link", "del", hostDevice])
        _ = try? Command.run("/usr/sbin/ip", ["netns", "del", name])
    }
}
