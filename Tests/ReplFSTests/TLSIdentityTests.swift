#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Testing

@testable import ReplFS

/// A cluster CA in a fresh temporary directory.
struct TLSFixture {
    let directory: String
    let ca: ClusterCA

    init() throws {
        directory = AdminFixture.temporaryDirectory()
        ca = try ClusterCA.create(in: directory)
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
        #expect(credentials.reloadIfChanged())
        #expect((9...10).contains(credentials.identity.daysToExpiry()))
        try "garbage\n".write(toFile: fixture.directory + "/node-a.crt", atomically: true, encoding: .utf8)
        #expect(credentials.reloadIfChanged() == false)
        #expect((9...10).contains(credentials.identity.daysToExpiry()))
        // Refused once: not retried until the files change again.
        #expect(credentials.reloadIfChanged() == false)
    }
}
