import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The primary's replication listener (`replication.listen`).
///
/// Each connection must complete the handshake (protocol version, cluster,
/// mutual proof of the shared token) within 5 seconds; then a
/// ``ReplicaStream`` brings the replica up to date and follows the
/// ``ChangeFeed``. A node that is not primary refuses connections.
public final class ReplicationServer: Sendable {
    final class Context: Sendable {
        let store: Store
        let feed: ChangeFeed
        let authenticator: Authenticator
        let cluster: String
        let node: String
        let epoch: @Sendable () -> UInt64
        let isPrimary: @Sendable () -> Bool
        let logger: Logger
        let streams = Mutex<[ObjectIdentifier: ReplicaStream]>([:])

        init(
            store: Store, feed: ChangeFeed, authenticator: Authenticator, cluster: String, node: String, epoch: @escaping @Sendable () -> UInt64,
            isPrimary: @escaping @Sendable () -> Bool, logger: Logger
        ) {
            self.store = store
            self.feed = feed
            self.authenticator = authenticator
            self.cluster = cluster
            self.node = node
            self.epoch = epoch
            self.isPrimary = isPrimary
            self.logger = logger
        }
    }

    private let context: Context
    private let group: MultiThreadedEventLoopGroup
    private let channel: Mutex<(any Channel)?> = Mutex(nil)

    public init(
        store: Store, feed: ChangeFeed, authenticator: Authenticator, cluster: String, node: String,
        epoch: @escaping @Sendable () -> UInt64, isPrimary: @escaping @Sendable () -> Bool, logger: Logger
    ) {
        context = Context(
            store: store, feed: feed, authenticator: authenticator, cluster: cluster, node: node, epoch: epoch, isPrimary: isPrimary,
            logger: logger)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
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
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ReplicationFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(PrimaryConnectionHandler(context: context))
                }
            }
        let bound = try bootstrap.bind(host: host, port: port).wait()
        channel.withLock { $0 = bound }
        context.logger.info("replication listening", metadata: ["listen": "\(address)"])
    }

    /// The bound port (for tests that listen on port 0).
    public var port: Int? { channel.withLock { $0?.localAddress?.port } }

    /// Replicas connected now, with what they acknowledged.
    public var replicas: [(name: String, peer: String, acknowledged: [String: TXID])] {
        context.streams.withLock { Array($0.values) }.map { ($0.replica, $0.peer, $0.acknowledged.withLock { $0 }) }
    }

    public func stop() {
        let streams = context.streams.withLock { Array($0.values) }
        for stream in streams { stream.stop() }
        if let channel = channel.withLock({ $0 }) { try? channel.close().wait() }
        try? group.syncShutdownGracefully()
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
    private var replicaNonce: [UInt8] = []
    private var ownNonce: [UInt8] = []
    private var replicaName = "?"
    private var stream: ReplicaStream?
    private var handshakeTimeout: Scheduled<Void>?

    init(context: ReplicationServer.Context) {
        self.context = context
    }

    func channelActive(context channelContext: ChannelHandlerContext) {
        let channel = channelContext.channel
        handshakeTimeout = channelContext.eventLoop.scheduleTask(in: .seconds(5)) { [context] in
            context.logger.warning("replica did not complete the handshake in time", metadata: ["peer": "\(channel.remoteAddress?.description ?? "?")"])
            channel.close(promise: nil)
        }
        channelContext.fireChannelActive()
    }

    private func refuse(_ channelContext: ChannelHandlerContext, _ reason: String) {
        context.logger.warning("refused replica", metadata: ["peer": "\(peer(channelContext))", "replica": "\(replicaName)", "reason": "\(reason)"])
        channelContext.writeAndFlush(wrapOutboundOut(frame(channelContext, .refused(reason: reason)))).whenComplete { _ in channelContext.close(promise: nil) }
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
            replicaName = hello.node
            guard hello.version == ReplicationMessage.protocolVersion else {
                return refuse(channelContext, "protocol version \(hello.version) is not \(ReplicationMessage.protocolVersion)")
            }
            guard hello.cluster == context.cluster else {
                return refuse(channelContext, "wrong cluster ID \"\(hello.cluster)\" (this is \"\(context.cluster)\")")
            }
            guard context.isPrimary() else { return refuse(channelContext, "\(context.node) is not the primary") }
            replicaNonce = hello.nonce
            ownNonce = Authenticator.nonce()
            let proof = context.authenticator.proof(role: .primary, cluster: context.cluster, challenge: replicaNonce, own: ownNonce)
            channelContext.writeAndFlush(
                wrapOutboundOut(frame(channelContext, .challenge(.init(
                    version: ReplicationMessage.protocolVersion, cluster: context.cluster, node: context.node, epoch: context.epoch(),
                    nonce: ownNonce, proof: proof)))),
                promise: nil)
        case .authenticate(let authenticate):
            guard !ownNonce.isEmpty, stream == nil else { return refuse(channelContext, "unexpected authentication") }
            guard context.authenticator.verify(authenticate.proof, role: .replica, cluster: context.cluster, challenge: ownNonce, own: replicaNonce) else {
                return refuse(channelContext, "authentication failed: wrong token")
            }
            handshakeTimeout?.cancel()
            let stream = ReplicaStream(
                replica: replicaName, peer: peer(channelContext), channel: channelContext.channel, store: context.store, feed: context.feed,
                epoch: context.epoch(), positions: authenticate.positions, files: authenticate.files, logger: context.logger)
            self.stream = stream
            context.streams.withLock { $0[ObjectIdentifier(stream)] = stream }
            stream.start()
        case .acknowledge(let database, let txid):
            stream?.acknowledge(database: database, txid: txid)
        case .refused(let reason):
            context.logger.warning("replica refused the stream", metadata: ["replica": "\(replicaName)", "reason": "\(reason)"])
            channelContext.close(promise: nil)
        default:
            refuse(channelContext, "unexpected message from a replica")
        }
    }

    func channelInactive(context channelContext: ChannelHandlerContext) {
        handshakeTimeout?.cancel()
        if let stream {
            stream.stop()
            context.streams.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(stream)) }
        }
        channelContext.fireChannelInactive()
    }

    func errorCaught(context channelContext: ChannelHandlerContext, error: any Error) {
        context.logger.warning("closing replica connection", metadata: ["peer": "\(peer(channelContext))", "replica": "\(replicaName)", "error": "\(error)"])
        channelContext.close(promise: nil)
    }
}
