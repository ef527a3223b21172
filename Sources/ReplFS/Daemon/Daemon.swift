#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// Wires a configuration into a running node: data directory, store
/// (with recovery), file system and FUSE session, and replication.
///
/// Startup checks come first and change nothing when they fail (exit code
/// 2); `run()` then serves until `stop()`, and unmounts cleanly.
public final class Daemon: Sendable {
    public let config: Config
    public let store: Store
    public let session: FUSESession
    public let feed: ChangeFeed
    public let server: ReplicationServer
    public let controller: RoleController
    public let lease: any LeaseKeeper
    public let retention: LogRetention
    /// The continuous archive (`backup`), written while primary.
    public let archiver: Archiver?
    public let supervisor: Supervisor?
    /// The virtual IP and the role hooks.
    public let announcer: PrimaryAnnouncer
    /// `replfsd vip-watchdog`, the network fence, with `vip`.
    private let addressWatchdog: Supervisor?
    public let admin: AdminServer
    /// Mutual TLS of replication (`replication.tls`), if configured.
    public let tls: TLSCredentials?
    /// Synchronous replication (`replication.sync-replicas` > 0), if configured.
    public let synchronous: SynchronousReplication?
    public let metrics: MetricsEndpoint?
    /// `http.listen`: `/health`, `/primary`, `/replica`, `/metrics`.
    public let health: HealthEndpoint?
    private let sampler: MetricsSampler?
    /// Whether this node has peers (otherwise it is a lone primary and
    /// listens for nobody).
    public let isClustered: Bool
    /// Held for the life of the daemon: one replfsd per data directory.
    private let directoryLock: DataDirectoryLock
    /// This node's ID, from its data directory (random, made at creation).
    public let nodeID: UInt64
    private let logger: Logger

    /// A startup failure: bad configuration or environment (exit code 2).
    public struct StartupError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(config: Config, logger: Logger) async throws(StartupError) {
        self.config = config
        self.logger = logger
        let directory = DataDirectory(root: config.data)
        // What startup has done so far is undone if a later step fails.
        let rollback = StartupRollback()
        // Every check first; nothing is created or changed until all pass.
        let preparation: MountPoint.Preparation
        let token: [UInt8]?
        let tls: TLSCredentials?
        let etcdTLS: TLSIdentity?
        do {
            preparation = try MountPoint.check(config.mount)
            try directory.check(cluster: config.cluster)
            token = try Daemon.readToken(config)
            tls = try config.replication.tls.map { try TLSCredentials(files: $0, key: "replication.tls", logger: logger) }
            etcdTLS = try config.lease.etcdTLS.map { try TLSIdentity.load($0, key: "lease.etcd.tls") }
            try directory.prepare(cluster: config.cluster, node: config.node)
            directoryLock = try directory.lock()
            nodeID = try directory.readIdentity().nodeIDValue
        } catch {
            throw StartupError(description: "\(error)")
        }
        metrics = config.metrics.listen == nil && config.http.listen == nil ? nil : MetricsEndpoint(logger: logger)
        let fileSystem: FileSystem
        do {
            store = try Store(directory: directory, nodeID: nodeID, logger: logger)
            // Read-only until the lease decides.
            store.stopWrites()
            fileSystem = try FileSystem(store: store, metrics: metrics?.metrics)
            // Cleared or created only now, right before mounting: while a dead
            // mount is in place nothing can be written under it by mistake.
            try MountPoint.prepare(config.mount, preparation, logger: logger)
            session = try FUSESession(fileSystem: fileSystem, mountPoint: config.mount)
        } catch {
            throw StartupError(description: "\(error)")
        }
        rollback.add { [session] in session.unmount() }
        store.setMountAccess(MountAccessor(mountPoint: config.mount, session: session, fileSystem: fileSystem, logger: logger))
        retention = LogRetention(store: store, retention: config.retention, logger: logger)

        isClustered = !config.lease.staticPeers.isEmpty || config.lease.type == .etcd
        feed = ChangeFeed()
        archiver = config.backup.map { [store, feed] backup in
            Archiver(
                settings: Archiver.Settings(path: backup.path, retention: backup.retention, snapshotInterval: backup.snapshotInterval), store: store,
                feed: feed, logger: logger)
        }
        let authenticator = Authenticator(token: token)
        self.tls = tls
        Self.warnAboutClearText(config, clustered: isClustered, token: authenticator.isEnabled, logger: logger)
        server = ReplicationServer(
            store: store, feed: feed, authenticator: authenticator, tls: tls, cluster: config.cluster, node: config.node, nodeID: nodeID, logger: logger)
        let identity = ReplicaClient.Identity(
            cluster: config.cluster, node: config.node, nodeID: nodeID, candidate: config.lease.candidate, address: config.advertisedAddress,
            authenticator: authenticator, tls: tls)
        supervisor = Self.makeSupervisor(config, directory: directory, logger: logger)
        announcer = Self.makeAnnouncer(config, store: store, supervisor: supervisor, metrics: metrics?.metrics, logger: logger)
        addressWatchdog = Self.makeAddressWatchdog(config, directory: directory, logger: logger)
        do {
            controller = try RoleController(
                store: store, feed: feed, server: server, identity: identity, stateFile: NodeStateFile(directory: directory),
                application: supervisor, announcer: announcer, logger: logger)
            lease = try Self.makeLease(config, controller: controller, etcdTLS: etcdTLS, logger: logger)
        } catch {
            throw StartupError(description: "\(error)")
        }
        controller.setLease(lease)
        synchronous = Self.makeSynchronous(
            config, store: store, server: server, membership: lease as? any SynchronousMembership, metrics: metrics?.metrics, logger: logger)
        let adminHandler = DaemonAdmin(config: config, controller: controller, lease: lease, supervisor: supervisor, tls: tls, synchronous: synchronous,
            archiver: archiver)
        admin = AdminServer(handler: adminHandler, logger: logger)
        if config.http.listen != nil, let metrics {
            health = HealthEndpoint(maxLag: config.http.maxLag, registry: metrics.registry, logger: logger) { adminHandler.status() }
        } else {
            health = nil
        }
        let (controller, lease) = (self.controller, self.lease)
        let (synchronous, archiver) = (self.synchronous, self.archiver)
        sampler = metrics.map {
            MetricsSampler(metrics: $0.metrics, controller: controller, lease: lease, tls: tls, synchronous: synchronous, archiver: archiver)
        }
        try await startListeners()
        rollback.complete()
    }

    /// The application runs under `replfsd app-watchdog`, which kills its
    /// whole tree when the lease deadline passes even if this process is
    /// frozen; it gets the stop timeout, the supervisor a little more (the
    /// watchdog's own SIGKILL comes first).
    private static func makeSupervisor(_ config: Config, directory: DataDirectory, logger: Logger) -> Supervisor? {
        config.exec.map { exec in
            let watchdog = [
                Daemon.executablePath, "app-watchdog", "--deadline-file", directory.root + "/" + LeaseDeadlineFile.name,
                "--stop-timeout", "\(Double(exec.stopTimeout.milliseconds) / 1000)", "--daemon", "\(getpid())", "--",
            ]
            return Supervisor(
                command: exec.command, launcher: watchdog, stopTimeout: exec.stopTimeout + .seconds(2),
                environment: ["REPLFS_NODE": config.node, "REPLFS_MOUNT": config.mount, "REPLFS_CLUSTER": config.cluster], readiness: exec.ready,
                logger: logger)
        }
    }

    /// With `vip`, `replfsd vip-watchdog` runs beside the daemon for its
    /// whole life: the network fence (``VirtualIPWatchdog``).
    private static func makeAddressWatchdog(_ config: Config, directory: DataDirectory, logger: Logger) -> Supervisor? {
        config.vip.map { vip in
            let arguments = [
                Daemon.executablePath, "vip-watchdog", "--deadline-file", directory.root + "/" + LeaseDeadlineFile.name, "--address",
                vip.address.description, "--interface", vip.interface, "--daemon", "\(getpid())",
            ]
            return Supervisor(command: arguments, stopTimeout: .seconds(2), logger: logger)
        }
    }

    /// The virtual IP and hooks follow the role; clients are pointed here
    /// only while this node accepts writes and its application is ready.
    /// A virtual IP left on the interface by an earlier run (a crash) is
    /// removed now: a node starts as no one's primary.
    private static func makeAnnouncer(_ config: Config, store: Store, supervisor: Supervisor?, metrics: ReplFSMetrics?, logger: Logger) -> PrimaryAnnouncer {
        let vip = config.vip.map { VirtualIP(address: $0.address, interface: $0.interface) }
        if let vip, vip.isHeld != false {
            do {
                try vip.remove()
                logger.warning("removed the virtual IP an earlier run left on the interface", metadata: ["vip": "\(vip.address)", "interface": "\(vip.interface)"])
            } catch {
                logger.critical("\(error): this node still holds the virtual IP while it is not the primary")
            }
        }
        let hooks = config.hooks.map { hooks in
            RoleHooks(onPrimary: hooks.onPrimary, onReplica: hooks.onReplica, timeout: hooks.timeout, node: config.node, logger: logger) { hook, outcome in
                metrics?.recordHook(hook.rawValue, succeeded: outcome.succeeded)
            }
        }
        return PrimaryAnnouncer(vip: vip, hooks: hooks, node: config.node, isReady: { [store] in
            store.isWritable && (supervisor?.status.ready ?? true)
        }, logger: logger)
    }

    /// What crosses the network unauthenticated or in clear, said once at start.
    private static func warnAboutClearText(_ config: Config, clustered: Bool, token: Bool, logger: Logger) {
        if clustered && !token && config.replication.tls == nil {
            logger.warning("neither replication.tls nor replication.token-file is set: replication peers are not authenticated, and the stream is not encrypted")
        } else if clustered && config.replication.tls == nil {
            logger.warning("replication.tls is not set: the replication stream crosses the network unencrypted")
        }
        guard config.lease.type == .etcd, config.lease.etcdTLS != nil else { return }
        for endpoint in config.lease.etcdEndpoints where endpoint.hasPrefix("http://") {
            logger.warning(
                "lease.etcd.tls is set but this endpoint is not https://: the lease crosses in clear and the client certificate is not used",
                metadata: ["endpoint": "\(endpoint)"])
        }
    }

    /// With `replication.sync-replicas`, commits through the mount wait for
    /// that many replicas (``SynchronousReplication``).
    private static func makeSynchronous(
        _ config: Config, store: Store, server: ReplicationServer, membership: (any SynchronousMembership)?, metrics: ReplFSMetrics?, logger: Logger
    ) -> SynchronousReplication? {
        guard config.replication.syncReplicas > 0 else { return nil }
        let synchronous = SynchronousReplication(
            settings: .init(replicas: config.replication.syncReplicas, timeout: config.replication.syncTimeout, degrade: config.replication.syncDegrade),
            replicas: { [server] in server.replicas },
            positions: { [store] in Dictionary(store.positions().map { ($0.database, $0.position.txid) }, uniquingKeysWith: max) },
            membership: membership, isPrimary: { [store] in store.isWritable },
            waited: { [metrics] in metrics?.recordCommitWait($0) }, logger: logger)
        server.onConfirmations { synchronous.acknowledged() }
        store.setCommitBarrier(synchronous)
        return synchronous
    }

    private static func makeLease(_ config: Config, controller: RoleController, etcdTLS: TLSIdentity?, logger: Logger) throws -> any LeaseKeeper {
        switch config.lease.type {
        case .static:
            return StaticLease(
                host: controller, configuredPrimary: config.lease.staticPrimary ?? config.node, peers: config.lease.staticPeers, logger: logger)
        case .etcd:
            return try EtcdLease(host: controller, config: config, tls: etcdTLS, logger: logger)
        }
    }

    /// The admin socket, the metrics endpoint and, in a cluster, the
    /// replication listener; if one cannot listen, those already listening stop.
    private func startListeners() async throws(StartupError) {
        var listening: [@Sendable () async -> Void] = []
        do {
            try await admin.start(socket: config.admin.socket)
            listening.append(admin.stop)
            if let metrics, let listen = config.metrics.listen {
                try await metrics.start(listen: listen)
                listening.append(metrics.stop)
            }
            if let health, let listen = config.http.listen {
                try await health.start(listen: listen)
                listening.append(health.stop)
            }
            if isClustered {
                do {
                    try server.start(listen: config.replication.listen)
                } catch {
                    throw StartupError(description: "replication.listen: cannot listen on \(config.replication.listen): \(error)")
                }
            }
        } catch {
            for stop in listening.reversed() { await stop() }
            throw error as? StartupError ?? StartupError(description: "\(error)")
        }
    }

    private static func readToken(_ config: Config) throws -> [UInt8]? {
        guard let path = config.replication.tokenFile else { return nil }
        // As ssh does with private keys: a secret others can read is no secret.
        if case .success(let info) = Syscall.stat(path), info.st_mode & 0o077 != 0 {
            throw ConfigError(
                key: "replication.token-file",
                "\(path) is accessible by group or others (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 \(path)")
        }
        guard case .success(let data) = Syscall.readFile(path) else {
            throw ConfigError(key: "replication.token-file", "cannot read \(path)")
        }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw ConfigError(key: "replication.token-file", "\(path) is empty") }
        return Array(token.utf8)
    }

    /// This program's path (`/proc/self/exe`), to run `replfsd app-watchdog`.
    static var executablePath: String {
        (try? Syscall.readlink(at: AT_FDCWD, "/proc/self/exe").get()) ?? CommandLine.arguments[0]
    }

    /// Serves until SIGTERM or SIGINT (or the mount goes away), then shuts
    /// down in order.
    ///
    /// Every long-running part is a service of one swift-service-lifecycle
    /// `ServiceGroup`. The group starts them in the order below and, at
    /// graceful shutdown, stops them one by one in the reverse order: the
    /// application, then writes (both the role's), the lease, the
    /// background work, the listeners and the replication stream, the
    /// mount, and last the store (its spool and materializer).
    public func run() async throws {
        logger.info("mounted", metadata: ["mount": "\(config.mount)", "data": "\(config.data)", "node": "\(config.node)"])
        let roleDecided = Semaphore()
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: BlockingService("store", stop: { [store] in store.close() })),
            .init(service: MountService(session: session, roleDecided: roleDecided, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: BlockingService("replication", stop: { [server] in server.stop() })),
            .init(service: admin),
        ]
        if let metrics, config.metrics.listen != nil { services.append(.init(service: metrics)) }
        if let health { services.append(.init(service: health)) }
        services.append(.init(service: BlockingService("retention", start: retention.start, stop: retention.stop)))
        if let archiver { services.append(.init(service: BlockingService("backup", start: archiver.start, stop: archiver.stop))) }
        if let tls { services.append(.init(service: BlockingService("tls", start: { tls.startWatching() }, stop: tls.stopWatching))) }
        if let sampler { services.append(.init(service: BlockingService("sampler", start: sampler.start, stop: sampler.stop))) }
        if let synchronous {
            services.append(.init(service: BlockingService("synchronous", start: synchronous.startMaintenance, stop: synchronous.stopMaintenance)))
        }
        let (announcer, addressWatchdog) = (self.announcer, self.addressWatchdog)
        services += [
            .init(
                service: BlockingService(
                    "endpoints",
                    start: {
                        addressWatchdog?.start()
                        announcer.start()
                    },
                    stop: {
                        announcer.close()
                        addressWatchdog?.stop()
                    })),
            .init(
                service: BlockingService(
                    "lease",
                    start: { [lease, controller] in
                        lease.start()
                        controller.watchDeadline()
                        roleDecided.post()
                    }, stop: { [lease] in lease.stop() })),
            // The application first, then writes; a primary waits for its
            // replicas to confirm its last transactions.
            .init(service: BlockingService("role", stop: { [controller] in controller.shutdown() })),
        ]
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Undoes what startup has done so far, last step first, unless startup
/// completes: the one cleanup path for every failure of ``Daemon/init(config:logger:)``.
private final class StartupRollback {
    private var steps: [() -> Void] = []

    func add(_ step: @escaping () -> Void) {
        steps.append(step)
    }

    /// Startup succeeded: nothing is undone.
    func complete() {
        steps.removeAll()
    }

    deinit {
        for step in steps.reversed() { step() }
    }
}
