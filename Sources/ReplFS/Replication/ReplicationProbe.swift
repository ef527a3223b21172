import Logging
import NIOCore
import NIOPosix

/// Asks a peer, over the replication protocol, what it knows of the primary
/// role: whether it is the primary, at which epoch, and who is.
///
/// The probe completes the handshake as a replica would (flagged as a probe,
/// so it is never streamed to) and reads the peer's `welcome`, whose claims
/// the peer's proof covers (HMAC with the shared token): a peer without the
/// token cannot make a node step down or follow it, and learns nothing. Used at startup (a restarted primary
/// must not resume if another node took over) and by the static lease to
/// find the primary after a promotion it did not see.
public struct ReplicationProbe: Sendable {
    private let identity: ReplicaClient.Identity
    private let group: any EventLoopGroup

    public init(identity: ReplicaClient.Identity, group: any EventLoopGroup) {
        self.identity = identity
        self.group = group
    }

    /// What `address` says, or nil if it cannot be reached, is of another
    /// cluster, or cannot prove it knows the token (within `timeout`).
    public func probe(_ address: String, timeout: TimeAmount = .seconds(1)) -> (node: String, view: ReplicationView)? {
        guard let (host, port) = try? ReplicationServer.split(address) else { return nil }
        let promise = group.next().makePromise(of: (String, ReplicationView)?.self)
        let handler = ProbeHandler(identity: identity, promise: promise)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { [tls = identity.tls] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(tls.clientHandler(dialing: host)) }
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(ReplicationFrameDecoder(limit: FrameLimit(ReplicationFrameCodec.unauthenticatedFrameSize))))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        guard let channel = try? bootstrap.connect(host: host, port: port).wait() else {
            promise.succeed(nil)
            return nil
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) { promise.succeed(nil) }
        let answer = try? promise.futureResult.wait()
        timer.cancel()
        _ = try? channel.close().wait()
        return answer ?? nil
    }
}

private final class ProbeHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ReplicationMessage
    typealias OutboundOut = ByteBuffer

    private var handshake: HandshakeInitiator
    private let promise: EventLoopPromise<(String, ReplicationView)?>

    init(identity: ReplicaClient.Identity, promise: EventLoopPromise<(String, ReplicationView)?>) {
        handshake = HandshakeInitiator(identity: identity)
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ReplicationFrameCodec.frame(.hello(handshake.hello), allocator: context.channel.allocator)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .challenge(let challenge):
            guard let authenticate = handshake.answer(challenge, epoch: .unknown, probe: true) else { return give(up: context) }
            context.writeAndFlush(wrapOutboundOut(ReplicationFrameCodec.frame(.authenticate(authenticate), allocator: context.channel.allocator)), promise: nil)
        case .welcome(let welcome) where handshake.accepts(welcome):
            let primary = welcome.primary.isEmpty ? nil : Peer(name: welcome.primary, address: welcome.primaryAddress)
            promise.succeed((welcome.node, ReplicationView(isPrimary: welcome.isPrimary, epoch: welcome.epoch, primary: primary)))
            context.close(promise: nil)
        default:
            give(up: context)
        }
    }

    /// No answer worth trusting: the probe learns nothing.
    private func give(up context: ChannelHandlerContext) {
        promise.succeed(nil)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.succeed(nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.succeed(nil)
        context.close(promise: nil)
    }
}
