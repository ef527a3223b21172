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
        guard now >= leaf.notValidBefore else {
            throw TLSFileError(.notYetValid, key: certKey, path: files.cert, "is not valid before \(timestamp(leaf.notValidBefore))")
        }
        guard now <= leaf.notValidAfter else {
            throw TLSFileError(.expired, key: certKey, path: files.cert, "expired on \(timestamp(leaf.notValidAfter))")
        }
        guard privateKey.x509.publicKey == leaf.publicKey else {
            throw TLSFileError(.keyMismatch, key: key + ".key", path: files.key, "does not match the certificate in \(files.cert)")
        }
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

    /// Each certificate must be signed by the next one in its own file, and
    /// the last by a currently valid certificate of the CA file.
    private static func checkChain(_ chain: [Certificate], to authorities: [Certificate], files: Config.TLS, key: String, now: Date) throws(TLSFileError) {
        for (index, certificate) in chain.enumerated() {
            if index + 1 < chain.count {
                guard chain[index + 1].publicKey.isValidSignature(certificate.signature, for: certificate) else {
                    throw TLSFileError(.untrusted, key: key + ".cert", path: files.cert, "holds a certificate not signed by the one after it")
                }
                continue
            }
            let signers = authorities.filter { $0.subject == certificate.issuer && $0.publicKey.isValidSignature(certificate.signature, for: certificate) }
            guard let signer = signers.first else {
                throw TLSFileError(.untrusted, key: key + ".cert", path: files.cert, "is not signed by a certificate in \(files.ca) (another CA?)")
            }
            guard signers.contains(where: { now >= $0.notValidBefore && now <= $0.notValidAfter }) else {
                throw TLSFileError(.expired, key: key + ".ca", path: files.ca, "holds the CA certificate, which expired on \(timestamp(signer.notValidAfter))")
            }
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

    private static func readPrivateKey(_ path: String, key: String) throws(TLSFileError) -> (x509: Certificate.PrivateKey, pem: [UInt8]) {
        let text = try readText(path, key: key)
        do {
            return (try Certificate.PrivateKey(pemEncoded: text), Array(text.utf8))
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
