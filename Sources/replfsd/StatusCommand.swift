import ArgumentParser
import Foundation
import ReplFS

/// `replfsd status`: what the running daemon says about this node.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show this node's role, epoch, lease, database positions, replicas and application.",
        discussion: "Exits 1 when replfsd cannot be reached, 2 on a usage or configuration error.")

    @OptionGroup var admin: AdminOptions

    @Flag(name: .long, help: "Print the full status as JSON (for scripts).")
    var json = false

    func run() throws {
        let client = try admin.client()
        switch client.status() {
        case .success(let status):
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(status), as: UTF8.self))
            } else {
                print(status.summary)
            }
        case .failure(let error):
            printError("replfsd status: \(error)")
            throw ExitCode(1)
        }
    }
}
