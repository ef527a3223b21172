import Crypto

/// Mutual challenge-response authentication with the shared token.
///
/// Each side sends a random nonce; each proves it knows the token with
/// HMAC-SHA256(token, role ‖ cluster ‖ its peer's nonce ‖ its own nonce ‖
/// claims), so the token never crosses the wire, a recorded proof is useless
/// in another connection, and what a side claims in the handshake (its
/// epoch, whether it is the primary, who is) cannot be altered in transit. With no token configured, proofs are empty and only
/// a peer also without a token is accepted.
public struct Authenticator: Sendable {
    private let token: [UInt8]?

    public init(token: [UInt8]?) {
        self.token = token
    }

    /// Whether a token is configured.
    public var isEnabled: Bool { token != nil }

    public enum Role: String, Sendable {
        case primary
        case replica
    }

    /// 16 random bytes.
    public static func nonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// The proof `role` sends, answering `challenge` (the peer's nonce).
    public func proof(role: Role, cluster: String, challenge: [UInt8], own: [UInt8], claims: [UInt8] = []) -> [UInt8] {
        guard let token else { return [] }
        let key = SymmetricKey(data: token)
        var message = Array(role.rawValue.utf8) + [0] + Array(cluster.utf8) + [0]
        message += challenge
        message += own
        message += claims
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
    }

    /// Checks a peer's proof in constant time.
    public func verify(_ proof: [UInt8], role: Role, cluster: String, challenge: [UInt8], own: [UInt8], claims: [UInt8] = []) -> Bool {
        let expected = self.proof(role: role, cluster: cluster, challenge: challenge, own: own, claims: claims)
        guard expected.count == proof.count else { return false }
        var difference: UInt8 = 0
        for (a, b) in zip(expected, proof) { difference |= a ^ b }
        return difference == 0
    }
}
