import ArgumentParser
import ReplFS

/// `replfsd log ...`: the LTX log of a database.
struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Work with the LTX log of a database.",
        subcommands: [LogExportCommand.self])
}

/// `replfsd log export NAME DIR`: the retained chain as single LTX files.
struct LogExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the retained LTX chain of one database into a directory, one LTX file each.",
        discussion: """
            The running daemon writes the files (upstream's names, <min>-<max>.ltx), \
            each readable by upstream ltx (ltx verify, ltx apply); a relative DIR is \
            taken from the current directory.
            """)

    @OptionGroup var admin: AdminOptions

    @Argument(help: "The database's name, as listed by status (e.g. db.sqlite).")
    var name: String

    @Argument(help: "The directory to write into (created if missing).")
    var directory: String

    func run() throws {
        let path = AdminClient.absolutePath(directory)
        try admin.finish("log export", try admin.client().exportLog(database: name, to: path))
    }
}
