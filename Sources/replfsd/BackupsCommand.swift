import ArgumentParser
import Foundation
import ReplFS

/// `replfsd backups --from BACKUP`: what an archive holds and what can be
/// restored from it.
struct BackupsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backups",
        abstract: "List the databases and plain files of a backup archive and what can be restored.",
        discussion: """
            Reads the archive directly (no daemon needed): per database the TXIDs and \
            times a restore can reach, the snapshots, the files per level and their size, \
            whether checksums are recorded, and why the newest backup cannot be restored \
            if it cannot; per plain file its versions. Exits 1 if the archive cannot be \
            read, 2 on a usage error.
            """)

    @Option(name: .long, help: "The archive's directory (backup.path).")
    var from: String

    @Flag(name: .long, help: "Print the listing as JSON (for scripts).")
    var json = false

    func run() throws {
        guard Syscall.isDirectory(from) else {
            printError("replfsd backups: \(from): not a directory")
            throw ExitCode(1)
        }
        let listing = BackupListing(archive: BackupArchive(root: from))
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(listing), as: UTF8.self))
        } else {
            print(listing.summary)
        }
    }
}
