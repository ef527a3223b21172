import Foundation
import ReplFS

#if canImport(Glibc)
import Glibc
#endif

extension Node {
    /// `replfsd status` through the admin socket.
    func status() throws -> AdminStatus {
        try AdminClient(socket: adminSocket, statusTimeout: .seconds(5)).status().get()
    }

    /// Runs a `replfsd` operator command against this node's socket.
    func admin(_ arguments: [String]) throws -> CommandResult {
        try Command.run(TestEnvironment.replfsd, arguments + ["--socket", adminSocket], timeout: 60)
    }
}

extension Cluster {
    /// Every node's log so far (the last 40 lines each), for a failure message.
    var currentLogs: String {
        nodes.map { node in
            let lines = (node.logs.joined() + node.currentLog).split(separator: "\n", omittingEmptySubsequences: false).suffix(40)
            return "--- \(node.name) ---\n" + lines.joined(separator: "\n")
        }.joined(separator: "\n")
    }

    /// The running nodes that say they are primary.
    func primaries() -> [Node] {
        nodes.filter { $0.pid != nil && (try? $0.status().role) == "primary" }
    }

    /// Waits until exactly one running node is primary and every other
    /// running node follows it; makes it ``primary``.
    @discardableResult
    func waitForPrimary(timeout: Double = 30, not excluded: Node? = nil) throws -> Node {
        var found: Node?
        try waitUntil(timeout: timeout, interval: 0.05, "one primary that the others follow") {
            let running = nodes.filter { $0.pid != nil }
            let statuses = running.compactMap { node in (try? node.status()).map { (node, $0) } }
            guard statuses.count == running.count else { return false }
            let primaries = statuses.filter { $0.1.role == "primary" && $0.1.writable }
            guard primaries.count == 1, let (primary, _) = primaries.first, primary !== excluded else { return false }
            for (node, status) in statuses where node !== primary {
                guard status.role == "replica", status.primary?.name == primary.name, status.upstream?.connected == true else { return false }
            }
            found = primary
            return true
        }
        primary = found!
        return found!
    }
}

/// A client writing through whichever mount accepts writes
/// (`replfs-testkit writer`), with its record of acknowledged commits.
final class FailoverWriter {
    let ackFile: String
    let stopFile: String
    private let started: Command.Started

    struct Summary: Decodable {
        var commits: Int
        var failures: Int
        var last_seq: Int
        var max_gap_ms: Int
        var max_gap_at_ms: Int
        var last_error: String
    }

    init(cluster: Cluster, database: String = "app.db", seconds: Double = 120, synchronous: String = "normal", journalMode: String = "wal") throws {
        ackFile = cluster.root + "/acks-\(UUID().uuidString.prefix(6))"
        stopFile = ackFile + ".stop"
        started = try Command.start(TestEnvironment.testkit, [
            "writer", "--mounts", cluster.nodes.map(\.mount).joined(separator: ","), "--database", database, "--seconds", "\(seconds)",
            "--stop-file", stopFile, "--ack-file", ackFile, "--synchronous", synchronous, "--journal-mode", journalMode,
        ])
    }

    /// The sequence numbers acknowledged so far.
    var acknowledged: [Int] {
        ((try? String(contentsOfFile: ackFile, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int($0.split(separator: " ")[0]) }
    }

    /// Waits until `count` more commits are acknowledged.
    func waitForCommits(_ count: Int, timeout: Double = 30) throws {
        let target = acknowledged.count + count
        try waitUntil(timeout: timeout, interval: 0.02, "the writer commits \(count) more transactions") { acknowledged.count >= target }
    }

    /// Stops the writer. With `tolerateCrash`, a writer killed by its file
    /// system going away under its mapped `-shm` (SIGBUS, as any
    /// application on a node that stops would be) is summarized from its
    /// acknowledgements, which are written only after each commit.
    func stop(tolerateCrash: Bool = false) throws -> Summary {
        FileManager.default.createFile(atPath: stopFile, contents: nil)
        let result = started.finish()
        if tolerateCrash, result.status != 0, result.error.contains("Bus error") {
            let acks = acknowledged
            return Summary(commits: acks.count, failures: 0, last_seq: acks.max() ?? 0, max_gap_ms: 0, max_gap_at_ms: 0, last_error: "crashed: bus error")
        }
        guard result.status == 0, let line = result.output.split(separator: "\n").last,
            let summary = try? JSONDecoder().decode(Summary.self, from: Data(line.utf8))
        else { throw Failure("writer failed: \(result)") }
        return summary
    }
}

/// Samples, every 10 ms, on which nodes the supervised application runs (a
/// process of the cluster's app script for that node that is neither
/// stopped nor a zombie), and keeps the largest number seen at once.
final class ApplicationSampler: @unchecked Sendable {
    private let script: String
    private let names: [String]
    private let lock = NSLock()
    private var running = true
    private var maximum = 0
    private var samples = 0
    private var violations: [String] = []
    private let done = DispatchSemaphore(value: 0)

    init(cluster: Cluster) {
        script = cluster.applicationScript
        names = cluster.nodes.map(\.name)
        let started = Date()
        Thread.detachNewThread { [self] in
            while lock.withLock({ running }) {
                let nodes = ApplicationSampler.runningNodes(script: script, names: names)
                lock.withLock {
                    samples += 1
                    maximum = max(maximum, nodes.count)
                    if nodes.count > 1 { violations.append(nodes.sorted().joined(separator: "+") + " at \(Int(Date().timeIntervalSince(started) * 1000)) ms") }
                }
                usleep(10_000)
            }
            done.signal()
        }
    }

    /// The nodes whose application runs now.
    static func runningNodes(script: String, names: [String]) -> Set<String> {
        var found = Set<String>()
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(entry) != nil {
            guard let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let arguments = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            // The watchdog (`replfsd app-watchdog ... -- script name`) is not the application.
            guard arguments.contains(script), !arguments.contains("app-watchdog"), let name = arguments.last, names.contains(name) else { continue }
            guard let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")"), stat.index(close, offsetBy: 2) < stat.endIndex
            else { continue }
            let state = stat[stat.index(close, offsetBy: 2)]
            if state != "T" && state != "t" && state != "Z" && state != "X" && !isDying(entry, stat: stat[stat.index(after: close)...]) {
                found.insert(name)
            }
        }
        return found
    }

    /// A process killed while it was stopped runs again for a moment to
    /// die: SIGKILL pending or exiting (PF_EXITING in its flags) is not an
    /// application that runs.
    static func isDying(_ pid: String, stat fields: Substring) -> Bool {
        // After the command: state, ppid, pgrp, session, tty, tpgid, flags.
        let values = fields.split(separator: " ")
        if values.count > 6, let flags = UInt64(values[6]), flags & 0x4 != 0 { return true }
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return true }
        for line in status.split(separator: "\n") where line.hasPrefix("SigPnd:") || line.hasPrefix("ShdPnd:") {
            if let mask = UInt64(line.split(separator: "\t").last.map(String.init) ?? "", radix: 16), mask & (1 << 8) != 0 { return true }
        }
        return false
    }

    func stop() -> (maximum: Int, samples: Int, violations: [String]) {
        lock.withLock { running = false }
        done.wait()
        return lock.withLock { (maximum, samples, violations) }
    }
}
