import ArgumentParser
import ReplFS

/// `replfsd restore --from BACKUP NAME OUT`: a database (or plain file) out
/// of a backup archive, as of the newest backup, a TXID or a time.
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a database (or a plain file) from a backup archive, at a point in time.",
        discussion: """
            Reads the archive directly (no daemon needed). The files are chosen as \
            litestream restore chooses them (the newest snapshot within the target, \
            then the files reaching furthest) and applied to OUT.tmp beside OUT; each \
            file's checksum is checked, and the rebuilt database's checksum is compared \
            with the one the archive recorded for its TXID before OUT.tmp is synced and \
            renamed to OUT. An archive Litestream wrote has no recorded checksums: the \
            restore then says so. --timestamp takes files at or before the time. A plain \
            file (the Noise key) is restored as its newest version at or before the time, \
            with its mode. Exits 1 with the reason when nothing is written, 2 on a usage error.
            """)

    @Option(name: .long, help: "The archive's directory (backup.path).")
    var from: String

    @Option(name: .long, help: "Restore the state at or before this RFC 3339 time (2026-12-07T10:00:00Z, fraction and offset allowed).",
            transform: RestoreCommand.parseTimestamp)
    var timestamp: Int64?

    @Option(name: .long, help: "Restore exactly this TXID (16 hex digits as listed, 0x-prefixed hex, or decimal).",
            transform: RestoreCommand.parseTXID)
    var txid: TXID?

    @Flag(name: .long, help: "Replace OUT if it exists.")
    var force = false

    @Argument(help: "The database's name in the archive (as replfsd backups lists it), or a plain file's path.")
    var name: String

    @Argument(help: "The file to write.")
    var output: String

    func validate() throws {
        if timestamp != nil && txid != nil { throw ValidationError("use --timestamp or --txid, not both") }
    }

    func run() throws {
        let target: RestoreTarget = if let txid { .txid(txid) } else if let timestamp { .timestamp(timestamp) } else { .latest }
        do {
            let result = try ArchiveRestore(archive: BackupArchive(root: from)).restore(name, to: output, target: target, force: force)
            print(result)
        } catch {
            printError("replfsd restore: \(error)")
            throw ExitCode(1)
        }
    }

    static func parseTimestamp(_ text: String) throws -> Int64 {
        guard let milliseconds = RFC3339Time.milliseconds(parsing: text) else {
            throw ValidationError("\"\(text)\" is not an RFC 3339 time (e.g. 2026-12-07T10:00:00Z or 2026-12-07T11:00:00.250+01:00)")
        }
        return milliseconds
    }

    static func parseTXID(_ text: String) throws -> TXID {
        guard let txid = RestoreTarget.txid(parsing: text) else {
            throw ValidationError("\"\(text)\" is not a TXID (16 hex digits, 0x-prefixed hex, or a decimal number above 0)")
        }
        return txid
    }
}
