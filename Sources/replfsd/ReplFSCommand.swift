import ArgumentParser

/// `replfsd`: the ReplFS daemon and its operator commands.
@main
struct ReplFSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replfsd",
        abstract: "Replicate a directory of SQLite databases (and plain files) over FUSE.",
        subcommands: [MountCommand.self, VerifyCommand.self]
    )
}
