import ArgumentParser

/// `replfsd`: the ReplFS daemon and its operator commands.
@main
struct ReplFSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replfsd",
        abstract: "Replicate a directory of SQLite databases (and plain files) over FUSE.",
        subcommands: [
            MountCommand.self, StatusCommand.self, PromoteCommand.self, DemoteCommand.self, ExportCommand.self, ImportCommand.self,
            VerifyCommand.self, LogCommand.self, RestoreCommand.self, BackupsCommand.self, TLSCommand.self, AppWatchdogCommand.self, VIPWatchdogCommand.self,
        ]
    )

    /// ArgumentParser's own entry point, except that usage errors exit 2
    /// (ArgumentParser uses 64): replfsd's contract is 2 for any usage or
    /// configuration error, 1 for a refusal or an unreachable daemon.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                printError(fullMessage(for: error))
                exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }
}
