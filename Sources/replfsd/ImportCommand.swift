import ArgumentParser
import Foundation
import ReplFS

/// `replfsd import NAME IN.db`: replace a database on the primary; the
/// replicas receive it through replication.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Replace one database with a SQLite file (primary only; replicated to every replica).",
        discussion: "The daemon reads the file; a relative IN.db is taken from the current directory.")

    @OptionGroup var admin: AdminOptions

    @Argument(help: "The database's name, as listed by status (e.g. db.sqlite).")
    var name: String

    @Argument(help: "The SQLite file to import.")
    var input: String

    func run() throws {
        let path = AdminClient.absolutePath(input)
        guard case .success = Syscall.stat(path), !Syscall.isDirectory(path) else {
            printError("replfsd import: \(path): no such file")
            throw ExitCode(2)
        }
        try admin.finish("import", try admin.client().importDatabase(name, from: path))
    }
}
