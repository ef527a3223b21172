import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// This node's replication listener (`replication.listen`), on every node.
///
/// Each connection must complete the handshake (protocol version, cluster,
/// mutual proof of the shared token) within 5 seconds. On the primary a
/// ``ReplicaStream`` then brings the replica up to date and follows the
/// ``ChangeFeed``. A node that is not the primary answers the handshake with
/// who the primary is, as far as it knows, and closes: replicas and probing
/// peers learn where to go.
public final class ReplicationServer: Sendable {
    final class Context: Sendable {
        let store: Store
        let feed: ChangeFeed
        let authenticator: Authenticator
        /// Mutual TLS for every connection (`replication.tls`), if configured.
        let tls: TLSCredentials?
        let cluster: String
        let node: String
        let nodeID: UInt64
        let role: Locked<(any ReplicationRole)?> = Locked(nil)
        let logger: Logger
        let streams = Mutex<[ObjectIdentifier: ReplicaStream]>([:])
        let counters = ReplicationCounters()
        let admission = ConnectionAdmission()
        /// Told of every confirmation and every replica that leaves
        /// (synchronous replication's waiting commits look again).
        let confirmations = Locked<(@Sendable () -> Void)?>(nil)

        func confirmationsChanged() {
            confirmations.value?()
        }
        let rate = ConnectionRate()
        let refusals = RefusalLog()

        init(
            store: Store, feed: ChangeFeed, authenticator: Authenticator, tls: TLSCredentials?, cluster: String, node: String, nodeID: UInt64,
            logger: Logger
        ) {
            self.store = store
            self.tls = tls
            self.nodeID = nodeID
            self.feed = feed
            self.authenticator = authenticator
            self.cluster = cluster
            self.node = node
            self.logger = logger
        }

        var view: ReplicationView {
            role.withLock { $0?.replicationView } ?? ReplicationView(isPrimary: false, epoch: .unknown, primary: nil)
        }
    }

    private let context: Context
    private let group: MultiThreadedEventLoopGroup
    private let channel: Mutex<(any Channel)?> = Mutex(nil)

    /// - Parameter tls: when set, every accepted connection is a TLS server
    ///   connection that requires a client certificate chained to the CA;
    ///   a peer that does not start a TLS handshake is refused.
    public init(
        store: Store, feed: ChangeFeed, authenticator: Authenticator, tls: TLSCredentials? = nil, cluster: String, node: String, nodeID: UInt64,
        logger: Logger
    ) {
        context = Context(
            store: store, feed: feed, authenticator: authenticator, tls: tls, cluster: cluster, node: node, nodeID: nodeID, logger: logger)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    /// Totals for the metrics.
    public var counters: ReplicationCounters { context.counters }

    /// Who hears of every confirmation from a replica and every replica
    /// that leaves (``SynchronousReplication/acknowledged()``).
    public func onConfirmations(_ body: (@Sendable () -> Void)?) {
        context.confirmations.withLock { $0 = body }
    }

    /// Who answers for this node's role (set once, before ``start(listen:)``).
    public func setRole(_ role: any ReplicationRole) {
        context.role.withLock { $0 = role }
    }

    /// Binds `address` ("host:port").
    public func start(listen address: String) throws {
        let (host, port) = try ReplicationServer.split(address)
        let context = self.context
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let limit = FrameLimit(ReplicationFrameCodec.unauthenticatedFrameSize)
                    if let tls = context.tls { try channel.pipeline.syncOperations.addHandler(tls.serverHandler()) }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ReplicationFrameDecoder(limit: limit)))
                    try channel.pipeline.syncOperations.addHandler(PrimaryConnectionHandler(context: context, limit: limit))
                }
            }
        let bound = try bootstrap.bind(host: host, port: port).wait()
        channel.withLock { $0 = bound }
        context.logger.info("replication listening", metadata: ["listen": "\(address)"])
    }

    /// The bound port (for tests that listen on port 0).
    public var port: Int? { channel.withLock { $0?.localAddress?.port } }

    /// Replicas connected now, with what they acknowledged.
    public var replicas: [ConnectedReplica] {
        context.streams.withLock { Array($0.values) }.map { stream in
            let (acknowledged, at, logged) = stream.acknowledged.withLock { ($0.txids, $0.at, $0.logged) }
            return ConnectedReplica(
                name: stream.replica, nodeID: stream.replicaID, peer: stream.peer, address: stream.address, candidate: stream.candidate, acknowledged: acknowledged,
                lastAcknowledgement: at, logged: logged)
        }
    }

    /// Ends every replica stream (this node stopped being the primary).
    public func closeStreams() {
        let streams = context.streams.withLock { Array($0.values) }
        for stream in streams { stream.stop() }
    }

    public func stop() {
        let streams = context.streams.withLock { Array($0.values) }
        closeStreams()
        // A stream thread still writing when the event loops are gone would
        // schedule on a loop that has shut down.
        for stream in streams where !stream.waitUntilEnded(timeout: .seconds(2)) {
            // Blocked on writes a replica does not read: closing fails them.
            stream.closeChannel()
            _ = stream.waitUntilEnded(timeout: .seconds(2))
        }
        if let channel = channel.withLock({ $0 }) { try? channel.close().wait() }
        try? group.syncShutdownGracefully()
        context.role.withLock { $0 = nil }
    }

    static func split(_ address: String) throws -> (String, Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw ReplicationProtocolError(.malformed, "\(address) is not host:port")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }
}

/// Handshake and acknowledgements of one replica connection, on the event loop.
final class PrimaryConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ReplicationMessage
    typealias OutboundOut = ByteBuffer

    private let context: ReplicationServer.Context
    /// This connection's frame limit, raised once the peer proves the token.
    private let limit: FrameLimit
    /// Counted in by ``ConnectionAdmission`` (false: refused at the door).
    private var admitted = false
    /// The peer proved the token.
    private var authenticated = false
    private var hello: ReplicationMessage.Hello?
    private var ownNonce: [UInt8] = []
    /// The protocol version this connection speaks: the replica's, if older than ours.
    private var version = ReplicationMessage.protocolVersion
    private var replicaName: String { hello?.node ?? "?" }
    private var stream: ReplicaStream?
    private var handshakeTimeout: Scheduled<Void>?

    /// How long a peer has to prove the token.
    static let handshakeDeadline = TimeAmount.seconds(5)

    init(context: ReplicationServer.Context, limit: FrameLimit) {
        self.context = context
        self.limit = limit
    }

    func channelActive(context channelContext: ChannelHandlerContext) {
        let channel = channelContext.channel
        guard context.rate.allow(host(channelContext)) else {
            // Before a TLS handshake or a frame costs anything.
            context.refusals.refused(host(channelContext), reason: "new connections arrive faster than a cluster makes them", logger: context.logger)
            channel.close(promise: nil)
            return
        }
        guard context.admission.admit() else {
            // Closed before a byte is read: a flood of strangers costs a
            // socket each for a moment, and the log a line a minute.
            let (total, waiting) = context.admission.current
            context.refusals.refused(
                host(channelContext), reason: "too many connections (\(total) open, \(waiting) not authenticated)", logger: context.logger)
            channel.close(promise: nil)
            return
        }
        admitted = true
        handshakeTimeout = channelContext.eventLoop.scheduleTask(in: Self.handshakeDeadline) { [context] in
            context.refusals.refused(
                channel.remoteAddress?.ipAddress ?? "?", reason: "no authenticated handshake within 5 s", logger: context.logger)
            channel.close(promise: nil)
        }
        channelContext.fireChannelActive()
    }

    /// Refuses the peer: `reason` goes to the peer, `detail` (which may
    /// name this node's settings) only to the log.
    private func refuse(_ channelContext: ChannelHandlerContext, _ reason: String, detail: String? = nil) {
        context.refusals.refused(
            host(channelContext), reason: detail ?? reason, logger: context.logger, metadata: ["replica": "\(replicaName)"])
        channelContext.writeAndFlush(wrapOutboundOut(frame(channelContext, .refused(reason: reason)))).whenComplete { _ in channelContext.close(promise: nil) }
    }

    /// The peer's address without its port: refusals are counted per host.
    private func host(_ channelContext: ChannelHandlerContext) -> String {
        channelContext.channel.remoteAddress?.ipAddress ?? "?"
    }

    private func frame(_ channelContext: ChannelHandlerContext, _ message: ReplicationMessage) -> ByteBuffer {
        ReplicationFrameCodec.frame(message, allocator: channelContext.channel.allocator)
    }

    private func peer(_ channelContext: ChannelHandlerContext) -> String {
        channelContext.channel.remoteAddress?.description ?? "?"
    }

    func channelRead(context channelContext: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        switch message {
        case .hello(let hello):
            received(hello, channelContext)
        case .authenticate(let authenticate):
            received(authenticate, channelContext)
        case .acknowledge(let database, let txid):
            stream?.acknowledge(database: database, txid: txid)
            context.confirmationsChanged()
        case .logged(let database, let txid):
            guard version >= ReplicationMessage.loggedVersion else { return refuse(channelContext, "unexpected message from a replica") }
            stream?.logged(database: database, txid: txid)
            context.confirmationsChanged()
        case .handoffRequest(let node):
            guard stream != nil, node == replicaName else { return refuse(channelContext, "handoff request outside a stream") }
            context.role.withLock { $0 }?.handoffRequested(by: node)
        case .handoffAccepted(let node):
            guard stream != nil, node == replicaName else { return refuse(channelContext, "handoff acceptance outside a stream") }
            context.role.withLock { $0 }?.handoffAccepted(by: node)
        case .refused(let reason):
            context.logger.warning("replica refused the stream", metadata: ["replica": "\(replicaName)", "reason": "\(reason)"])
            channelContext.close(promise: nil)
        default:
            refuse(channelContext, "unexpected message from a replica")
        }
    }

    /// The replica's first message: answered with this node's proof and a
    /// nonce, nothing else (who this node is comes once the peer proved the token).
    private func received(_ hello: ReplicationMessage.Hello, _ channelContext: ChannelHandlerContext) {
        guard self.hello == nil else { return refuse(channelContext, "unexpected hello") }
        self.hello = hello
        guard (ReplicationMessage.oldestProtocolVersion...ReplicationMessage.protocolVersion).contains(hello.version) else {
            return refuse(
                channelContext,
                "protocol version \(hello.version) is not spoken here (\(ReplicationMessage.oldestProtocolVersion) to \(ReplicationMessage.protocolVersion))")
        }
        version = hello.version
        guard hello.cluster == context.cluster else {
            // This node's cluster name is not told to a peer that has
            // proven nothing.
            return refuse(
                channelContext, "wrong cluster ID \"\(hello.cluster)\"",
                detail: "wrong cluster ID \"\(hello.cluster)\" (this is \"\(context.cluster)\")")
        }
        ownNonce = Authenticator.nonce()
        // Only a proof and a nonce: who this node is, its epoch and the
        // primary are told in `welcome`, once the peer has proven the token.
        let proof = context.authenticator.proof(role: .primary, cluster: context.cluster, challenge: hello.nonce, own: ownNonce)
        channelContext.writeAndFlush(
            wrapOutboundOut(frame(channelContext, .challenge(.init(version: version, nonce: ownNonce, proof: proof)))),
            promise: nil)
    }

    /// The replica's proof: once it holds, the welcome, and for a replica
    /// of the primary, the stream.
    private func received(_ authenticate: ReplicationMessage.Authenticate, _ channelContext: ChannelHandlerContext) {
        guard let hello, !ownNonce.isEmpty, !authenticated else { return refuse(channelContext, "unexpected authentication") }
        guard
            context.authenticator.verify(
                authenticate.proof, role: .replica, cluster: context.cluster, challenge: ownNonce, own: hello.nonce,
                claims: authenticate.claims(identity: hello))
        else {
            return refuse(channelContext, "authentication failed: wrong token")
        }
        handshakeTimeout?.cancel()
        authenticated = true
        context.admission.authenticated()
        limit.bytes = ReplicationFrameCodec.maximumFrameSize
        if let conflict = nameConflict(hello) {
            context.logger.error(
                "refused a node claiming a name another node holds",
                metadata: [
                    "name": "\(hello.node)", "peer": "\(peer(channelContext))", "node-id": "\(HexFormat.sixteenDigits(hello.nodeID))",
                    "holder": "\(conflict)",
                ])
            return refuse(channelContext, "node name \"\(hello.node)\" is held by another node (\(conflict)); give this node its own name")
        }
        let view = context.view
        var welcome = ReplicationMessage.Welcome(
            node: context.node, nodeID: context.nodeID, epoch: view.epoch, isPrimary: view.isPrimary, primary: view.primary?.name ?? "",
            primaryAddress: view.primary?.address ?? "", proof: [])
        welcome.proof = context.authenticator.proof(
            role: .primary, cluster: context.cluster, challenge: hello.nonce, own: ownNonce, claims: welcome.claims)
        let answer = frame(channelContext, .welcome(welcome))
        guard view.isPrimary, !authenticate.probe else {
            // Told where to go (or, to a probe, who is primary): done.
            channelContext.writeAndFlush(wrapOutboundOut(answer)).whenComplete { _ in channelContext.close(promise: nil) }
            return
        }
        channelContext.writeAndFlush(wrapOutboundOut(answer), promise: nil)
        let stream = ReplicaStream(
            replica: hello.node, replicaID: hello.nodeID, peer: peer(channelContext), address: authenticate.address, candidate: authenticate.candidate,
            channel: channelContext.channel, store: context.store, feed: context.feed,
            epoch: view.epoch, positions: authenticate.positions, files: authenticate.files, counters: context.counters,
            logger: context.logger)
        self.stream = stream
        context.streams.withLock { $0[ObjectIdentifier(stream)] = stream }
        stream.start()
    }

    /// Who holds `hello`'s name, if another node does: this node itself, or
    /// a connected replica of another node ID. A name belongs to one live
    /// node, so acknowledgements and handoffs never reach the wrong one.
    private func nameConflict(_ hello: ReplicationMessage.Hello) -> String? {
        if hello.node == context.node && hello.nodeID != context.nodeID {
            return "this node, ID \(HexFormat.sixteenDigits(context.nodeID))"
        }
        let holder = context.streams.withLock { streams in
            streams.values.first { $0.replica == hello.node && $0.replicaID != hello.nodeID }
        }
        return holder.map { "ID \(HexFormat.sixteenDigits($0.replicaID)) at \($0.peer)" }
    }

    func channelInactive(context channelContext: ChannelHandlerContext) {
        handshakeTimeout?.cancel()
        if admitted { context.admission.closed(authenticated: authenticated) }
        if let stream {
            stream.stop()
            context.streams.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(stream)) }
            context.confirmationsChanged()
        }
        channelContext.fireChannelInactive()
    }

    func errorCaught(context channelContext: ChannelHandlerContext, error: any Error) {
        if authenticated {
            context.logger.warning("closing replica connection", metadata: ["peer": "\(peer(channelContext))", "replica": "\(replicaName)", "error": "\(error)"])
        } else {
            let reason = TLSFailure.describe(error, dialed: nil, serverName: nil) ?? "\(error)"
            context.refusals.refused(host(channelContext), reason: reason, logger: context.logger, metadata: ["replica": "\(replicaName)"])
        }
        channelContext.close(promise: nil)
    }
}

/// Running totals of the replication server, read by the metrics.
public final class ReplicationCounters: Sendable {
    /// Snapshots streamed to replicas.
    public let snapshotsSent = Atomic<Int>(0)
}
