import ArgumentParser
import ReplFS

/// `replfsd export NAME OUT.db`: a consistent copy of one database.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a consistent copy of one database to a file.",
        discussion: "The daemon writes the file; a relative OUT.db is taken from the current directory.")

    @OptionGroup var admin: AdminOptions

    @Argument(help: "The database's name, as listed by status (e.g. db.sqlite).")
    var name: String

    @Argument(help: "The file to write.")
    var output: String

    func run() throws {
        let path = AdminClient.absolutePath(output)
        try admin.finish("export", try admin.client().export(database: name, to: path))
    }
}
