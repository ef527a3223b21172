import Foundation
import ReplFS

#if canImport(Glibc)
import Glibc
#endif

/// One `replfsd` process with its own mount and data directory under a
/// private temporary root, started and stopped for real.
final class Node: @unchecked Sendable {
    let name: String
    let root: String
    var mount: String { root + "/mnt" }
    var data: String { root + "/data" }
    var configPath: String { root + "/replfsd.yml" }
    /// Each node its own admin socket (several run on one machine).
    var adminSocket: String { root + "/admin.sock" }
    private(set) var process: Command.Started?
    /// A command that runs replfsd (for example `nsenter --net=...`, to put
    /// the node in a network namespace of its own).
    var launcher: [String] = []
    private(set) var logs: [String] = []

    /// Creates the directory layout and a config (`extraConfig` is appended
    /// verbatim, for tests of particular keys).
    init(name: String = "node-a", root: String? = nil, extraConfig: String = "") throws {
        self.name = name
        self.root = root ?? NSTemporaryDirectory() + "replfs-it-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: self.root, withIntermediateDirectories: true)
        try writeConfig("""
            node: \(name)
            mount: \(mount)
            data: \(data)
            \(extraConfig)
            """)
    }

    func writeConfig(_ text: String) throws {
        var text = text
        if !text.contains("\nadmin:") && !text.hasPrefix("admin:") { text += "\nadmin:\n  socket: \(adminSocket)\n" }
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts `replfsd mount` and waits until the mount serves requests.
    func start(timeout: Double = 30) throws {
        precondition(process == nil, "already running")
        let arguments = [TestEnvironment.replfsd, "mount", "--config", configPath, "--log-level", "info"]
        let command = launcher + arguments
        let started = try Command.start(command[0], Array(command.dropFirst()))
        process = started
        do {
            try waitUntil(timeout: timeout, "\(name) is mounted") {
                guard started.process.isRunning else {
                    throw Failure("replfsd exited early: \(started.finish())")
                }
                // Listed and answered by FUSE: a dead mount left by kill -9 is
                // listed too (statfs fails with ENOTCONN), and while replfsd
                // replaces it the bare directory answers (not FUSE).
                return Node.isMounted(mount) && Node.isServedByFUSE(mount)
            }
        } catch {
            kill(started.pid, SIGKILL)
            process = nil
            throw error
        }
    }

    /// SIGTERM (unless ``terminate()`` sent it), then waits for a clean
    /// exit; returns the exit status.
    @discardableResult
    func stop(timeout: Double = 30, signal: Bool = true) throws -> CommandResult {
        guard let started = process else { throw Failure("\(name) is not running") }
        if signal { kill(started.pid, SIGTERM) }
        try waitUntil(timeout: timeout, "\(name) exits after SIGTERM") { !started.process.isRunning }
        process = nil
        let result = started.finish()
        logs.append(result.error)
        return result
    }

    /// SIGTERM without waiting, to stop several nodes at once; then
    /// `stop(signal: false)`.
    func terminate() {
        if let started = process { kill(started.pid, SIGTERM) }
    }

    /// SIGKILL: the daemon dies with the mount still attached.
    func kill9() throws {
        guard let started = process else { throw Failure("\(name) is not running") }
        kill(started.pid, SIGKILL)
        try waitUntil(timeout: 30, "\(name) dies") { !started.process.isRunning }
        process = nil
        logs.append(started.finish().error)
    }

    var pid: Int32? { process?.pid }

    /// The daemon's log so far.
    var currentLog: String { process?.errorSoFar ?? "" }

    /// Stops the daemon if needed, clears any mount and removes the files.
    func destroy() {
        if let started = process {
            kill(started.pid, SIGKILL)
            started.process.waitUntilExit()
            _ = started.finish()
            process = nil
        }
        if Node.isMounted(mount) { umount2(mount, Int32(MNT_DETACH)) }
        // REPLFS_KEEP_TEST_DATA=1 keeps the directories for a post-mortem.
        if ProcessInfo.processInfo.environment["REPLFS_KEEP_TEST_DATA"] == nil {
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    deinit { destroy() }

    /// A file system answers at `path` and it is not the parent's (the bare
    /// directory under a mount has its parent's device).
    static func isServedByFUSE(_ path: String) -> Bool {
        var fs = statvfs()
        var own = stat()
        var parent = stat()
        return statvfs(path, &fs) == 0 && stat(path, &own) == 0 && stat(path + "/..", &parent) == 0 && own.st_dev != parent.st_dev
    }

    static func isMounted(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        return text.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4] == path
        }
    }

    // MARK: - Data directory views

    /// The LTX files of the database at `path` (relative to the mount), in
    /// TXID order, one per record of its log: segments' records written out
    /// as single files beside the node (`ltx-view/`), as `replfsd verify`
    /// reads them, and readable while the node is stopped.
    func ltxFiles(_ path: String) -> [String] {
        let view = root + "/ltx-view"
        try? FileManager.default.removeItem(atPath: view)
        guard let expanded = try? LTXSegment.singleFiles(of: [ltxDirectory(path)]) else { return [] }
        var directory = expanded.directory
        if expanded.temporary {
            try? FileManager.default.moveItem(atPath: expanded.directory, toPath: view)
            directory = view
        }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { (try? LTXFileName(parsing: $0)) != nil }
        return names.sorted().map { directory + "/" + $0 }
    }

    /// Waits until the newest file of the node's log reaches the position
    /// the node reports for `database`. The position moves at each commit;
    /// the files are written just after by a thread at the lowest priority,
    /// so under load the log trails the commits.
    func waitForLog(_ database: String, timeout: Double = 60) throws {
        guard let txid = try status().databases.first(where: { $0.name == database })?.txid else {
            throw Failure("\(name) does not report \(database)")
        }
        try waitUntil(timeout: timeout, interval: 0.05, "\(name)'s log of \(database) reaches TXID \(txid)") {
            Cluster.position(of: self, database)?.txid.rawValue == txid
        }
    }

    /// The log directory of `path`: its escaped path, or, for a path too
    /// long for one file name, the directory whose `path` file names it.
    func ltxDirectory(_ path: String) -> String {
        let escaped = path.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "/", with: "%2F")
        guard escaped.utf8.count > 200 else { return data + "/ltx/" + escaped }
        for key in (try? FileManager.default.contentsOfDirectory(atPath: data + "/ltx")) ?? [] {
            if (try? String(contentsOfFile: data + "/ltx/" + key + "/path", encoding: .utf8)) == path { return data + "/ltx/" + key }
        }
        return data + "/ltx/" + escaped
    }

    /// Rebuilds the database from its LTX chain with `replfsd verify
    /// --rebuild` and returns the rebuilt file's path.
    func rebuild(_ path: String) throws -> String {
        let output = root + "/rebuilt-\(UUID().uuidString.prefix(6)).db"
        let result = try Command.run(TestEnvironment.replfsd, ["verify", "--rebuild", output, ltxDirectory(path)])
        guard result.status == 0 else { throw Failure("rebuild of \(path) failed: \(result)") }
        return output
    }

    /// Runs the testkit workload on a database in the mount.
    @discardableResult
    func workload(_ db: String, _ arguments: [String]) throws -> [String: Int] {
        let result = try Command.run(TestEnvironment.testkit, ["workload", "--db", mount + "/" + db] + arguments)
        guard result.status == 0 else { throw Failure("workload on \(db) failed: \(result)\nreplfsd: \(currentLog)") }
        let json = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Int]
        return json ?? [:]
    }
}

/// Runs `body` with a fresh node that is destroyed afterwards.
func withNode<T>(name: String = "node-a", extraConfig: String = "", start: Bool = true, _ body: (Node) throws -> T) throws -> T {
    let node = try Node(name: name, extraConfig: extraConfig)
    defer { node.destroy() }
    if start { try node.start() }
    return try body(node)
}
