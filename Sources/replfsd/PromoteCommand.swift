import ArgumentParser
import ReplFS

/// `replfsd promote`: make this node the primary.
struct PromoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract: "Make this node the primary (a handoff: the old primary stops writing first, nothing is lost).",
        discussion: "Exits 1 if replfsd refuses (its reason is printed) or cannot be reached.")

    @OptionGroup var admin: AdminOptions

    @Flag(name: .long, help: "Take the lease even if the current primary does not answer.")
    var force = false

    func run() throws {
        try admin.finish("promote", try admin.client().promote(force: force))
    }
}
