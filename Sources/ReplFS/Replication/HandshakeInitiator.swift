/// The side of the handshake that connects (a replica, or a node probing
/// its peers): what it sends and how it checks what it is answered.
///
/// One place for the rules both share: the peer proves the token before
/// this node says where it stands, and the peer's `welcome` counts only
/// under a proof bound to this connection's nonces.
struct HandshakeInitiator: Sendable {
    let identity: ReplicaClient.Identity
    let nonce: [UInt8]
    /// The peer's nonce, once its challenge was proven.
    private(set) var peerNonce: [UInt8]?

    init(identity: ReplicaClient.Identity, nonce: [UInt8] = Authenticator.nonce()) {
        self.identity = identity
        self.nonce = nonce
    }

    /// The first message.
    var hello: ReplicationMessage.Hello {
        .init(version: ReplicationMessage.protocolVersion, cluster: identity.cluster, node: identity.node, nodeID: identity.nodeID, nonce: nonce)
    }

    /// Checks the peer's `challenge` and answers it with this node's proof
    /// and where it stands; nil if the peer does not prove the token (or is
    /// of another cluster), or has already been answered.
    mutating func answer(
        _ challenge: ReplicationMessage.Challenge, epoch: Epoch, probe: Bool = false, positions: [ReplicationMessage.DatabasePosition] = [],
        files: [ReplicationMessage.FileDigest] = []
    ) -> ReplicationMessage.Authenticate? {
        let authenticator = identity.authenticator
        guard peerNonce == nil,
            authenticator.verify(challenge.proof, role: .primary, cluster: identity.cluster, challenge: nonce, own: challenge.nonce)
        else { return nil }
        peerNonce = challenge.nonce
        var authenticate = ReplicationMessage.Authenticate(
            proof: [], epoch: epoch, candidate: identity.candidate, probe: probe, address: identity.address, positions: positions, files: files)
        authenticate.proof = authenticator.proof(
            role: .replica, cluster: identity.cluster, challenge: challenge.nonce, own: nonce, claims: authenticate.claims(identity: hello))
        return authenticate
    }

    /// Whether `welcome` is proven by the peer whose challenge was answered.
    func accepts(_ welcome: ReplicationMessage.Welcome) -> Bool {
        guard let peerNonce else { return false }
        return identity.authenticator.verify(
            welcome.proof, role: .primary, cluster: identity.cluster, challenge: nonce, own: peerNonce, claims: welcome.claims)
    }
}
