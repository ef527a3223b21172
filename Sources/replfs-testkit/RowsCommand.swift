import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

/// `rows`: one-row transactions (WAL, synchronous=NORMAL, BEGIN IMMEDIATE,
/// as Headscale writes) at full speed, for as many transactions or seconds
/// as asked, printing a progress line every `--report-every` transactions so
/// that a script can sample the daemon's memory at each step.
struct RowsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rows", abstract: "Commit one-row transactions at full speed; report progress and rates.")

    @Option var db: String
    @Option(help: "Transactions to commit (0: until --seconds).") var transactions = 0
    @Option(help: "Seconds to run when --transactions is 0.") var seconds = 10.0
    @Option(help: "Print `progress COUNT RATE` every N transactions (0: never).") var reportEvery = 0
    @Option(help: "The rate of the first N transactions is reported as the burst rate.") var burst = 5_000

    func run() throws {
        let connection = try SQLiteConnection(path: db)
        _ = try connection.strings("PRAGMA journal_mode=wal")
        try connection.execute("PRAGMA synchronous=normal")
        try connection.execute("CREATE TABLE IF NOT EXISTS nodes(id INTEGER PRIMARY KEY, machine_key TEXT, hostname TEXT, last_seen INTEGER)")
        let start = now()
        var stepStart = start
        var burstRate: Double?
        var count = 0
        while transactions > 0 ? count < transactions : now() - start < seconds {
            try connection.execute("BEGIN IMMEDIATE")
            try connection.run(
                "INSERT INTO nodes(machine_key, hostname, last_seen) VALUES(?, ?, ?)",
                [.text("mkey:\(String(repeating: "ab12", count: 16))\(count)"), .text("host-\(count).example.internal"), .integer(Int64(count))])
            try connection.execute("COMMIT")
            count += 1
            if count == burst { burstRate = Double(count) / (now() - start) }
            if reportEvery > 0 && count % reportEvery == 0 {
                let time = now()
                emit("progress \(count) \(Int(Double(reportEvery) / (time - stepStart)))")
                stepStart = time
            }
        }
        let overall = Double(count) / (now() - start)
        emit("done \(count) \(Int(overall)) \(Int(burstRate ?? overall))")
    }
}

/// Writes one line to stdout at once (a reading script acts on each).
private func emit(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
}
