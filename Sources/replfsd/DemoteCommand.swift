import ArgumentParser
import ReplFS

/// `replfsd demote`: hand the primary role away.
struct DemoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demote",
        abstract: "Hand the primary role to the most caught-up replica.",
        discussion: "Exits 1 if replfsd refuses (its reason is printed) or cannot be reached.")

    @OptionGroup var admin: AdminOptions

    func run() throws {
        try admin.finish("demote", try admin.client().demote())
    }
}
