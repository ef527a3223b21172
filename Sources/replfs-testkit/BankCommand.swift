import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

/// `bank`: transfers between accounts, so the total balance never changes.
///
/// Each transaction moves a random amount between two random accounts and
/// increments a counter. A reader that ever sees a total other than the
/// constant, or the counter going backwards, saw a torn or out-of-order
/// state.
struct BankCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bank",
        abstract: "Write (transfers) or read (audit loop) the bank workload.",
        subcommands: [Transfers.self, Audit.self])

    static let accounts = 100
    static let initialBalance: Int64 = 1000

    struct Transfers: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "transfers", abstract: "Run transfers on the primary.")

        @Option var db: String
        @Option var journalMode = "wal"
        @Option var transactions = 1000
        @Option var seed: UInt64 = 1
        @Option(help: "Append each committed counter value and its commit time (ns) to this file.") var commitLog: String?

        func run() throws {
            var random = SeededRandom(seed: seed)
            do {
                let connection = try SQLiteConnection(path: db)
                _ = try connection.strings("PRAGMA journal_mode=\(journalMode)")
                try connection.execute("""
                    CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
                    CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
                    """)
                if try connection.integer("SELECT count(*) FROM accounts") == 0 {
                    try connection.execute("BEGIN")
                    for id in 1...BankCommand.accounts {
                        try connection.run("INSERT INTO accounts(id, balance) VALUES(?, ?)", [.integer(Int64(id)), .integer(BankCommand.initialBalance)])
                    }
                    try connection.run("INSERT INTO counter(id, value) VALUES(1, 0)")
                    try connection.execute("COMMIT")
                }
                let log = try commitLog.map { try LineLog(path: $0) }
                for _ in 0..<transactions {
                    let from = Int64.random(in: 1...Int64(BankCommand.accounts), using: &random)
                    let to = Int64.random(in: 1...Int64(BankCommand.accounts), using: &random)
                    let amount = Int64.random(in: 1...50, using: &random)
                    try connection.execute("BEGIN IMMEDIATE")
                    try connection.run("UPDATE accounts SET balance = balance - ? WHERE id = ?", [.integer(amount), .integer(from)])
                    try connection.run("UPDATE accounts SET balance = balance + ? WHERE id = ?", [.integer(amount), .integer(to)])
                    try connection.run("UPDATE counter SET value = value + 1 WHERE id = 1")
                    try connection.execute("COMMIT")
                    if let log {
                        let value = try connection.integer("SELECT value FROM counter WHERE id = 1")
                        log.append("\(value) \(Int64(now() * 1e9))")
                    }
                }
                print("{\"transfers\": \(transactions)}")
            } catch {
                fail("\(db): \(error)")
            }
        }
    }

    struct Audit: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "audit", abstract: "Read the total and counter in a loop (replica).")

        @Option var db: String
        @Option(help: "Stop when this file exists.") var until: String
        @Option(help: "Give up after this many seconds.") var timeout = 600.0

        func run() throws {
            let expected = Int64(BankCommand.accounts) * BankCommand.initialBalance
            var reads = 0
            var last: Int64 = -1
            var distinct = Set<Int64>()
            let start = now()
            while access(until, F_OK) != 0 && now() - start < timeout {
                do {
                    // A fresh connection now and then, the rest on one: both must see consistent states.
                    let connection = try SQLiteConnection(path: db, busyTimeout: 10_000)
                    for _ in 0..<50 {
                        try connection.execute("BEGIN")
                        let total = try connection.integer("SELECT coalesce(sum(balance), 0) FROM accounts")
                        let count = try connection.integer("SELECT coalesce(count(*), 0) FROM accounts")
                        let counter = try connection.integers("SELECT value FROM counter WHERE id = 1").first ?? -1
                        try connection.execute("COMMIT")
                        reads += 1
                        if count == 0 { continue }  // not replicated yet
                        guard total == expected else { fail("torn read: total \(total), expected \(expected) (counter \(counter))") }
                        guard counter >= last else { fail("went back in time: counter \(counter) after \(last)") }
                        last = counter
                        distinct.insert(counter)
                    }
                } catch let error as SQLiteConnection.Failure where error.message.contains("no such table") || error.code == 14 {
                    // Not replicated yet (14: SQLITE_CANTOPEN, the file does not exist on this replica).
                    usleep(10_000)
                } catch {
                    fail("\(db): \(error)")
                }
            }
            print("{\"reads\": \(reads), \"distinctStates\": \(distinct.count), \"lastCounter\": \(last)}")
        }
    }
}
