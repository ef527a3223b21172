import Foundation
import Logging
import ReplFS
import Testing

extension IntegrationTests {
    /// What an operator sees: `replfsd status`, and the Prometheus metrics.
    @Suite("Operations")
    struct OperationsTests {
        @Test("a replica that reconnects shows its true lag before the next commit; a deleted database shows no lag")
        func lagAfterReconnect() throws {
            try withCluster(size: 2) { cluster in
                try cluster.waitForPrimary()
                _ = try cluster.primary.workload("app.db", ["--transactions", "40", "--journal-mode", "wal"])
                _ = try Command.sqlite(cluster.primary.mount + "/gone.db", "CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                _ = try Command.sqlite(cluster.primary.mount + "/gone-offline.db", "CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                try cluster.waitForConvergence(["app.db", "gone.db", "gone-offline.db"])
                try FileManager.default.removeItem(atPath: cluster.primary.mount + "/gone.db")
                try waitUntil(timeout: 30, "the deletion reaches the replica") {
                    !FileManager.default.fileExists(atPath: cluster.replicas[0].mount + "/gone.db")
                }
                func lags() throws -> [String: UInt64]? {
                    guard let replica = try cluster.primary.status().replicas.first(where: { $0.node == "node-b" }) else { return nil }
                    return Dictionary(replica.databases.map { ($0.name, $0.lagTransactions) }, uniquingKeysWith: max)
                }
                try waitUntil(timeout: 15, "no lag after the deletion") { try lags()?.values.allSatisfy { $0 == 0 } == true }

                // Reconnect with nothing new to send: no acknowledgement will come.
                let replica = cluster.replicas[0]
                try replica.stop()
                // Deleted while the replica is away: caught up at reconnect.
                try FileManager.default.removeItem(atPath: cluster.primary.mount + "/gone-offline.db")
                try replica.start()
                var seen: [String: UInt64]?
                do {
                    try waitUntil(timeout: 15, "the reconnected replica shows lag 0") {
                        seen = try lags()
                        return seen?.isEmpty == false && seen?.values.allSatisfy { $0 == 0 } == true
                    }
                } catch {
                    Issue.record("\(error): lags \(String(describing: seen))")
                }
                try waitUntil(timeout: 15, "the offline deletion reaches the replica") {
                    !FileManager.default.fileExists(atPath: replica.mount + "/gone-offline.db")
                }
            }
        }

        @Test("a replica logs a lost primary once, not at every reconnect attempt")
        func lostPrimaryLogged() throws {
            try withCluster(size: 2) { cluster in
                _ = try Command.sqlite(cluster.primary.mount + "/app.db", "CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                try cluster.waitForConvergence(["app.db"])
                try cluster.primary.kill9()
                let replica = cluster.replicas[0]
                try waitUntil(timeout: 15, "the replica logs that the primary cannot be reached") {
                    replica.currentLog.contains("the primary cannot be reached")
                }
                // Several reconnect attempts later (backoff 0.1 s doubling),
                // still one line, and status carries the reason.
                try waitUntil(timeout: 15, "the replica keeps retrying") {
                    (try replica.status().upstream?.lastError ?? "").contains("cannot reach")
                }
                usleep(3_000_000)
                let lines = replica.currentLog.split(separator: "\n").filter { $0.contains("the primary cannot be reached") }
                #expect(lines.count == 1, "\(lines)")
            }
        }

        @Test("status shows role, epoch, positions, replicas with their lag, and the upstream link; --json parses")
        func status() throws {
            try withCluster(size: 2) { cluster in
                try cluster.waitForPrimary()
                _ = try cluster.primary.workload("app.db", ["--transactions", "50", "--journal-mode", "wal"])
                try cluster.waitForConvergence(["app.db"])
                let primary = try cluster.primary.status()
                #expect(primary.role == "primary" && primary.writable && primary.epoch == 1)
                let txid = try #require(primary.databases.first { $0.name == "app.db" }).txid
                #expect(txid >= 50)
                try waitUntil(timeout: 10, "the replica's acknowledgement is shown") {
                    let replica = try cluster.primary.status().replicas.first { $0.node == "node-b" }
                    return replica?.databases.first?.lagTransactions == 0
                }
                let replica = try cluster.replicas[0].status()
                #expect(replica.role == "replica" && !replica.writable)
                #expect(replica.upstream?.connected == true)
                #expect(replica.primary?.name == "node-a")
                #expect(replica.databases.first { $0.name == "app.db" }?.txid == txid)

                let text = try cluster.primary.admin(["status"])
                #expect(text.status == 0)
                #expect(text.output.contains("primary, writable, epoch 1"), "\(text.output)")
                #expect(text.output.contains("node-b"), "\(text.output)")
                let json = try cluster.replicas[0].admin(["status", "--json"])
                let decoded = try JSONDecoder().decode(AdminStatus.self, from: Data(json.output.utf8))
                #expect(decoded.node == "node-b")

                // A daemon that is not running: a clear error naming the socket.
                let missing = try Command.run(TestEnvironment.replfsd, ["status", "--socket", cluster.root + "/nobody.sock"])
                #expect(missing.status == 1)
                #expect(missing.error.contains("nobody.sock"), "\(missing)")
            }
        }

        @Test("metrics.listen serves role, epoch, positions, commits, replica lag and FUSE operations")
        func metrics() throws {
            let port = Cluster.freePorts(1)[0]
            try withCluster(size: 2) { cluster in
                let a = cluster.nodes[0]
                try a.stop()
                let text = try String(contentsOfFile: a.configPath, encoding: .utf8)
                try a.writeConfig(text + "\nmetrics:\n  listen: 127.0.0.1:\(port)\n")
                try a.start()
                try cluster.waitForPrimary()
                _ = try a.workload("app.db", ["--transactions", "30", "--journal-mode", "wal"])
                var body = ""
                try waitUntil(timeout: 10, interval: 0.2, "the metrics show the commits") {
                    body = (try? Command.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(port)/metrics"]).output) ?? ""
                    return body.contains("replfs_database_txid{database=\"app.db\"}") && body.contains("replfs_commits_total{database=\"app.db\"}")
                        && body.contains("replfs_replica_lag_transactions{")
                }
                #expect(body.contains("replfs_role 1"), "\(body.prefix(2000))")
                #expect(body.contains("replfs_epoch 1"))
                let writes = body.split(separator: "\n").first { $0.hasPrefix("replfs_fuse_ops_total{op=\"write\"}") }
                let count = writes.flatMap { Double($0.split(separator: " ").last!) } ?? 0
                #expect(count > 0, "FUSE writes counted: \(writes ?? "none")")
                #expect(body.contains("replfs_fuse_op_seconds_bucket{op=\"write\""))
                #expect(body.contains("replfs_ltx_bytes_total"))
                #expect(!body.contains("replfs_tls_certificate_expiry"), "no TLS, no expiry series")
            }
        }

        @Test("the supervised application runs on the primary; SIGTERM stops it before unmounting; it dies with replfsd")
        func supervision() throws {
            let cluster = try Cluster(size: 1, application: true)
            defer { cluster.destroy() }
            let node = cluster.nodes[0]
            let running = { ApplicationSampler.runningNodes(script: cluster.applicationScript, names: ["node-a"]) }
            try cluster.start()
            try waitUntil(timeout: 10, "the application runs") { running() == ["node-a"] }
            let status = try node.status()
            #expect(status.process?.state == "running", "\(status)")
            let stopped = try node.stop()
            #expect(stopped.status == 0)
            #expect(running().isEmpty)
            let log = try String(contentsOfFile: cluster.applicationLog, encoding: .utf8)
            #expect(log.contains("node-a stop"), "stopped with SIGTERM: \(log)")
            #expect(stopped.error.range(of: "stopping")!.lowerBound < stopped.error.range(of: "unmounted")!.lowerBound, "\(stopped.error)")

            try node.start()
            try waitUntil(timeout: 10, "the application runs again") { running() == ["node-a"] }
            try node.kill9()
            try waitUntil(timeout: 5, "the application dies with replfsd") { running().isEmpty }
        }

        /// The processes whose command line contains `marker`.
        static func processes(containing marker: String) -> [Int32] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
                guard let pid = Int32(entry), let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
                let state = (try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8))?.split(separator: ")").last?.split(separator: " ").first
                return String(decoding: raw, as: UTF8.self).contains(marker) && state != "Z" ? pid : nil
            }
        }

        @Test(
            "under its watchdog, a planned stop lets the application handle SIGTERM; a stop after the lease was lost kills it without one",
            .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")), arguments: [false, true])
        func watchdogStop(leaseLost: Bool) throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("replfs-watchdog-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let deadlineFile = directory + "/lease-deadline"
            func writeDeadline(_ value: UInt64) throws {
                try withUnsafeBytes(of: value.littleEndian) { Data($0) }.write(to: URL(fileURLWithPath: deadlineFile))
            }
            try writeDeadline(0)
            // An application whose SIGTERM handler takes its time (as a
            // server draining its connections does) and says it ran.
            let program = """
                import os, signal, sys, time
                def term(*_):
                    open(sys.argv[1] + "/terminated", "w").close()
                    time.sleep(0.3)
                    sys.exit(0)
                signal.signal(signal.SIGTERM, term)
                open(sys.argv[1] + "/started", "w").close()
                while True: time.sleep(1000)
                """
            let supervisor = Supervisor(
                command: ["/usr/bin/python3", "-c", program, directory],
                launcher: [TestEnvironment.replfsd, "app-watchdog", "--deadline-file", deadlineFile, "--stop-timeout", "5", "--daemon", "\(getpid())", "--"],
                stopTimeout: .seconds(7), logger: Logger(label: "test"))
            supervisor.start()
            try waitUntil(timeout: 10, "the application runs") { FileManager.default.fileExists(atPath: directory + "/started") }
            if leaseLost { try writeDeadline(1) }  // what a fence writes, just before it stops the application
            supervisor.stop(immediately: leaseLost)
            #expect(supervisor.status.state == SupervisorStatus.State.stopped)
            let terminated = FileManager.default.fileExists(atPath: directory + "/terminated")
            #expect(terminated == !leaseLost, leaseLost ? "a fenced node's application ran its SIGTERM handler" : "a planned stop did not let the application handle SIGTERM")
        }

        @Test("a child of the application that leaves its process group (setsid) is stopped by demote, by SIGTERM and by kill -9 of replfsd")
        func escapedChildren() throws {
            let cluster = try Cluster(size: 2, application: true)
            defer {
                cluster.destroy()
                for pid in Self.processes(containing: "escaped-by-") { kill(pid, SIGKILL) }
            }
            // An application that starts a daemon of its own in a new session.
            try """
                #!/bin/sh
                setsid sh -c 'while true; do sleep 0.05; done' escaped-by-$1 &
                trap 'exit 0' TERM
                while true; do sleep 0.05; done
                """.write(toFile: cluster.applicationScript, atomically: true, encoding: .utf8)
            chmod(cluster.applicationScript, 0o755)
            let (a, b) = (cluster.nodes[0], cluster.nodes[1])
            try cluster.start()
            try cluster.waitForPrimary()
            try waitUntil(timeout: 10, "node-a's application and its escaped child run") { !Self.processes(containing: "escaped-by-node-a").isEmpty }

            let demoted = try a.admin(["demote"])
            #expect(demoted.status == 0, "\(demoted)")
            try waitUntil(timeout: 5, "demote stops the escaped child too") { Self.processes(containing: "escaped-by-node-a").isEmpty }
            try waitUntil(timeout: 10, "node-b's application runs") { !Self.processes(containing: "escaped-by-node-b").isEmpty }

            try b.stop()
            #expect(Self.processes(containing: "escaped-by-node-b").isEmpty, "replfsd exited and left its application's child running")

            try b.start()
            let promoted = try a.status().role == "primary" ? a : b
            let marker = "escaped-by-" + promoted.name
            try waitUntil(timeout: 10, "the application runs on \(promoted.name)") { !Self.processes(containing: marker).isEmpty }
            try promoted.kill9()
            try waitUntil(timeout: 5, "kill -9 of replfsd takes the escaped child with it") { Self.processes(containing: marker).isEmpty }
        }
    }
}
