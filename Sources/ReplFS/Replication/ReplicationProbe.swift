import Logging
import NIOCore
import NIOPosix

/// Asks a peer, over the replication protocol, what it knows of the primary
/// role: whether it is the primary, at which epoch, and who is.
///
/// The answer is the handshake's first reply, whose claims the peer's proof
/// covers (HMAC with the shared token), so a peer without the token cannot
/// make a node step down or follow it. Used at startup (a restarted primary
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
        let nonce = Authenticator.nonce()
        let promise = group.next().makePromise(of: (String, ReplicationView)?.self)
        let handler = ProbeHandler(identity: identity, nonce: nonce, promise: promise)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ReplicationFrameDecoder()))
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

    private let identity: ReplicaClient.Identity
    private let nonce: [UInt8]
    private let promise: EventLoopPromise<(String, ReplicationView)?>

    init(identity: ReplicaClient.Identity, nonce: [UInt8], promise: EventLoopPromise<(String, ReplicationView)?>) {
        self.identity = identity
        self.nonce = nonce
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        let hello = ReplicationMessage.hello(.init(version: ReplicationMessage.protocolVersion, cluster: identity.cluster, node: identity.node, nonce: nonce))
        context.writeAndFlush(wrapOutboundOut(ReplicationFrameCodec.frame(hello, allocator: context.channel.allocator)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .challenge(let challenge) = unwrapInboundIn(data), challenge.cluster == identity.cluster,
            identity.authenticator.verify(
                challenge.proof, role: .primary, cluster: identity.cluster, challenge: nonce, own: challenge.nonce, claims: challenge.claims)
        else {
            promise.succeed(nil)
            context.close(promise: nil)
            return
        }
        let primary = challenge.primary.isEmpty ? nil : Peer(name: challenge.primary, address: challenge.primaryAddress)
        promise.succeed((challenge.node, ReplicationView(isPrimary: challenge.isPrimary, epoch: challenge.epoch, primary: primary)))
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
