#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A replica's link to the primary: connects, authenticates, applies what
/// the primary streams, and reconnects (with backoff) when the link breaks.
///
/// The primary is presumed dead after 3 seconds without a frame (it sends a
/// heartbeat every second). Frames are applied on one thread, in order, by
/// ``ReplicaApplier``; on reconnection the replica reports the positions it
/// has reached and the primary resumes from there.
public final class ReplicaClient: Sendable {
    /// Who this node is, as it introduces itself to a primary.
    public struct Identity: Sendable {
        public var cluster: String
        public var node: String
        /// This node's ID (its data directory's; see ``DataDirectory/Identity``).
        public var nodeID: UInt64
        /// Whether this node may become primary (`lease.candidate`).
        public var candidate: Bool
        /// `replication.advertise`: how peers reach this node.
        public var address: String
        public var authenticator: Authenticator
        /// Mutual TLS for every connection to a peer (`replication.tls`), if configured.
        public var tls: TLSCredentials?

        public init(
            cluster: String, node: String, nodeID: UInt64, candidate: Bool, address: String, authenticator: Authenticator, tls: TLSCredentials? = nil
        ) {
            self.tls = tls
            self.cluster = cluster
            self.node = node
            self.nodeID = nodeID
            self.candidate = candidate
            self.address = address
            self.authenticator = authenticator
        }
    }

    struct Settings: Sendable {
        let identity: Identity
        let logger: Logger
        var cluster: String { identity.cluster }
        var node: String { identity.node }
        var authenticator: Authenticator { identity.authenticator }
    }

    /// The primary this client follows.
    public let target: Peer
    private let settings: Settings
    private let store: Store
    private let group: MultiThreadedEventLoopGroup
    private let running = Atomic(true)
    private let current = Mutex<(any Channel)?>(nil)
    let applier: ReplicaApplier
    private let stopped = Semaphore()
    /// Cuts a reconnection backoff short (``stop()``).
    private let wake = Semaphore()
    private let delegate: any ReplicaClientDelegate

    /// The state shown by status: which primary, connected or not, last error.
    public struct Status: Sendable {
        public var primary: String?
        public var connected: Bool
        public var lastError: String?
        public var epoch: Epoch
        /// Since when the link has been down (nil while connected).
        public var disconnectedSince: ContinuousClock.Instant?
        /// How long the oldest change received and not yet applied has waited.
        public var backlogAge: Duration = .zero
        /// Whether this client has been connected to its primary at all.
        public var hasConnected = false
    }

    private let statusSlot: Locked<Status>
    public var status: Status {
        var status = statusSlot.withLock { $0 }
        status.backlogAge = applier.backlogAge
        return status
    }

    /// A client that follows `target`, refusing any primary older than `epoch`.
    public init(store: Store, target: Peer, identity: Identity, epoch: Epoch, delegate: any ReplicaClientDelegate, logger: Logger) {
        self.store = store
        self.target = target
        self.delegate = delegate
        settings = Settings(identity: identity, logger: logger)
        statusSlot = Locked(Status(primary: target.address, connected: false, lastError: nil, epoch: epoch, disconnectedSince: .now))
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        applier = ReplicaApplier(store: store, logger: logger)
        applier.noteEpoch(epoch)
        applier.handoffHandler = { [weak self, identity] handoff, channel in
            guard let self else { return }
            if handoff.node == identity.node, let reason = store.applyStall {
                // Not confirmed: the primary resumes after its timeout.
                settings.logger.warning("refused the handoff: this node cannot lead now", metadata: ["reason": "\(reason)"])
                return
            }
            if handoff.node == identity.node {
                // Everything before the marker is applied: tell the primary.
                channel.writeAndFlush(
                    ReplicationFrameCodec.frame(.handoffAccepted(node: identity.node), allocator: channel.allocator), promise: nil)
            }
            self.delegate.replicaClient(self, handoff: handoff)
        }
    }

    /// Asks the primary to hand the role over to this node; false when the
    /// stream is not established.
    public func requestHandoff() -> Bool {
        guard statusSlot.withLock({ $0.connected }), let channel = current.withLock({ $0 }), channel.isActive else { return false }
        channel.writeAndFlush(ReplicationFrameCodec.frame(.handoffRequest(node: settings.node), allocator: channel.allocator), promise: nil)
        return true
    }

    public func start() {
        applier.start()
        DetachedThread { [self] in reconnectLoop() }.start()
    }

    public func stop() {
        running.store(false, ordering: .releasing)
        wake.post()
        if let channel = current.withLock({ $0 }) { channel.close(promise: nil) }
        stopped.wait()
        applier.stop()
        try? group.syncShutdownGracefully()
    }

    /// Records why the link is down, and logs it once: the next identical
    /// error (every reconnect attempt) is not logged again until the link
    /// has worked in between.
    private func noteError(_ text: String) {
        let repeated = statusSlot.withLock { status in
            defer { status.lastError = text }
            return status.lastError == text
        }
        if !repeated { settings.logger.warning("the primary cannot be reached; retrying with backoff", metadata: ["reason": "\(text)"]) }
    }

    private func reconnectLoop() {
        var backoff = 0.1
        let address = target.address
        while running.load(ordering: .acquiring) {
            // Report where this replica stands now: nothing is being applied.
            applier.waitUntilIdle()
            let positions = store.positions().map { entry in
                ReplicationMessage.DatabasePosition(
                    database: entry.database,
                    position: applier.isDistrusted(entry.database) ? Position(txid: entry.position.txid, checksum: .zero) : entry.position)
            }
            let files = store.plainEntries().map { ReplicationMessage.FileDigest(path: $0.path, checksum: $0.digest) }
            let progressed = connect(address: address, positions: positions, files: files)
            statusSlot.withLock {
                if $0.connected { $0.disconnectedSince = .now }
                $0.connected = false
            }
            guard running.load(ordering: .acquiring) else { break }
            backoff = progressed ? 0.1 : min(backoff * 2, 5)
            _ = wake.wait(timeout: .milliseconds(Int(backoff * 1000)))
        }
        stopped.post()
    }

    /// One connection, until it closes. Returns whether the stream started.
    private func connect(address: String, positions: [ReplicationMessage.DatabasePosition], files: [ReplicationMessage.FileDigest]) -> Bool {
        let (host, port): (String, Int)
        do { (host, port) = try ReplicationServer.split(address) } catch {
            noteError("\(error)")
            return false
        }
        // Until the primary has proven the token, its frames are as small
        // as a handshake: a stranger at the primary's address cannot make
        // this node buffer megabytes.
        let limit = FrameLimit(ReplicationFrameCodec.unauthenticatedFrameSize)
        let handler = ReplicaConnectionHandler(
            settings: settings, applier: applier, positions: positions, files: files, statusSlot: statusSlot, client: self, delegate: delegate,
            limit: limit, dialed: host)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(2))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [tls = settings.identity.tls] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(tls.clientHandler(dialing: host)) }
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(3)))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ReplicationFrameDecoder(limit: limit)))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let channel: any Channel
        do {
            channel = try bootstrap.connect(host: host, port: port).wait()
        } catch {
            noteError("cannot reach primary at \(address): \(error)")
            return false
        }
        current.withLock { $0 = channel }
        // stop() may have run before the channel was published.
        if !running.load(ordering: .acquiring) { channel.close(promise: nil) }
        try? channel.closeFuture.wait()
        current.withLock { $0 = nil }
        return handler.streamStarted
    }
}

/// Handshake, flow control and hand-off to the applier, on the event loop.
final class ReplicaConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ReplicationMessage
    typealias OutboundOut = ByteBuffer

    private let settings: ReplicaClient.Settings
    private let applier: ReplicaApplier
    private let positions: [ReplicationMessage.DatabasePosition]
    private let files: [ReplicationMessage.FileDigest]
    private let statusSlot: Locked<ReplicaClient.Status>
    private var handshake: HandshakeInitiator
    private var authenticated = false
    private(set) var streamStarted = false
    private unowned let client: ReplicaClient
    private let delegate: any ReplicaClientDelegate
    private let limit: FrameLimit
    /// The host dialed (an address or a name), for TLS errors.
    private let dialed: String

    init(
        settings: ReplicaClient.Settings, applier: ReplicaApplier, positions: [ReplicationMessage.DatabasePosition],
        files: [ReplicationMessage.FileDigest], statusSlot: Locked<ReplicaClient.Status>, client: ReplicaClient,
        delegate: any ReplicaClientDelegate, limit: FrameLimit, dialed: String
    ) {
        self.limit = limit
        self.dialed = dialed
        handshake = HandshakeInitiator(identity: settings.identity)
        self.settings = settings
        self.applier = applier
        self.positions = positions
        self.files = files
        self.statusSlot = statusSlot
        self.client = client
        self.delegate = delegate
    }

    private var logger: Logger { settings.logger }

    private func frame(_ context: ChannelHandlerContext, _ message: ReplicationMessage) -> ByteBuffer {
        ReplicationFrameCodec.frame(message, allocator: context.channel.allocator)
    }

    private func peer(_ context: ChannelHandlerContext) -> String {
        context.channel.remoteAddress?.description ?? "?"
    }

    /// Closes the link; the reason is logged once while it repeats (a
    /// refused certificate fails every reconnect the same way).
    private func fail(_ context: ChannelHandlerContext, _ reason: String) {
        let repeated = statusSlot.withLock { status in
            defer { status.lastError = reason }
            return status.lastError == reason
        }
        if !repeated { logger.warning("closing the link to the primary", metadata: ["peer": "\(peer(context))", "reason": "\(reason)"]) }
        context.close(promise: nil)
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(frame(context, .hello(handshake.hello))), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        switch message {
        case .challenge(let challenge):
            guard (ReplicationMessage.oldestProtocolVersion...ReplicationMessage.protocolVersion).contains(challenge.version) else {
                return refuse(context, "protocol version \(challenge.version) is not spoken here")
            }
            applier.noteProtocol(challenge.version)
            guard let authenticate = handshake.answer(challenge, epoch: applier.highestEpoch, positions: positions, files: files) else {
                return refuse(context, "authentication failed: the peer does not know the token (or is of another cluster)")
            }
            context.writeAndFlush(wrapOutboundOut(frame(context, .authenticate(authenticate))), promise: nil)
        case .welcome(let welcome):
            guard !authenticated, handshake.accepts(welcome) else {
                return refuse(context, "authentication failed: the peer's welcome is not proven")
            }
            limit.bytes = ReplicationFrameCodec.maximumFrameSize
            guard welcome.isPrimary else {
                let primary = welcome.primary.isEmpty ? nil : Peer(name: welcome.primary, address: welcome.primaryAddress)
                fail(context, "\(welcome.node) is not the primary" + (primary.map { "; it names \($0)" } ?? ""))
                delegate.replicaClient(client, redirectedBy: welcome.node, to: ReplicationView(isPrimary: false, epoch: welcome.epoch, primary: primary))
                return
            }
            let highest = applier.highestEpoch
            guard welcome.epoch >= highest else {
                return refuse(context, "stale primary: epoch \(welcome.epoch) is older than \(highest)")
            }
            applier.noteEpoch(welcome.epoch)
            statusSlot.withLock { $0.epoch = welcome.epoch }
            delegate.replicaClient(client, following: welcome.node, epoch: welcome.epoch)
            authenticated = true
            streamStarted = true
            statusSlot.withLock {
                $0.connected = true
                $0.hasConnected = true
                $0.disconnectedSince = nil
                $0.lastError = nil
            }
            logger.info("following the primary", metadata: ["primary": "\(welcome.node)", "peer": "\(peer(context))", "epoch": "\(welcome.epoch)"])
        case .refused(let reason):
            fail(context, "refused by the primary: \(reason)")
        case .heartbeat(let epoch):
            guard authenticated else { return fail(context, "heartbeat before the handshake") }
            if epoch < applier.highestEpoch { fail(context, "stale primary: epoch \(epoch) is older than \(applier.highestEpoch)") }
        case .hello, .authenticate, .acknowledge, .logged, .handoffRequest, .handoffAccepted:
            fail(context, "unexpected message from the primary")
        default:
            guard authenticated else { return fail(context, "stream before the handshake") }
            if applier.enqueue(message, channel: context.channel) {
                // The applier is behind: stop reading until it catches up.
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
            }
        }
    }

    private func refuse(_ context: ChannelHandlerContext, _ reason: String) {
        logger.warning("refusing the primary", metadata: ["peer": "\(peer(context))", "reason": "\(reason)"])
        statusSlot.withLock { $0.lastError = reason }
        context.writeAndFlush(wrapOutboundOut(frame(context, .refused(reason: reason)))).whenComplete { _ in context.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            fail(context, "no frame from the primary for 3 s (3 missed heartbeats)")
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let tls = TLSFailure.describe(error, dialed: dialed, serverName: settings.identity.tls?.identity.files.serverName)
        fail(context, tls ?? "\(error)")
    }
}

/// What a replica client reports to the node's role keeper. Calls come from
/// the event loop or the apply thread: implementations must not block them
/// (a role change stops this very client).
public protocol ReplicaClientDelegate: AnyObject, Sendable {
    /// The node this client reached is not the primary; it named `view.primary`.
    func replicaClient(_ client: ReplicaClient, redirectedBy node: String, to view: ReplicationView)
    /// The client follows `primary` at `epoch` (the highest epoch seen may have grown).
    func replicaClient(_ client: ReplicaClient, following primary: String, epoch: Epoch)
    /// A handoff marker was applied: everything the old primary wrote is here.
    func replicaClient(_ client: ReplicaClient, handoff: ReplicationMessage.Handoff)
}
