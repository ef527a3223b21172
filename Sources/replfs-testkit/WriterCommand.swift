import ArgumentParser
import CSQLite

#if canImport(Glibc)
import Glibc
#endif

/// `writer`: a client that keeps writing through whichever mount accepts
/// writes, the way an application behind a failover would: on any error it
/// drops its connection and tries the next mount.
struct WriterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "writer",
        abstract: "Write one row per transaction through whichever of the given mounts accepts writes.",
        discussion: """
            Each transaction inserts (seq, node) into `acks` of --database in every
            mount tried in turn (`--mounts a,b,c`). After COMMIT returns, seq and the
            mount's index and the wall-clock time are appended to --ack-file: every line there is a transaction
            SQLite acknowledged, which must survive any failover. Runs until
            --seconds have passed or --stop-file exists. Prints a JSON summary:
            commits, failures, and the longest time without a successful commit
            (write unavailability) with when it started.
            """)

    @Option(help: "Comma-separated mount directories.") var mounts: String
    @Option var database = "app.db"
    @Option var seconds: Double = 10
    @Option(help: "Stop when this file exists.") var stopFile: String?
    @Option var ackFile: String
    @Option(help: "Pause between transactions, in milliseconds.") var pauseMs: Double = 1
    @Option(help: "synchronous: normal or full") var synchronous = "normal"
    @Option(help: "journal_mode: wal, or a rollback journal (delete, truncate, persist)") var journalMode = "wal"

    /// Something is mounted at `path` (its device differs from its parent's).
    static func isMounted(_ path: String) -> Bool {
        var own = stat()
        var parent = stat()
        return stat(path, &own) == 0 && stat(path + "/..", &parent) == 0 && own.st_dev != parent.st_dev
    }

    func run() throws {
        let mountPaths = mounts.split(separator: ",").map(String.init)
        let paths = mountPaths.map { $0 + "/" + database }
        let log = try LineLog(path: ackFile)
        let started = now()
        var current = 0
        var connection: SQLiteConnection?
        var seq: Int64 = 0
        var commits = 0
        var failures = 0
        var lastSuccess = started
        var longestGap = 0.0
        var longestGapAt = 0.0
        var lastError = ""
        while now() - started < seconds {
            if let stopFile, access(stopFile, F_OK) == 0 { break }
            do {
                if connection == nil {
                    // Only a mount replfsd serves: once a node unmounts, its
                    // bare mount point would take the writes.
                    guard Self.isMounted(mountPaths[current]) else {
                        throw SQLiteConnection.Failure(code: SQLITE_CANTOPEN, message: "\(mountPaths[current]) is not mounted")
                    }
                    let opened = try SQLiteConnection(path: paths[current], busyTimeout: 2000)
                    try opened.execute("PRAGMA journal_mode=\(journalMode); PRAGMA synchronous=\(synchronous);")
                    try opened.execute("CREATE TABLE IF NOT EXISTS acks(seq INTEGER PRIMARY KEY, node INTEGER NOT NULL, at REAL NOT NULL)")
                    connection = opened
                }
                let next = seq + 1
                try connection!.execute("BEGIN IMMEDIATE")
                do {
                    _ = try connection!.run("INSERT INTO acks(seq, node, at) VALUES(?, ?, ?)", [.integer(next), .integer(Int64(current)), .text("\(now())")])
                    try connection!.execute("COMMIT")
                } catch let failure as SQLiteConnection.Failure where failure.code == SQLITE_CONSTRAINT {
                    // An earlier attempt committed after all (its COMMIT reported an error).
                    try? connection!.execute("ROLLBACK")
                    seq = next
                    continue
                }
                seq = next
                var wall = timespec()
                clock_gettime(CLOCK_REALTIME, &wall)
                log.append("\(seq) \(current) \(wall.tv_sec).\(String(wall.tv_nsec + 1_000_000_000).dropFirst())")
                commits += 1
                let time = now()
                if time - lastSuccess > longestGap {
                    longestGap = time - lastSuccess
                    longestGapAt = lastSuccess - started
                }
                lastSuccess = time
            } catch {
                failures += 1
                lastError = "\(error)"
                if let connection { try? connection.execute("ROLLBACK") }
                connection = nil
                current = (current + 1) % paths.count
                usleep(5_000)
                continue
            }
            if pauseMs > 0 { usleep(useconds_t(pauseMs * 1000)) }
        }
        let gap = commits == 0 ? now() - started : longestGap
        let escaped = String(lastError.map { $0 == "\"" || $0 == "\\" ? "'" : $0 })
        print(
            "{\"commits\": \(commits), \"failures\": \(failures), \"last_seq\": \(seq), \"max_gap_ms\": \(Int(gap * 1000)), \"max_gap_at_ms\": \(Int(longestGapAt * 1000)), \"last_error\": \"\(escaped)\"}"
        )
    }
}
