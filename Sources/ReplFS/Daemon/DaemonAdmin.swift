#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// The daemon's answers on the admin socket: status from the role
/// controller, lease, store and supervisor; promote and demote through the
/// controller; export and import of one database.
final class DaemonAdmin: AdminHandler {
    private let config: Config
    private let controller: RoleController
    private let lease: any LeaseKeeper
    private let supervisor: Supervisor?
    private let tls: TLSCredentials?
    private let synchronous: SynchronousReplication?
    private let archiver: Archiver?
    /// One role change at a time; a second one is refused, not queued.
    private let changing = Atomic(false)

    init(config: Config, controller: RoleController, lease: any LeaseKeeper, supervisor: Supervisor?, tls: TLSCredentials?, synchronous: SynchronousReplication?,
        archiver: Archiver?
    ) {
        self.config = config
        self.archiver = archiver
        self.tls = tls
        self.synchronous = synchronous
        self.controller = controller
        self.lease = lease
        self.supervisor = supervisor
    }

    private var store: Store { controller.store }

    /// The virtual IP as configured, and whether this node holds it now.
    private static func addressStatus(_ vip: Config.VIP) -> AdminStatus.VirtualIPStatus {
        AdminStatus.VirtualIPStatus(
            address: vip.address.description, interface: vip.interface, held: VirtualIP(address: vip.address, interface: vip.interface).isHeld == true)
    }

    func status() -> AdminStatus {
        let snapshot = controller.snapshot
        let leaseStatus = lease.status
        let databases = store.databaseSummaries.map { summary in
            AdminStatus.Database(
                name: summary.path, txid: summary.position.txid.rawValue, checksum: HexFormat.sixteenDigits(summary.position.checksum.rawValue),
                epoch: summary.position.epoch, pageCount: summary.pageCount, pageSize: UInt32(summary.pageSize))
        }
        let now = ContinuousClock.now
        let replicas = snapshot.replicas.sorted { $0.name < $1.name }.map { replica in
            var entry = AdminStatus.Replica(
                node: replica.name, address: replica.address, connected: true,
                databases: databases.map { database in
                    let acknowledged = replica.acknowledged[database.name]?.rawValue ?? 0
                    return .init(name: database.name, txid: acknowledged, lagTransactions: database.txid > acknowledged ? database.txid - acknowledged : 0)
                },
                lastAckMsAgo: replica.lastAcknowledgement.map { Int(($0.duration(to: now)).milliseconds) })
            entry.nodeID = HexFormat.sixteenDigits(replica.nodeID)
            return entry
        }
        let upstream = snapshot.upstream.map { client in
            AdminStatus.Upstream(
                primary: snapshot.primary.map { "\($0)" } ?? client.primary ?? "?", connected: client.connected, lastError: client.lastError,
                lagMs: Int(client.backlogAge.milliseconds))
        }
        let process = supervisor.map { supervisor in
            let status = supervisor.status
            var state = "stopped"
            var pid: Int32?
            switch status.state {
            case .stopped: state = "stopped"
            case .starting: state = "starting"
            case .running(let value, _):
                state = "running"
                pid = value
            case .restarting: state = "restarting"
            }
            return AdminStatus.Process(
                command: status.command, state: state, pid: pid, restarts: status.restarts,
                lastExit: status.lastExit.map { "\($0)" } ?? status.lastError.map { "\($0)" }, ready: status.ready, notReady: status.notReady)
        }
        var status = AdminStatus(
            node: config.node, cluster: config.cluster, role: snapshot.role.rawValue, writable: snapshot.writable, epoch: snapshot.epoch,
            primary: snapshot.primary.map { AdminStatus.Peer(name: $0.name, address: $0.address) },
            lease: AdminStatus.Lease(
                type: leaseStatus.type, candidate: leaseStatus.candidate, state: leaseStatus.state, key: leaseStatus.key,
                expiresInMs: leaseStatus.expiresIn.map { Int($0.milliseconds) }, lastError: leaseStatus.lastError),
            databases: databases, replicas: replicas, upstream: upstream, process: process, asides: store.movedAside,
            lastError: snapshot.lastError ?? leaseStatus.lastError)
        let time = ISO8601DateFormatter()
        status.lease.lastErrorAt = leaseStatus.lastErrorAt.map { time.string(from: $0) }
        status.lease.lastErrorHolds = leaseStatus.lastError == nil ? nil : leaseStatus.lastErrorHolds
        status.lease.lastContactMsAgo = leaseStatus.lastContactAgo.map { Int($0.milliseconds) }
        // The node's own error, or else the lease's while it still holds.
        if let own = snapshot.lastError {
            status.lastError = own
            status.lastErrorAt = snapshot.lastErrorAt.map { time.string(from: $0) }
        } else if leaseStatus.lastErrorHolds {
            status.lastErrorAt = status.lease.lastErrorAt
        } else {
            status.lastError = nil
        }
        status.nodeID = HexFormat.sixteenDigits(controller.identity.nodeID)
        status.logStall = store.logStall
        status.applyStall = store.applyStall
        status.synchronous = synchronous.map { synchronous in
            AdminStatus.Synchronous(
                replicas: synchronous.settings.replicas, degraded: synchronous.isDegraded,
                members: controller.role == .primary ? synchronous.members : nil)
        }
        status.tls = tls.map { tls in
            let identity = tls.identity
            return AdminStatus.TLS(subject: identity.subject, notAfter: time.string(from: identity.notAfter), daysToExpiry: identity.daysToExpiry())
        }
        status.vip = config.vip.map(Self.addressStatus)
        if controller.role == .primary { status.backup = archiver?.status }
        return status
    }

    private func exclusively(_ body: () -> Result<AdminActionResult, AdminError>) -> Result<AdminActionResult, AdminError> {
        guard changing.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return .failure(AdminError(.conflict, "another promote, demote or import is in progress"))
        }
        defer { changing.store(false, ordering: .releasing) }
        return body()
    }

    private static func adminError(_ error: RoleError) -> AdminError {
        switch error.code {
        case .notPrimary: return AdminError(.notPrimary, error.message)
        case .notCandidate: return AdminError(.notCandidate, error.message)
        case .noCandidate: return AdminError(.noCandidate, error.message)
        case .unreachable, .conflict, .notReady: return AdminError(.conflict, error.message)
        case .failed: return AdminError(.failed, error.message)
        }
    }

    private static func result(_ change: RoleChange, verb: String) -> AdminActionResult {
        let took = Int(change.duration.milliseconds)
        return AdminActionResult(
            message: "\(verb): \(change.primary) is the primary at epoch \(change.epoch) (took \(took) ms)", epoch: change.epoch,
            primary: change.primary, tookMs: took)
    }

    func promote(force: Bool) -> Result<AdminActionResult, AdminError> {
        exclusively {
            controller.promote(force: force).map { Self.result($0, verb: "promoted") }.mapError(Self.adminError)
        }
    }

    func demote() -> Result<AdminActionResult, AdminError> {
        exclusively {
            let before = controller.epoch
            return controller.demote().map { change in
                var change = change
                if !change.epoch.isKnown {
                    // etcd: the new primary's epoch is its key's revision, known
                    // here once this node follows it.
                    let deadline = ContinuousClock.now + .seconds(3)
                    while controller.epoch <= before, ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
                    change.epoch = controller.epoch
                }
                return Self.result(change, verb: "demoted \(config.node)")
            }.mapError(Self.adminError)
        }
    }

    func export(database: String, to path: String) -> Result<AdminActionResult, AdminError> {
        guard store.position(of: database) != nil else { return .failure(AdminError(.notFound, "no database \(database) on \(config.node)")) }
        let snapshot: DatabaseSnapshot
        switch store.snapshot(database: database) {
        case .success(let value): snapshot = value
        case .failure(let error): return .failure(AdminError(.failed, "cannot copy \(database): \(error)"))
        }
        defer { _ = Syscall.unlink(at: AT_FDCWD, snapshot.path) }
        let temporary = path + ".replfs-export"
        _ = Syscall.removeTree(temporary)
        let written = Syscall.open(at: AT_FDCWD, snapshot.path, flags: O_RDONLY).flatMap { source in
            defer { Syscall.close(source) }
            return Syscall.open(at: AT_FDCWD, temporary, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644).flatMap { out in
                defer { Syscall.close(out) }
                return Syscall.copy(from: source, to: out).flatMap { Syscall.fsync(out) }
            }
        }.flatMap { Syscall.rename(at: AT_FDCWD, temporary, to: path) }
        if case .failure(let error) = written {
            _ = Syscall.removeTree(temporary)
            return .failure(AdminError(.failed, "cannot write \(path): \(error)"))
        }
        return .success(AdminActionResult(
            message: "exported \(database) at txid \(snapshot.position.txid) (checksum \(snapshot.position.checksum)) to \(path)",
            epoch: controller.epoch, primary: controller.primary?.name))
    }

    func exportLog(database: String, to directory: String) -> Result<AdminActionResult, AdminError> {
        guard store.position(of: database) != nil else { return .failure(AdminError(.notFound, "no database \(database) on \(config.node)")) }
        switch store.exportLog(database: database, into: directory) {
        case .success(let exported):
            return .success(AdminActionResult(
                message: "exported \(exported.files) LTX files of \(database) (TXID \(exported.first) to \(exported.last)) to \(directory)",
                epoch: controller.epoch, primary: controller.primary?.name))
        case .failure(let error):
            return .failure(AdminError(.failed, "cannot export the log of \(database): \(error)"))
        }
    }

    func importDatabase(_ database: String, from path: String) -> Result<AdminActionResult, AdminError> {
        exclusively {
            guard controller.role == .primary, store.isWritable else {
                let primary = controller.primary.map { " (the primary is \($0.name))" } ?? ""
                return .failure(AdminError(.notPrimary, "\(config.node) is not the primary\(primary): import runs on the primary"))
            }
            if case .failure(let error) = SQLiteBackup.check(path) { return .failure(AdminError(.badRequest, "\(error)")) }
            // Written through the mount: one transaction, captured and
            // replicated like any other (a full image of the database).
            let destination = config.mount + "/" + database
            if case .failure(let error) = SQLiteBackup.copy(from: path, to: destination) {
                return .failure(AdminError(.failed, "import into \(database) failed, nothing changed: \(error)"))
            }
            let position = store.position(of: database)
            return .success(AdminActionResult(
                message: "imported \(path) into \(database)" + (position.map { " at txid \($0.txid)" } ?? ""), epoch: controller.epoch,
                primary: config.node))
        }
    }
}
