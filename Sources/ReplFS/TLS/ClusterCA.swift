#if canImport(Glibc)
import Glibc
#endif
import Crypto
import Foundation
import SwiftASN1
import X509

/// A small certificate authority for one cluster, for operators who have no
/// PKI: `replfsd tls init DIR` makes it, `replfsd tls issue DIR NODE` signs
/// a node's certificate. Keys are ECDSA P-256; private keys are written
/// mode 0600 and never overwritten by accident.
///
/// A node certificate is both a server and a client certificate (every node
/// listens for replicas and dials its primary), with the node's addresses
/// and names as subject alternative names, which is what a dialing peer
/// checks. An existing PKI (cfssl, step-ca, Vault) works as well: ReplFS only
/// needs PEM files with those properties.
public struct ClusterCA: Sendable {
    public static let certificateFile = "ca.crt"
    public static let keyFile = "ca.key"

    /// The directory holding `ca.crt` and `ca.key`.
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    public var certificatePath: String { directory + "/" + ClusterCA.certificateFile }
    public var keyPath: String { directory + "/" + ClusterCA.keyFile }

    /// Makes a new CA in `directory` (created if missing), valid `days` days.
    /// Refuses to replace an existing CA, certificate or key: a node still
    /// trusting the old one would be cut off.
    public static func create(in directory: String, name: String = "ReplFS cluster CA", days: Int = 3650, now: Date = Date()) throws(ClusterCAError) -> ClusterCA {
        guard days > 0 else { throw ClusterCAError("--days \(days): a CA must be valid for at least one day") }
        let ca = ClusterCA(directory: directory)
        for path in [ca.certificatePath, ca.keyPath] {
            guard case .failure(.noEntry) = Syscall.lstat(at: AT_FDCWD, path) else {
                throw ClusterCAError("\(path) exists (not replaced: nodes trust it; make a new CA in another directory)")
            }
        }
        if case .failure(let errno) = Syscall.makeDirectories(directory) {
            throw ClusterCAError("cannot create \(directory): \(errno)")
        }
        let key = P256.Signing.PrivateKey()
        let subject: DistinguishedName
        let certificate: Certificate
        do {
            subject = try DistinguishedName { OrganizationName("ReplFS"); CommonName(name) }
            let publicKey = Certificate.PublicKey(key.publicKey)
            certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
                notValidBefore: now - 300, notValidAfter: now + Double(days) * 86_400, issuer: subject, subject: subject,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(hash: publicKey)
                },
                issuerPrivateKey: Certificate.PrivateKey(key))
        } catch {
            throw ClusterCAError("cannot make the CA certificate: \(error)")
        }
        try write(key.pemRepresentation, to: ca.keyPath, mode: 0o600, replace: false)
        try write(try pem(certificate), to: ca.certificatePath, mode: 0o644, replace: false)
        return ca
    }

    /// Signs a certificate for `node` with the given addresses and names;
    /// writes `NODE.crt` and `NODE.key` (0600) beside the CA and returns
    /// their paths. `replace` allows overwriting an earlier pair (rotation).
    public func issue(
        node: String, ipAddresses: [String], dnsNames: [String], days: Int = 825, replace: Bool = false, now: Date = Date()
    ) throws(ClusterCAError) -> (certificate: String, key: String) {
        guard days > 0 else { throw ClusterCAError("--days \(days): a certificate must be valid for at least one day") }
        return try issue(node: node, ipAddresses: ipAddresses, dnsNames: dnsNames, notBefore: now - 300, notAfter: now + Double(days) * 86_400, replace: replace)
    }

    /// Whether `node` can name a node's files: letters, digits, `.`, `_`
    /// and `-`, not starting with `.`, and not the CA's own `ca`.
    static func isNodeName(_ node: String) -> Bool {
        guard let first = node.first, first != ".", node != "ca", node.count <= 128 else { return false }
        return node.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") }
    }

    /// ``issue(node:ipAddresses:dnsNames:days:replace:now:)`` with explicit
    /// validity (tests make expired and not-yet-valid certificates with it).
    public func issue(
        node: String, ipAddresses: [String], dnsNames: [String], notBefore: Date, notAfter: Date, replace: Bool
    ) throws(ClusterCAError) -> (certificate: String, key: String) {
        guard ClusterCA.isNodeName(node) else {
            throw ClusterCAError("\"\(node)\" is not a node name (letters, digits, '.', '_' and '-'; not \"ca\")")
        }
        guard !ipAddresses.isEmpty || !dnsNames.isEmpty else {
            throw ClusterCAError("give the addresses peers dial this node at (--ip A, --dns NAME): they are what a peer checks")
        }
        let (caCertificate, caKey) = try load()
        // A certificate that outlives its CA would fail the day the CA expires.
        let notAfter = min(notAfter, caCertificate.notValidAfter)
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        for address in ipAddresses {
            guard let bytes = ClusterCA.addressBytes(address) else { throw ClusterCAError("--ip \(address) is not an IPv4 or IPv6 address") }
            names.append(.ipAddress(ASN1OctetString(contentBytes: bytes[...])))
        }
        let key = P256.Signing.PrivateKey()
        let certificate: Certificate
        do {
            let publicKey = Certificate.PublicKey(key.publicKey)
            let authorityKey = try caCertificate.extensions.subjectKeyIdentifier?.keyIdentifier
            certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey, notValidBefore: notBefore, notValidAfter: notAfter,
                issuer: caCertificate.subject, subject: try DistinguishedName { OrganizationName("ReplFS"); CommonName(node) },
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([.serverAuth, .clientAuth])
                    SubjectAlternativeNames(names)
                    SubjectKeyIdentifier(hash: publicKey)
                    AuthorityKeyIdentifier(keyIdentifier: authorityKey)
                },
                issuerPrivateKey: caKey)
        } catch {
            throw ClusterCAError("cannot make the certificate of \(node): \(error)")
        }
        let paths = (certificate: directory + "/" + node + ".crt", key: directory + "/" + node + ".key")
        try ClusterCA.write(key.pemRepresentation, to: paths.key, mode: 0o600, replace: replace)
        try ClusterCA.write(try ClusterCA.pem(certificate), to: paths.certificate, mode: 0o644, replace: true)
        return paths
    }

    private func load() throws(ClusterCAError) -> (Certificate, Certificate.PrivateKey) {
        let certificate: Certificate
        do {
            guard let first = try TLSIdentity.certificates(in: certificatePath, key: "ca").first else { throw ClusterCAError("no CA certificate") }
            certificate = first
        } catch {
            throw ClusterCAError("no CA in \(directory) (run replfsd tls init \(directory) first): \(error)")
        }
        guard case .success(let bytes) = Syscall.readFile(keyPath) else { throw ClusterCAError("cannot read \(keyPath)") }
        do {
            let key = try Certificate.PrivateKey(pemEncoded: String(decoding: bytes, as: UTF8.self))
            guard key.publicKey == certificate.publicKey else { throw ClusterCAError("\(keyPath) is not the key of \(certificatePath)") }
            guard case .isCertificateAuthority = try certificate.extensions.basicConstraints else {
                throw ClusterCAError("\(certificatePath) is not a CA certificate (no basicConstraints CA:TRUE)")
            }
            return (certificate, key)
        } catch let error as ClusterCAError {
            throw error
        } catch {
            throw ClusterCAError("\(keyPath) holds no private key that can be read: \(error)")
        }
    }

    private static func pem(_ certificate: Certificate) throws(ClusterCAError) -> String {
        do {
            return try certificate.serializeAsPEM().pemString + "\n"
        } catch {
            throw ClusterCAError("cannot encode a certificate: \(error)")
        }
    }

    /// Writes `text` through a temporary file renamed into place, so that a
    /// daemon watching the file never reads half of it. A key file is made
    /// 0600 before a byte of the key is written.
    private static func write(_ text: String, to path: String, mode: mode_t, replace: Bool) throws(ClusterCAError) {
        if !replace, case .success = Syscall.lstat(at: AT_FDCWD, path) {
            throw ClusterCAError("\(path) exists (not replaced)")
        }
        let temporary = path + ".tmp-\(getpid())"
        let bytes = Array(text.utf8)
        let written = Syscall.open(at: AT_FDCWD, temporary, flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode).flatMap { fd in
            defer { Syscall.close(fd) }
            return Syscall.fchmod(fd, mode: mode).flatMap { bytes.withUnsafeBytes { Syscall.write(fd, $0) } }.flatMap { Syscall.fsync(fd) }
        }.flatMap { Syscall.rename(at: AT_FDCWD, temporary, to: path) }
        if case .failure(let errno) = written {
            _ = Syscall.unlink(at: AT_FDCWD, temporary)
            throw ClusterCAError("cannot write \(path): \(errno)")
        }
    }

    static func addressBytes(_ address: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, address, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}

/// Why `replfsd tls init` or `tls issue` failed, in one line.
public struct ClusterCAError: Error, CustomStringConvertible, Sendable {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
