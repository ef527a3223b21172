import ArgumentParser
import Foundation
import ReplFS

/// How an operator command finds the daemon: `--config FILE` (its
/// `admin.socket`) or `--socket PATH`, defaulting to the configured default.
struct AdminOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration of the daemon; its admin.socket is used.")
    var config: String?

    @Option(name: .long, help: "Admin socket of replfsd (default: \(AdminClient.defaultSocket)).")
    var socket: String?

    func validate() throws {
        if config != nil && socket != nil { throw ValidationError("use --config or --socket, not both") }
    }

    /// The client for the chosen socket. A configuration that cannot be read exits 2.
    func client() throws -> AdminClient {
        if let socket { return AdminClient(socket: socket) }
        guard let config else { return AdminClient() }
        do {
            return AdminClient(socket: try ConfigLoader.load(path: config).admin.socket)
        } catch {
            printError("replfsd: \(error)")
            throw ExitCode(2)
        }
    }

    /// Prints an action's outcome: its message on success (exit 0); the
    /// daemon's refusal or why it could not be asked on failure (exit 1).
    func finish(_ command: String, _ result: Result<AdminActionResult, AdminClientError>) throws {
        switch result {
        case .success(let outcome):
            var details: [String] = []
            if let primary = outcome.primary { details.append("primary \(primary)") }
            if let epoch = outcome.epoch { details.append("epoch \(epoch)") }
            if let took = outcome.tookMs { details.append("took \(took) ms") }
            print(details.isEmpty ? outcome.message : "\(outcome.message) (\(details.joined(separator: ", ")))")
        case .failure(let error):
            printError("replfsd \(command): \(error)")
            throw ExitCode(1)
        }
    }
}
