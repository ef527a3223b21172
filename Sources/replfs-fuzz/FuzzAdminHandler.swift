@testable import ReplFS

/// Answers admin requests without a daemon behind them, so the fuzzed
/// router runs every route to the end.
struct FuzzAdminHandler: AdminHandler {
    func status() -> AdminStatus {
        AdminStatus(
            node: "node-a", cluster: "fuzz", role: "primary", writable: true, epoch: Epoch(1),
            lease: AdminStatus.Lease(type: "static", candidate: true, state: "primary"),
            databases: [AdminStatus.Database(name: "db.sqlite", txid: 1, checksum: "8000000000000000", pageCount: 1, pageSize: 4096)])
    }

    func promote(force: Bool) -> Result<AdminActionResult, AdminError> {
        .failure(AdminError(.conflict, "already the primary"))
    }

    func demote() -> Result<AdminActionResult, AdminError> {
        .success(AdminActionResult(message: "handed off", epoch: Epoch(2), primary: "node-b"))
    }

    func export(database: String, to path: String) -> Result<AdminActionResult, AdminError> {
        .success(AdminActionResult(message: "exported \(database) to \(path)"))
    }

    func exportLog(database: String, to directory: String) -> Result<AdminActionResult, AdminError> {
        .success(AdminActionResult(message: "exported the log of \(database) to \(directory)"))
    }

    func importDatabase(_ database: String, from path: String) -> Result<AdminActionResult, AdminError> {
        .failure(AdminError(.notFound, "no file \(path)"))
    }
}
