#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Crypto
import Logging
import SwiftASN1
import X509
import Testing

@testable import ReplFS

/// A cluster CA in a fresh temporary directory.
struct TLSFixture {
    let directory: String
    let ca: ClusterCA

    init(days: Int = 3650) throws {
        directory = AdminFixture.temporaryDirectory()
        ca = try ClusterCA.create(in: directory, days: days)
    }

    func files(_ node: String, ca path: String? = nil) -> Config.TLS {
        Config.TLS(cert: directory + "/\(node).crt", key: directory + "/\(node).key", ca: path ?? ca.certificatePath)
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

@Suite("TLS identity and cluster CA")
struct TLSIdentityTests {
    @Test("a node certificate from tls issue loads: subject, expiry, SANs checked by a peer")
    func issuedCertificateLoads() throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let paths = try fixture.ca.issue(node: "node-a", ipAddresses: ["127.0.0.1", "::1"], dnsNames: ["node-a.example"], days: 30)
        #expect(paths.certificate == fixture.directory + "/node-a.crt")
        let identity = try TLSIdentity.load(fixture.files("node-a"), key: "replication.tls")
        #expect(identity.subject.contains("CN=node-a"))
        #expect((29...30).contains(identity.daysToExpiry()))
        for key in [paths.key, fixture.ca.keyPath] {
            let mode = try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? NSNumber
            #expect(mode?.intValue == 0o600, "\(key)")
        }
    }

    @Test("each bad input is one line naming the file and the reason")
    func badInputs() throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let now = Date()
        _ = try fixture.ca.issue(node: "expired", ipAddresses: ["127.0.0.1"], dnsNames: [], notBefore: now - 86_400 * 10, notAfter: now - 86_400, replace: false)
        _ = try fixture.ca.issue(node: "early", ipAddresses: ["127.0.0.1"], dnsNames: [], notBefore: now + 86_400, notAfter: now + 86_400 * 10, replace: false)
        _ = try fixture.ca.issue(node: "good", ipAddresses: ["127.0.0.1"], dnsNames: [], days: 10)
        _ = try fixture.ca.issue(node: "other-key", ipAddresses: ["127.0.0.1"], dnsNames: [], days: 10)
        let stranger = try TLSFixture()
        defer { stranger.remove() }
        _ = try stranger.ca.issue(node: "foreign", ipAddresses: ["127.0.0.1"], dnsNames: [], days: 10)
        let empty = fixture.directory + "/empty.crt"
        try "no certificate here\n".write(toFile: empty, atomically: true, encoding: .utf8)

        func failure(_ files: Config.TLS) -> TLSFileError? {
            do {
                _ = try TLSIdentity.load(files, key: "replication.tls")
                return nil
            } catch {
                return error
            }
        }
        let expired = failure(fixture.files("expired"))
        #expect(expired?.code == .expired)
        #expect(expired.map { "\($0)".hasPrefix("replication.tls.cert: \(fixture.directory)/expired.crt expired on ") } == true, "\(String(describing: expired))")
        #expect(failure(fixture.files("early"))?.code == .notYetValid)
        let foreign = failure(Config.TLS(cert: stranger.directory + "/foreign.crt", key: stranger.directory + "/foreign.key", ca: fixture.ca.certificatePath))
        #expect(foreign?.code == .untrusted)
        #expect(foreign.map { "\($0)".contains("is not signed by a certificate in \(fixture.ca.certificatePath)") } == true)
        var mismatched = fixture.files("good")
        mismatched.key = fixture.directory + "/other-key.key"
        let mismatch = failure(mismatched)
        #expect(mismatch?.code == .keyMismatch)
        #expect(mismatch.map { "\($0)" } == "replication.tls.key: \(fixture.directory)/other-key.key does not match the certificate in \(fixture.directory)/good.crt")
        let noCA = failure(fixture.files("good", ca: empty))
        #expect(noCA.map { "\($0)" } == "replication.tls.ca: \(empty) holds no certificate (no BEGIN CERTIFICATE block)")
        var missing = fixture.files("good")
        missing.cert = fixture.directory + "/missing.crt"
        #expect(failure(missing)?.code == .unreadable)
        #expect(failure(fixture.files("good")) == nil)
    }

    @Test("tls init and tls issue never overwrite a key by accident; issue names what it needs")
    func refusals() throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        #expect(throws: ClusterCAError.self) { try ClusterCA.create(in: fixture.directory) }
        _ = try fixture.ca.issue(node: "node-a", ipAddresses: ["10.0.0.1"], dnsNames: [])
        #expect(throws: ClusterCAError.self) { try fixture.ca.issue(node: "node-a", ipAddresses: ["10.0.0.1"], dnsNames: []) }
        _ = try fixture.ca.issue(node: "node-a", ipAddresses: ["10.0.0.1"], dnsNames: [], replace: true)
        #expect(throws: ClusterCAError.self) { try fixture.ca.issue(node: "node-b", ipAddresses: [], dnsNames: []) }
        #expect(throws: ClusterCAError.self) { try fixture.ca.issue(node: "node-b", ipAddresses: ["10.0.0"], dnsNames: []) }
        #expect(throws: ClusterCAError.self) { try ClusterCA(directory: fixture.directory + "/none").issue(node: "x", ipAddresses: ["10.0.0.1"], dnsNames: []) }
        // The CA's own files are not a node's, and names stay plain.
        for name in ["ca", "bad\nname", ".hidden", "a b", ""] {
            #expect(throws: ClusterCAError.self, "\(name)") { try fixture.ca.issue(node: name, ipAddresses: ["10.0.0.1"], dnsNames: [], replace: true) }
        }
        #expect(throws: ClusterCAError.self) { try fixture.ca.issue(node: "node-c", ipAddresses: ["10.0.0.1"], dnsNames: [], days: 0) }
        // A CA whose key was moved off the machine is not replaced either.
        try FileManager.default.removeItem(atPath: fixture.ca.keyPath)
        let before = try String(contentsOfFile: fixture.ca.certificatePath, encoding: .utf8)
        #expect(throws: ClusterCAError.self) { try ClusterCA.create(in: fixture.directory) }
        #expect(try String(contentsOfFile: fixture.ca.certificatePath, encoding: .utf8) == before)
        // A certificate never outlives its CA.
        let short = try TLSFixture(days: 30)
        defer { short.remove() }
        _ = try short.ca.issue(node: "node-a", ipAddresses: ["10.0.0.1"], dnsNames: [], days: 825)
        let identity = try TLSIdentity.load(short.files("node-a"), key: "replication.tls")
        #expect((29...30).contains(identity.daysToExpiry()))
    }

    @Test("a rotation is taken when the files change; a bad new file is refused and the old identity stays")
    func rotation() throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        _ = try fixture.ca.issue(node: "node-a", ipAddresses: ["127.0.0.1"], dnsNames: [], days: 100)
        let credentials = try TLSCredentials(files: fixture.files("node-a"), key: "replication.tls", logger: Logger(label: "tls-test"))
        #expect(credentials.reloadIfChanged() == false)
        #expect((99...100).contains(credentials.identity.daysToExpiry()))
        _ = try fixture.ca.issue(node: "node-a", ipAddresses: ["127.0.0.1"], dnsNames: [], days: 10, replace: true)
        // Read once the files look the same at two checks in a row.
        #expect(credentials.reloadIfChanged() == false)
        #expect((99...100).contains(credentials.identity.daysToExpiry()))
        #expect(credentials.reloadIfChanged())
        #expect((9...10).contains(credentials.identity.daysToExpiry()))
        try "garbage\n".write(toFile: fixture.directory + "/node-a.crt", atomically: true, encoding: .utf8)
        #expect(credentials.reloadIfChanged(settled: false) == false)
        #expect((9...10).contains(credentials.identity.daysToExpiry()))
        // Refused once: not retried until the files change again.
        #expect(credentials.reloadIfChanged() == false)
        #expect(credentials.reloadIfChanged() == false)
        // A key made readable by others is refused too (its mode change is seen).
        _ = try fixture.ca.issue(node: "node-a", ipAddresses: ["127.0.0.1"], dnsNames: [], days: 20, replace: true)
        chmod(fixture.directory + "/node-a.key", 0o644)
        #expect(credentials.reloadIfChanged(settled: false) == false)
        chmod(fixture.directory + "/node-a.key", 0o600)
        #expect(credentials.reloadIfChanged(settled: false))
        #expect((19...20).contains(credentials.identity.daysToExpiry()))
    }
}

/// Certificates `replfsd tls` would never make (an intermediate CA, a
/// server-only certificate), signed with swift-certificates directly, to
/// check what ``TLSIdentity`` refuses.
enum TestCertificates {
    struct Issued {
        let certificate: Certificate
        let key: P256.Signing.PrivateKey
    }

    static func make(
        _ name: String, issuer: Issued?, isCA: Bool, usages: [ExtendedKeyUsage.Usage]? = [.serverAuth, .clientAuth],
        notBefore: Date = Date() - 300, notAfter: Date = Date() + 86_400 * 30
    ) throws -> Issued {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName(name) }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: issuer?.certificate.subject ?? subject, subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(isCA ? BasicConstraints.isCertificateAuthority(maxPathLength: nil) : BasicConstraints.notCertificateAuthority)
                if !isCA, let usages { try ExtendedKeyUsage(usages) }
                if !isCA { SubjectAlternativeNames([.dnsName(name)]) }
            },
            issuerPrivateKey: Certificate.PrivateKey(issuer?.key ?? key))
        return Issued(certificate: certificate, key: key)
    }

    static func write(_ certificates: [Issued], to path: String) throws {
        try certificates.map { try $0.certificate.serializeAsPEM().pemString + "\n" }.joined().write(toFile: path, atomically: true, encoding: .utf8)
    }

    static func writeKey(_ issued: Issued, to path: String, prefix: String = "") throws {
        try (prefix + issued.key.pemRepresentation + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
    }
}

@Suite("TLS identity: certificates from other PKIs")
struct TLSIdentityChainTests {
    @Test("intermediates, purposes, roots and key files as other PKIs make them")
    func otherPKIs() throws {
        let directory = AdminFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let root = try TestCertificates.make("root", issuer: nil, isCA: true)
        let intermediate = try TestCertificates.make("intermediate", issuer: root, isCA: true)
        let leaf = try TestCertificates.make("node-a", issuer: intermediate, isCA: false)
        let serverOnly = try TestCertificates.make("server-only", issuer: root, isCA: false, usages: [.serverAuth])
        let noUsages = try TestCertificates.make("any-use", issuer: root, isCA: false, usages: nil)
        let oldIntermediate = try TestCertificates.make("old", issuer: root, isCA: true, notBefore: Date() - 86_400 * 60, notAfter: Date() - 86_400)
        let underOld = try TestCertificates.make("node-b", issuer: oldIntermediate, isCA: false)
        func path(_ name: String) -> String { directory + "/" + name }
        try TestCertificates.write([root], to: path("root.crt"))
        try TestCertificates.write([intermediate], to: path("intermediate.crt"))
        try TestCertificates.write([leaf, intermediate], to: path("chain.crt"))
        try TestCertificates.write([leaf], to: path("leaf.crt"))
        try TestCertificates.write([serverOnly], to: path("server-only.crt"))
        try TestCertificates.write([noUsages], to: path("any-use.crt"))
        try TestCertificates.write([underOld, oldIntermediate], to: path("old-chain.crt"))
        try TestCertificates.writeKey(leaf, to: path("leaf.key"), prefix: "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n")
        try TestCertificates.writeKey(serverOnly, to: path("server-only.key"))
        try TestCertificates.writeKey(noUsages, to: path("any-use.key"))
        try TestCertificates.writeKey(underOld, to: path("old.key"))
        try TestCertificates.writeKey(root, to: path("root.key"))

        func load(_ cert: String, _ key: String, ca: String) -> TLSFileError? {
            do {
                _ = try TLSIdentity.load(Config.TLS(cert: path(cert), key: path(key), ca: path(ca)), key: "replication.tls")
                return nil
            } catch {
                return error
            }
        }
        // A leaf with its intermediate, the root in the CA file; the key after the curve's parameters.
        #expect(load("chain.crt", "leaf.key", ca: "root.crt") == nil)
        // Without a root in the CA file BoringSSL cannot verify: refused at load.
        let noRoot = load("leaf.crt", "leaf.key", ca: "intermediate.crt")
        #expect(noRoot?.code == .untrusted)
        #expect(noRoot.map { "\($0)".contains("whose issuer is not in that file") } == true, "\(String(describing: noRoot))")
        // The leaf alone, the intermediate missing everywhere.
        #expect(load("leaf.crt", "leaf.key", ca: "root.crt")?.code == .untrusted)
        // Server-only: a node also dials.
        #expect(load("server-only.crt", "server-only.key", ca: "root.crt")?.code == .wrongPurpose)
        // No extended key usage at all: any use, accepted.
        #expect(load("any-use.crt", "any-use.key", ca: "root.crt") == nil)
        // The CA's own certificate as a node's.
        #expect(load("root.crt", "root.key", ca: "root.crt")?.code == .wrongPurpose)
        // An expired intermediate in the certificate file.
        let expired = load("old-chain.crt", "old.key", ca: "root.crt")
        #expect(expired?.code == .expired)
        #expect(expired.map { "\($0)".contains("holds an intermediate certificate that expired on") } == true, "\(String(describing: expired))")
        // A key others can read.
        chmod(path("leaf.key"), 0o644)
        #expect(load("chain.crt", "leaf.key", ca: "root.crt")?.code == .exposed)
    }
}
