import Synchronization

@testable import ReplFS

/// An ``AdminHandler`` that records every call and answers what the test
/// set, so a test can prove what reached the daemon (and what did not).
final class FakeAdminHandler: AdminHandler, Sendable {
    let calls = Mutex<[String]>([])
    let statusValue: AdminStatus
    let promoteResult: Result<AdminActionResult, AdminError>
    let demoteResult: Result<AdminActionResult, AdminError>
    /// When set, promote waits for it (to prove other requests are answered meanwhile).
    let promoteGate: Semaphore?

    init(
        status: AdminStatus = FakeAdminHandler.sampleStatus,
        promote: Result<AdminActionResult, AdminError> = .success(AdminActionResult(message: "promoted node-a", epoch: Epoch(8), primary: "node-a", tookMs: 12)),
        demote: Result<AdminActionResult, AdminError> = .success(AdminActionResult(message: "handed off to node-b", epoch: Epoch(9), primary: "node-b")),
        promoteGate: Semaphore? = nil
    ) {
        statusValue = status
        promoteResult = promote
        demoteResult = demote
        self.promoteGate = promoteGate
    }

    var recorded: [String] { calls.withLock { $0 } }

    func status() -> AdminStatus {
        calls.withLock { $0.append("status") }
        return statusValue
    }

    func promote(force: Bool) -> Result<AdminActionResult, AdminError> {
        calls.withLock { $0.append("promote(force: \(force))") }
        promoteGate?.wait()
        return promoteResult
    }

    func demote() -> Result<AdminActionResult, AdminError> {
        calls.withLock { $0.append("demote") }
        return demoteResult
    }

    func export(database: String, to path: String) -> Result<AdminActionResult, AdminError> {
        calls.withLock { $0.append("export(\(database), \(path))") }
        guard database == "db.sqlite" else { return .failure(AdminError(.notFound, "no database \(database)")) }
        return .success(AdminActionResult(message: "exported \(database) at txid 1042 to \(path)", tookMs: 3))
    }

    func exportLog(database: String, to directory: String) -> Result<AdminActionResult, AdminError> {
        calls.withLock { $0.append("exportLog(\(database), \(directory))") }
        return .success(AdminActionResult(message: "exported 3 LTX files of \(database) to \(directory)"))
    }

    func importDatabase(_ database: String, from path: String) -> Result<AdminActionResult, AdminError> {
        calls.withLock { $0.append("import(\(database), \(path))") }
        return .failure(AdminError(.notPrimary, "node-b is a replica; import on the primary node-a"))
    }

    static let sampleStatus = AdminStatus(
        node: "node-a", cluster: "headscale", role: "primary", writable: true, epoch: Epoch(7),
        primary: AdminStatus.Peer(name: "node-a", address: "10.0.0.1:20202"),
        lease: AdminStatus.Lease(type: "etcd", candidate: true, state: "held", key: "/replfs/headscale/primary", expiresInMs: 1500),
        databases: [AdminStatus.Database(name: "db.sqlite", txid: 1042, checksum: "8a3f00112233aabb", pageCount: 12, pageSize: 4096)],
        replicas: [
            AdminStatus.Replica(
                node: "node-b", address: "10.0.0.2:20202", connected: true,
                databases: [AdminStatus.Replica.Position(name: "db.sqlite", txid: 1039, lagTransactions: 3)], lastAckMsAgo: 120)
        ],
        upstream: nil,
        process: AdminStatus.Process(command: ["headscale", "serve"], state: "running", pid: 4242, restarts: 1, lastExit: "exit 1"),
        asides: ["db.sqlite.aside-epoch6"],
        lastError: "lease renewal took 900 ms")
}
