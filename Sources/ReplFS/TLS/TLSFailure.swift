import NIOSSL

/// One line for a failed TLS handshake, saying what an operator can act on
/// (NIOSSL's own texts name neither the address nor the setting).
enum TLSFailure {
    /// The reason for `error`, if it is a TLS error; `dialed` is the address
    /// this node dialed, `serverName` its `replication.tls.server-name`.
    static func describe(_ error: any Error, dialed: String?, serverName: String?) -> String? {
        switch error {
        case let error as NIOSSLExtraError where error == .failedToValidateHostname:
            let expected = serverName.map { "\"\($0)\" (replication.tls.server-name)" } ?? (dialed ?? "the address dialed")
            return "TLS: the peer's certificate does not name \(expected) among its subject alternative names; "
                + "issue it with that address (replfsd tls issue --ip/--dns) or set replication.tls.server-name"
        case let error as NIOSSLError:
            return "TLS handshake failed: \(error)"
        case let error as BoringSSLError:
            return "TLS: \(error)"
        default:
            return nil
        }
    }
}
