import Foundation
import Prometheus

/// The daemon's metrics, as named handles on one `PrometheusCollectorRegistry`.
///
/// Created from the registry directly, so nothing depends on a process-wide
/// `MetricsSystem` bootstrap (tests and several daemons in one process each
/// have their own). Label values come only from database names, configured
/// node names and a closed set of FUSE operations, so the number of series
/// stays bounded; ``removeReplica(_:)`` drops a departed replica's series.
///
/// Cost on the FUSE path: ``recordFUSEOperation(_:duration:)`` indexes an
/// array built at start, bumps a lock-free counter and records into that
/// operation's own histogram (a short per-operation lock, no global one,
/// no allocation).
public struct ReplFSMetrics: Sendable {
    /// `replfs_role`: 1 while primary, 0 otherwise.
    public let role: Gauge
    /// `replfs_epoch`: the primary term this node knows.
    public let epoch: Gauge
    /// `replfs_ltx_bytes_total`: LTX bytes written by this node.
    public let ltxBytes: Counter
    /// `replfs_snapshots_sent_total`: snapshots streamed to replicas.
    public let snapshotsSent: Counter
    /// `replfs_lease_renew_failures_total`.
    public let leaseRenewFailures: Counter
    /// `replfs_log_stalled`: 1 while LTX files are held back in the spool
    /// (no space or an I/O error on DATA), 0 otherwise.
    public let logStalled: Gauge
    /// `replfs_apply_stalled`: 1 while replicated transactions cannot be
    /// recorded or written into the database files (replica), 0 otherwise.
    public let applyStalled: Gauge

    /// The registry the handles live in (what ``MetricsEndpoint`` serves).
    public let registry: PrometheusCollectorRegistry

    private let fuseOps: [Counter]
    private let fuseOpSeconds: [DurationHistogram]
    private let databases: Locked<[String: Database]>
    private let replicaLags: Locked<[String: [String: Gauge]]>
    private let replicaSynchronous = Locked<[String: Gauge]>([:])
    /// `replfs_tls_certificate_expiry_timestamp_seconds`, registered only
    /// on a node with `replication.tls`.
    private let tlsExpiry = Locked<Gauge?>(nil)
    /// `replfs_sync_degraded` and `replfs_commit_replica_wait_seconds`,
    /// registered only with `replication.sync-replicas`.
    private let synchronous = Locked<(degraded: Gauge, wait: DurationHistogram)?>(nil)

    /// Bucket bounds of `replfs_commit_replica_wait_seconds`: a loopback
    /// round trip is a fraction of a millisecond, one across the internet
    /// tens, a stalled replica up to `sync-timeout`.
    public static let commitWaitBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5), .seconds(10),
    ]

    /// Bucket bounds of `replfs_fuse_op_seconds`: one FUSE round trip costs
    /// 25-40 us here, a commit's fsync milliseconds, a stuck one seconds.
    public static let fuseOpBuckets: [Duration] = [
        .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5),
    ]

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        role = registry.makeGauge(descriptor: Self.name("role", help: "1 while this node is primary, 0 otherwise."))
        epoch = registry.makeGauge(descriptor: Self.name("epoch", help: "The primary term (epoch) this node knows."))
        ltxBytes = registry.makeCounter(descriptor: Self.name("ltx_bytes", unit: "total", help: "LTX bytes written."))
        snapshotsSent = registry.makeCounter(descriptor: Self.name("snapshots_sent", unit: "total", help: "Snapshots streamed to replicas."))
        leaseRenewFailures = registry.makeCounter(
            descriptor: Self.name("lease_renew_failures", unit: "total", help: "Failed lease renewals."))
        logStalled = registry.makeGauge(
            descriptor: Self.name("log_stalled", help: "1 while LTX files are held back in the spool (no space or I/O errors on DATA)."))
        applyStalled = registry.makeGauge(
            descriptor: Self.name("apply_stalled", help: "1 while replicated transactions cannot be recorded or written into the database files."))
        let opsName = Self.name("fuse_ops", unit: "total", help: "FUSE operations served, by operation.")
        let secondsName = Self.name("fuse_op", unit: "seconds", help: "Time to serve a FUSE operation, by operation.")
        fuseOps = FUSEOperation.allCases.map { registry.makeCounter(descriptor: opsName, labels: [("op", $0.label)]) }
        fuseOpSeconds = FUSEOperation.allCases.map {
            registry.makeDurationHistogram(descriptor: secondsName, labels: [("op", $0.label)], buckets: Self.fuseOpBuckets)
        }
        databases = Locked([:])
        replicaLags = Locked([:])
    }

    /// Sets `replfs_role`.
    /// Exports when replication's certificate expires (Unix seconds), so an
    /// alert can fire well before peers start refusing it.
    public func setTLSCertificateExpiry(_ notAfter: Date) {
        let gauge = tlsExpiry.withLock { gauge in
            if gauge == nil {
                gauge = registry.makeGauge(
                    descriptor: Self.name(
                        "tls_certificate_expiry_timestamp", unit: "seconds",
                        help: "When the certificate replication presents (replication.tls.cert) expires, in Unix seconds."))
            }
            return gauge!
        }
        gauge.set(notAfter.timeIntervalSince1970)
    }

    private var synchronousHandles: (degraded: Gauge, wait: DurationHistogram) {
        synchronous.withLock { handles in
            if let handles { return handles }
            let made = (
                degraded: registry.makeGauge(
                    descriptor: Self.name("sync_degraded", help: "1 while commits go on without waiting for replicas (sync-degrade after sync-timeout).")),
                wait: registry.makeDurationHistogram(
                    descriptor: Self.name("commit_replica_wait", unit: "seconds", help: "How long commits waited for replicas to confirm them."),
                    buckets: Self.commitWaitBuckets)
            )
            handles = made
            return made
        }
    }

    /// Records how long a commit waited for replicas.
    public func recordCommitWait(_ duration: Duration) {
        synchronousHandles.wait.record(duration)
    }

    public func setSynchronousDegraded(_ degraded: Bool) {
        synchronousHandles.degraded.set(Double(degraded ? 1 : 0))
    }

    public func setRole(primary: Bool) {
        role.set(primary ? 1.0 : 0.0)
    }

    /// Sets `replfs_epoch`.
    public func setEpoch(_ value: UInt64) {
        epoch.set(Double(value))
    }

    /// Counts one snapshot streamed to a replica.
    public func recordSnapshotSent() {
        snapshotsSent.increment()
    }

    /// Counts one failed lease renewal.
    /// A role hook ran (`replfs_hook_runs_total`), and failed
    /// (`replfs_hook_failures_total`), by hook.
    public func recordHook(_ hook: String, succeeded: Bool) {
        registry.makeCounter(descriptor: Self.name("hook_runs", unit: "total", help: "Role hooks run, by hook."), labels: [("hook", hook)]).increment()
        if !succeeded {
            registry.makeCounter(
                descriptor: Self.name("hook_failures", unit: "total", help: "Role hooks that failed or timed out, by hook."), labels: [("hook", hook)]
            ).increment()
        }
    }

    /// The archive (`backup`): per database, how many transactions and
    /// seconds it is behind (`replfs_backup_lag_transactions`,
    /// `replfs_backup_lag_seconds`), whether writing it fails now
    /// (`replfs_backup_failing`), and its failures so far
    /// (`replfs_backup_errors`).
    public func setBackup(_ status: ArchiveStatus) {
        for database in status.databases {
            registry.makeGauge(
                descriptor: Self.name("backup_lag_transactions", help: "Committed transactions not yet in the backup archive."),
                labels: [("database", database.name)]
            ).set(Double(database.lagTransactions))
            registry.makeGauge(
                descriptor: Self.name("backup_lag_seconds", help: "How long the backup archive has been behind this database's newest commit."),
                labels: [("database", database.name)]
            ).set(database.lagSeconds)
        }
        registry.makeGauge(descriptor: Self.name("backup_failing", help: "1 while writing the backup archive fails.")).set(Double(status.error == nil ? 0 : 1))
        registry.makeGauge(descriptor: Self.name("backup_errors", help: "Failures to write the backup archive since start.")).set(Double(status.errors))
    }

    public func recordLeaseRenewFailure() {
        leaseRenewFailures.increment()
    }

    /// Counts LTX bytes written outside ``recordCommit(database:ltxBytes:)`` (snapshots, compaction).
    public func recordLTXBytes(_ bytes: Int) {
        if bytes > 0 { ltxBytes.increment(by: Int64(bytes)) }
    }

    /// Counts one FUSE operation and its duration.
    @inline(__always)
    public func recordFUSEOperation(_ operation: FUSEOperation, duration: Duration) {
        fuseOps[operation.rawValue].increment()
        fuseOpSeconds[operation.rawValue].record(duration)
    }

    /// The handles of `name`'s series, created on first use. Keep the result
    /// to avoid the lookup on every commit.
    public func database(_ name: String) -> Database {
        databases.withLock { known in
            if let handles = known[name] { return handles }
            let handles = Database(
                txid: registry.makeGauge(
                    descriptor: Self.name("database_txid", help: "The last transaction ID of a database on this node."),
                    labels: [("database", name)]),
                commits: registry.makeCounter(
                    descriptor: Self.name("commits", unit: "total", help: "Transactions committed (or applied), by database."),
                    labels: [("database", name)]))
            known[name] = handles
            return handles
        }
    }

    /// Sets `replfs_database_txid{database}`.
    public func setTXID(_ txid: UInt64, database name: String) {
        database(name).txid.set(Double(txid))
    }

    /// Counts one commit in `replfs_commits_total{database}` and its LTX size
    /// in `replfs_ltx_bytes_total`.
    public func recordCommit(database name: String, ltxBytes bytes: Int = 0) {
        database(name).commits.increment()
        if bytes > 0 { ltxBytes.increment(by: Int64(bytes)) }
    }

    /// Sets `replfs_replica_lag_transactions{replica,database}`: how many
    /// transactions `replica` is behind on `database` (on the primary).
    public func setReplicaLag(_ transactions: UInt64, replica: String, database: String) {
        let gauge = replicaLags.withLock { lags in
            if let gauge = lags[replica]?[database] { return gauge }
            let gauge = registry.makeGauge(
                descriptor: Self.name("replica_lag_transactions", help: "Transactions a replica is behind the primary, by replica and database."),
                labels: [("replica", replica), ("database", database)])
            lags[replica, default: [:]][database] = gauge
            return gauge
        }
        gauge.set(Double(transactions))
    }

    /// Sets `replfs_replica_synchronous{replica}`: 1 while the replica's
    /// confirmations count for `sync-replicas` (on the primary).
    public func setReplicaSynchronous(_ synchronous: Bool, replica: String) {
        let gauge = replicaSynchronous.withLock { gauges in
            if let gauge = gauges[replica] { return gauge }
            let gauge = registry.makeGauge(
                descriptor: Self.name("replica_synchronous", help: "1 while a replica's confirmations count for sync-replicas (a published synchronous member)."),
                labels: [("replica", replica)])
            gauges[replica] = gauge
            return gauge
        }
        gauge.set(Double(synchronous ? 1 : 0))
    }

    /// Drops a replica's series (it disconnected or left the cluster), so
    /// a departed replica does not report a stale lag forever.
    public func removeReplica(_ replica: String) {
        let gauges = replicaLags.withLock { $0.removeValue(forKey: replica) } ?? [:]
        for gauge in gauges.values { registry.unregisterGauge(gauge) }
        if let gauge = replicaSynchronous.withLock({ $0.removeValue(forKey: replica) }) { registry.unregisterGauge(gauge) }
    }

    private static func name(_ metric: String, unit: String = "", help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "replfs", metricName: metric, unitName: unit, helpText: help)
    }
}
