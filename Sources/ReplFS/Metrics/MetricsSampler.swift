import Foundation
import Synchronization

/// Copies the node's state into the metrics once a second: role, epoch,
/// per-database positions and commits, LTX bytes, snapshots, lease renewal
/// failures and replica lag. (FUSE operations are recorded as they happen.)
///
/// Sampling keeps every counter off the commit path: the store and the
/// replication server keep plain atomic totals, and only their increase
/// since the last sample is added here.
public final class MetricsSampler: @unchecked Sendable {
    private let metrics: ReplFSMetrics
    private let controller: RoleController
    private let lease: any LeaseKeeper
    private let tls: TLSCredentials?
    private let synchronous: SynchronousReplication?
    private let archiver: Archiver?
    /// Samples once a second, from ``start()`` to ``stop()``.
    private let passes = Locked<PeriodicTask?>(nil)
    private var lastTXIDs: [String: UInt64] = [:]
    private var lastLTXBytes = 0
    private var lastSnapshots = 0
    private var lastRenewFailures = 0
    private var replicas = Set<String>()

    public init(
        metrics: ReplFSMetrics, controller: RoleController, lease: any LeaseKeeper, tls: TLSCredentials? = nil, synchronous: SynchronousReplication? = nil,
        archiver: Archiver? = nil
    ) {
        self.archiver = archiver
        self.tls = tls
        self.synchronous = synchronous
        self.metrics = metrics
        self.controller = controller
        self.lease = lease
    }

    public func start() {
        let task = PeriodicTask(every: .seconds(1)) { [self] in sample() }
        passes.withLock { $0 = task }
        task.start()
    }

    public func stop() {
        passes.value?.stop()
    }

    /// One sample (also called directly by tests).
    public func sample() {
        let snapshot = controller.snapshot
        metrics.setRole(primary: snapshot.role == .primary)
        metrics.setEpoch(snapshot.epoch.rawValue)
        metrics.logStalled.set(Double(controller.store.logStall == nil ? 0 : 1))
        metrics.applyStalled.set(Double(controller.store.applyStall == nil ? 0 : 1))
        if let tls { metrics.setTLSCertificateExpiry(tls.identity.notAfter) }
        if let synchronous { metrics.setSynchronousDegraded(synchronous.isDegraded) }
        if let archiver {
            // Only the primary archives: a replica's gauges say nothing is pending.
            var status = archiver.status
            if snapshot.role != .primary {
                status.error = nil
                status.databases = status.databases.map { var idle = $0; idle.lagTransactions = 0; idle.lagSeconds = 0; return idle }
            }
            metrics.setBackup(status)
        }
        var primaryTXIDs: [String: UInt64] = [:]
        for database in controller.store.databaseSummaries {
            let txid = database.position.txid.rawValue
            primaryTXIDs[database.path] = txid
            let handles = metrics.database(database.path)
            if let last = lastTXIDs[database.path], txid > last { handles.commits.increment(by: Int64(txid - last)) }
            lastTXIDs[database.path] = txid
            handles.txid.set(Double(txid))
        }
        let ltxBytes = controller.store.counters.ltxBytes.load(ordering: .relaxed)
        metrics.recordLTXBytes(ltxBytes - lastLTXBytes)
        lastLTXBytes = ltxBytes
        let snapshots = controller.server.counters.snapshotsSent.load(ordering: .relaxed)
        for _ in lastSnapshots..<max(lastSnapshots, snapshots) { metrics.recordSnapshotSent() }
        lastSnapshots = snapshots
        let failures = lease.status.renewFailures
        for _ in lastRenewFailures..<max(lastRenewFailures, failures) { metrics.recordLeaseRenewFailure() }
        lastRenewFailures = failures
        var present = Set<String>()
        let members = synchronous.map { $0.members.map(Set.init) }
        for replica in snapshot.replicas {
            present.insert(replica.name)
            if let members {
                metrics.setReplicaSynchronous(replica.candidate && (members?.contains(replica.name) ?? true), replica: replica.name)
            }
            for (database, txid) in primaryTXIDs {
                let acknowledged = replica.acknowledged[database]?.rawValue ?? 0
                metrics.setReplicaLag(txid > acknowledged ? txid - acknowledged : 0, replica: replica.name, database: database)
            }
        }
        for gone in replicas.subtracting(present) { metrics.removeReplica(gone) }
        replicas = present
    }
}
