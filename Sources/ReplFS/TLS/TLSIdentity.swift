import Foundation
import NIOSSL
import SwiftASN1
import X509

/// A node's certificate chain, private key and trusted CA certificates, read
/// from their PEM files and checked before any connection uses them: the
/// certificate is valid now, the key is its key, and it chains to a
/// certificate of the CA file. BoringSSL would refuse most of these too, but
/// only at a peer's handshake, as an alert nobody reads; checking here turns
/// each into one line naming the file, at startup or at a rotation.
public struct TLSIdentity: Sendable {
    /// The files, as configured.
    public let files: Config.TLS
    /// The leaf certificate first, then any intermediates from the same file.
    let chain: [NIOSSLCertificate]
    let privateKey: NIOSSLPrivateKey
    let authorities: [NIOSSLCertificate]
    /// The leaf's subject, as `replfsd status` shows it ("CN=node-a").
    public let subject: String
    /// The end of the leaf's validity.
    public let notAfter: Date

    /// Reads and checks the three files; `key` names their configuration
    /// section in errors ("replication.tls").
    public static func load(_ files: Config.TLS, key: String, now: Date = Date()) throws(TLSFileError) -> TLSIdentity {
        let certKey = key + ".cert"
        let leafChain = try certificates(in: files.cert, key: certKey)
        let authorities = try certificates(in: files.ca, key: key + ".ca")
        let privateKey = try readPrivateKey(files.key, key: key + ".key")
        let leaf = leafChain[0]
        try checkDates(leaf, path: files.cert, key: certKey, now: now, what: "")
        guard privateKey.x509.publicKey == leaf.publicKey else {
            throw TLSFileError(.keyMismatch, key: key + ".key", path: files.key, "does not match the certificate in \(files.cert)")
        }
        try checkPurpose(leaf, path: files.cert, key: certKey)
        try checkChain(leafChain, to: authorities, files: files, key: key, now: now)
        do {
            return TLSIdentity(
                files: files,
                chain: try leafChain.map { try NIOSSLCertificate(bytes: try derBytes($0), format: .der) },
                privateKey: try NIOSSLPrivateKey(bytes: privateKey.pem, format: .pem),
                authorities: try authorities.map { try NIOSSLCertificate(bytes: try derBytes($0), format: .der) },
                subject: leaf.subject.description, notAfter: leaf.notValidAfter)
        } catch {
            throw TLSFileError(.malformed, key: certKey, path: files.cert, "cannot be loaded by BoringSSL: \(error)")
        }
    }

    /// Days until ``notAfter`` (negative once expired), rounded down.
    public func daysToExpiry(now: Date = Date()) -> Int {
        Int((notAfter.timeIntervalSince(now) / 86_400).rounded(.down))
    }

    /// Each certificate must be signed by the next one in its own file, the
    /// last by a certificate of the CA file, and that one must lead, within
    /// the CA file, to a self-signed root (BoringSSL verifies up to a root,
    /// not to an intermediate); every certificate on the way must be valid now.
    private static func checkChain(_ chain: [Certificate], to authorities: [Certificate], files: Config.TLS, key: String, now: Date) throws(TLSFileError) {
        for index in chain.indices.dropFirst() {
            guard chain[index].publicKey.isValidSignature(chain[index - 1].signature, for: chain[index - 1]) else {
                throw TLSFileError(.untrusted, key: key + ".cert", path: files.cert, "holds a certificate not signed by the one after it")
            }
            try checkDates(chain[index], path: files.cert, key: key + ".cert", now: now, what: "holds an intermediate certificate that ")
        }
        var current = chain[chain.count - 1]
        var steps = 0
        while !isSelfSigned(current) {
            guard let signer = authorities.first(where: { $0.subject == current.issuer && $0.publicKey.isValidSignature(current.signature, for: current) })
            else {
                let reason =
                    steps == 0
                    ? "is not signed by a certificate in \(files.ca) (another CA?)"
                    : "chains to \(current.subject) in \(files.ca), whose issuer is not in that file (it must hold the root)"
                throw TLSFileError(.untrusted, key: key + ".cert", path: files.cert, reason)
            }
            try checkDates(signer, path: files.ca, key: key + ".ca", now: now, what: "holds the CA certificate \(signer.subject), which ")
            current = signer
            steps += 1
            guard steps <= 8 else { throw TLSFileError(.untrusted, key: key + ".ca", path: files.ca, "holds a chain longer than 8 certificates") }
        }
        if steps == 0 {
            throw TLSFileError(.wrongPurpose, key: key + ".cert", path: files.cert, "is self-signed: a node needs a certificate signed by the CA in \(files.ca)")
        }
    }

    private static func isSelfSigned(_ certificate: Certificate) -> Bool {
        certificate.subject == certificate.issuer && certificate.publicKey.isValidSignature(certificate.signature, for: certificate)
    }

    /// `what` prefixes the reason ("holds the CA certificate X, which ").
    private static func checkDates(_ certificate: Certificate, path: String, key: String, now: Date, what: String) throws(TLSFileError) {
        guard now >= certificate.notValidBefore else {
            throw TLSFileError(.notYetValid, key: key, path: path, "\(what)is not valid before \(timestamp(certificate.notValidBefore))")
        }
        guard now <= certificate.notValidAfter else {
            throw TLSFileError(.expired, key: key, path: path, "\(what)expired on \(timestamp(certificate.notValidAfter))")
        }
    }

    /// A node's certificate is no CA's, and, if it limits its uses, allows
    /// both server and client authentication: every node listens and dials.
    private static func checkPurpose(_ leaf: Certificate, path: String, key: String) throws(TLSFileError) {
        let constraints: BasicConstraints?
        let usages: ExtendedKeyUsage?
        do {
            constraints = try leaf.extensions.basicConstraints
            usages = try leaf.extensions.extendedKeyUsage
        } catch {
            throw TLSFileError(.malformed, key: key, path: path, "has extensions that cannot be parsed: \(error)")
        }
        if case .isCertificateAuthority = constraints {
            throw TLSFileError(.wrongPurpose, key: key, path: path, "is a CA certificate, not a node's (replfsd tls issue makes one)")
        }
        if let usages, !(usages.contains(.serverAuth) && usages.contains(.clientAuth)) {
            throw TLSFileError(
                .wrongPurpose, key: key, path: path, "cannot be used for both server and client authentication (every node listens and dials)")
        }
    }

    /// Every certificate of a PEM file, in order; at least one.
    static func certificates(in path: String, key: String) throws(TLSFileError) -> [Certificate] {
        let text = try readText(path, key: key)
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: text).filter { $0.discriminator == "CERTIFICATE" }
        } catch {
            throw TLSFileError(.malformed, key: key, path: path, "is not a PEM file: \(error)")
        }
        guard !documents.isEmpty else { throw TLSFileError(.malformed, key: key, path: path, "holds no certificate (no BEGIN CERTIFICATE block)") }
        do {
            return try documents.map { try Certificate(pemDocument: $0) }
        } catch {
            throw TLSFileError(.malformed, key: key, path: path, "holds a certificate that cannot be parsed: \(error)")
        }
    }

    /// The first private key of a PEM file (a file from `openssl ecparam
    /// -genkey` holds the curve's parameters first; a combined file, the
    /// certificate). A key that group or others can read is refused, as
    /// the token file is: a secret others can read is no secret.
    private static func readPrivateKey(_ path: String, key: String) throws(TLSFileError) -> (x509: Certificate.PrivateKey, pem: [UInt8]) {
        if case .success(let info) = Syscall.stat(path), info.st_mode & 0o077 != 0 {
            throw TLSFileError(
                .exposed, key: key, path: path, "is accessible by group or others (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 \(path)")
        }
        let text = try readText(path, key: key)
        do {
            guard let block = try PEMDocument.parseMultiple(pemString: text).first(where: { $0.discriminator.hasSuffix("PRIVATE KEY") }) else {
                throw TLSFileError(.malformed, key: key, path: path, "holds no private key (no BEGIN ... PRIVATE KEY block)")
            }
            return (try Certificate.PrivateKey(pemDocument: block), Array(block.pemString.utf8))
        } catch let error as TLSFileError {
            throw error
        } catch {
            throw TLSFileError(.malformed, key: key, path: path, "holds no private key that can be read (PEM, PKCS#8 or SEC1): \(error)")
        }
    }

    private static func readText(_ path: String, key: String) throws(TLSFileError) -> String {
        switch Syscall.readFile(path) {
        case .success(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .failure(let errno): throw TLSFileError(.unreadable, key: key, path: path, "cannot be read: \(errno)")
        }
    }

    private static func derBytes(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    static func timestamp(_ date: Date) -> String {
        ISO8601DateFormatter().string(from: date)
    }
}
