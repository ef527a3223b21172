/// Why a node's TLS files cannot be used, naming the file and the reason,
/// so that startup prints it as its one-line error (exit 2) and a refused
/// rotation logs it as one line.
///
/// Printed as e.g. `replication.tls.cert: /etc/replfs/node.crt expired on 2026-11-30T12:00:00Z`.
public struct TLSFileError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable {
        /// The file cannot be read.
        case unreadable
        /// The file holds no certificate (or key) in PEM form, or a damaged one.
        case malformed
        /// The certificate's validity has ended.
        case expired
        /// The certificate's validity has not begun.
        case notYetValid = "not-yet-valid"
        /// The private key is not the certificate's.
        case keyMismatch = "key-mismatch"
        /// The private key can be read by group or others.
        case exposed
        /// The certificate cannot serve a node: a CA certificate, or one not
        /// usable for both server and client authentication.
        case wrongPurpose = "wrong-purpose"
        /// The certificate does not chain to a certificate of the CA file.
        case untrusted
    }

    public var code: Code
    /// The configuration key of the file ("replication.tls.cert").
    public var key: String
    /// The file's path.
    public var path: String
    /// What is wrong with it, phrased to follow the path.
    public var reason: String

    public init(_ code: Code, key: String, path: String, _ reason: String) {
        self.code = code
        self.key = key
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(key): \(path) \(reason)" }
}
