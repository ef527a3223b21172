import Foundation
import NIOCore
import NIOPosix
import NIOSSL
@testable import ReplFS
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// Replication over mutual TLS with the cluster CA of `replfsd tls`.
    @Suite("TLS")
    struct TLSTests {
        /// A marker in the rows and in the plain file: it must never cross the network in clear.
        static let marker = "TLS-PLAINTEXT-MARKER-7f3a9c"

        @Test("the stream starts with a TLS handshake, carries no row or key-file content in clear, and the replica converges")
        func encryptedStream() throws {
            let needle = Array(Self.marker.utf8)
            // Without TLS the same workload shows the marker on the wire: the check below can fail.
            let clear = try Self.recordedStreams(tls: false)
            #expect(clear.contains { Self.contains($0, needle) }, "the marker crosses in clear without replication.tls")

            let streams = try Self.recordedStreams(tls: true)
            for stream in streams {
                // A TLS record: handshake (22) on both sides first, version 3.x.
                #expect(stream.count >= 5 && stream[0] == 0x16 && stream[1] == 0x03, "starts \(Array(stream.prefix(5)))")
                #expect(!Self.contains(stream, needle), "row or key-file content in clear on the wire")
            }
        }

        /// Writes rows and a key file holding ``marker`` on a primary whose
        /// replica reaches it through a relay, waits until the replica holds
        /// both, and returns every non-empty stream the relay carried.
        static func recordedStreams(tls: Bool) throws -> [[UInt8]] {
            let relayed = try RelayedCluster(size: 2, tls: tls)
            defer { relayed.destroy() }
            let (cluster, relay) = (relayed.cluster, relayed.relay)
            try "privkey:\(marker)\n".write(toFile: cluster.primary.mount + "/noise_private.key", atomically: false, encoding: .utf8)
            _ = try Command.sqlite(cluster.primary.mount + "/db.sqlite", """
                PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) INSERT INTO t SELECT i, '\(marker)-' || hex(randomblob(8)) FROM n;
                """)
            try cluster.waitForConvergence(["db.sqlite"])
            try waitUntil(timeout: 30, "the key file reaches the replica") {
                (try? String(contentsOfFile: cluster.replicas[0].mount + "/noise_private.key", encoding: .utf8)) == "privkey:\(marker)\n"
            }
            let streams = (relay.sent + relay.received).filter { !$0.isEmpty }
            #expect(streams.count >= 2, "the replica reached the primary through the relay")
            if tls {
                let status = try cluster.primary.status()
                #expect(status.tls?.subject.contains("CN=node-a") == true)
                #expect(try cluster.primary.admin(["status"]).output.contains("tls        on, "))
            } else {
                #expect(try cluster.primary.admin(["status"]).output.contains("tls        off"))
            }
            return streams
        }

        @Test("a plain TCP client, a certificate of another CA and an expired one are refused; the real replica is unaffected")
        func refusals() throws {
            try withTLSCluster(size: 2) { cluster in
                let pki = cluster.root + "/pki"
                _ = try Command.sqlite(cluster.primary.mount + "/db.sqlite", "CREATE TABLE t(v); INSERT INTO t VALUES (1);")
                try cluster.waitForConvergence(["db.sqlite"])
                let port = cluster.ports[0]

                // Plain TCP: whatever comes back is not a replication frame (at most a TLS alert).
                let plain = try #require(Stranger(port: port))
                let hello = ReplicationMessage.hello(
                    .init(version: ReplicationMessage.protocolVersion, cluster: "replfs", node: "x", nodeID: 1, nonce: Array(repeating: 2, count: 16)))
                _ = ReplicationFrameCodec.frame(hello, allocator: ByteBufferAllocator()).withUnsafeReadableBytes { plain.send($0) }
                let answer = plain.readAll(timeout: 10)
                plain.close()
                #expect(answer.isEmpty || answer[0] == 0x15, "a plain client got \(Array(answer.prefix(8)))")

                // Another CA's certificate, and an expired one of the right CA.
                try Cluster.tls(["init", cluster.root + "/pki2"])
                try Cluster.tls(["issue", cluster.root + "/pki2", "intruder", "--ip", "127.0.0.1"])
                let now = Date()
                _ = try ClusterCA(directory: pki).issue(
                    node: "expired", ipAddresses: ["127.0.0.1"], dnsNames: [], notBefore: now - 86_400 * 30, notAfter: now - 86_400, replace: false)
                for (name, directory) in [("intruder", cluster.root + "/pki2"), ("expired", pki)] {
                    let outcome = try TLSPeer.connect(
                        port: port, certificate: "\(directory)/\(name).crt", key: "\(directory)/\(name).key", trust: pki + "/ca.crt", send: hello)
                    #expect(outcome.applicationBytes == 0, "\(name) received \(outcome.applicationBytes) bytes of the stream")
                    #expect(outcome.closed, "\(name)'s connection was closed")
                }
                try waitUntil(timeout: 10, "the primary logs the refusals") {
                    cluster.primary.currentLog.components(separatedBy: "refused connection").count > 1
                }

                // The real replica follows on.
                _ = try Command.sqlite(cluster.primary.mount + "/db.sqlite", "INSERT INTO t VALUES (2);")
                try cluster.waitForConvergence(["db.sqlite"])

                // The same bad files at startup: exit 2, one line naming the file.
                let node = try Node(name: "node-x", root: cluster.root + "/node-x")
                defer { node.destroy() }
                for (name, reason) in [("expired", "expired on"), ("intruder", "is not signed by a certificate in")] {
                    let directory = name == "intruder" ? cluster.root + "/pki2" : pki
                    let own = Cluster.freePorts(1)[0]
                    try node.writeConfig("""
                        node: node-x
                        mount: \(node.mount)
                        data: \(node.data)
                        replication:
                          listen: 127.0.0.1:\(own)
                          tls: {cert: \(directory)/\(name).crt, key: \(directory)/\(name).key, ca: \(pki)/ca.crt}
                        lease:
                          static:
                            primary: node-a
                            peers: {node-a: 127.0.0.1:\(port), node-x: 127.0.0.1:\(own)}
                        """)
                    let result = try Command.run(TestEnvironment.replfsd, ["mount", "--config", node.configPath], timeout: 30)
                    #expect(result.status == 2, "\(result)")
                    #expect(result.error.contains("replication.tls.cert: \(directory)/\(name).crt \(reason)"), "\(result)")
                    #expect(!Node.isMounted(node.mount))
                }
            }
        }

        @Test("certificates and CA bundles are rotated by replacing the files, without a restart; a bad file is refused and the old one stays")
        func rotation() throws {
            let relayed = try RelayedCluster(size: 2)
            defer { relayed.destroy() }
            let (cluster, relay) = (relayed.cluster, relayed.relay)
            let pki = cluster.root + "/pki"
            var row = 0
            func writeAndConverge(_ what: String) throws {
                row += 1
                _ = try Command.sqlite(cluster.primary.mount + "/db.sqlite", "CREATE TABLE IF NOT EXISTS t(v); INSERT INTO t VALUES (\(row));")
                do {
                    try cluster.waitForConvergence(["db.sqlite"], timeout: 30)
                } catch {
                    throw Failure("\(what): \(error)\n\(cluster.currentLogs)")
                }
            }
            func waitForDays(_ range: ClosedRange<Int>, _ what: String) throws {
                for node in cluster.nodes {
                    try waitUntil(timeout: 20, "\(node.name) uses \(what)") { (try? node.status().tls?.daysToExpiry).map(range.contains) == true }
                }
            }
            try writeAndConverge("before any rotation")

            // 1. New certificates from the same CA (10 days: the expiry warning is logged).
            for node in cluster.nodes {
                try Cluster.tls(["issue", pki, node.name, "--ip", "127.0.0.1", "--days", "10", "--force"])
            }
            try waitForDays(9...10, "the re-issued certificate")
            #expect(cluster.primary.currentLog.contains("the TLS certificate expires soon"))
            relay.cutAll()
            try writeAndConverge("after re-issuing from the same CA")

            // 2. A new CA: first a bundle of both, then certificates from the new one.
            let next = cluster.root + "/pki2"
            try Cluster.tls(["init", next])
            for node in cluster.nodes { try Cluster.tls(["issue", next, node.name, "--ip", "127.0.0.1", "--days", "20"]) }
            let bundle = try String(contentsOfFile: pki + "/ca.crt", encoding: .utf8) + String(contentsOfFile: next + "/ca.crt", encoding: .utf8)
            try bundle.write(toFile: pki + "/ca.crt", atomically: true, encoding: .utf8)
            for node in cluster.nodes {
                for suffix in ["key", "crt"] {
                    // As an operator would install them: mode 0600, renamed into place.
                    let temporary = "\(pki)/.\(node.name).\(suffix).new"
                    try String(contentsOfFile: "\(next)/\(node.name).\(suffix)", encoding: .utf8).write(toFile: temporary, atomically: false, encoding: .utf8)
                    chmod(temporary, 0o600)
                    guard rename(temporary, "\(pki)/\(node.name).\(suffix)") == 0 else { throw Failure("rename \(temporary): errno \(errno)") }
                }
            }
            try waitForDays(19...20, "the new CA's certificate")
            relay.cutAll()
            try writeAndConverge("with the bundle of both CAs")

            // 3. The old CA removed from the bundle: only the new certificates are left to trust.
            func reloads(_ node: Node) -> Int { node.currentLog.components(separatedBy: "TLS files changed: new connections use them").count - 1 }
            let before = cluster.nodes.map(reloads)
            try String(contentsOfFile: next + "/ca.crt", encoding: .utf8).write(toFile: pki + "/ca.crt", atomically: true, encoding: .utf8)
            try waitUntil(timeout: 20, "both nodes read the new CA file") {
                zip(cluster.nodes, before).allSatisfy { reloads($0) > $1 }
            }
            relay.cutAll()
            try writeAndConverge("with only the new CA")

            // 4. A damaged certificate file is refused; the one in use stays.
            try "not a certificate\n".write(toFile: pki + "/node-a.crt", atomically: true, encoding: .utf8)
            try waitUntil(timeout: 20, "the damaged file is refused") {
                cluster.primary.currentLog.contains("TLS files changed but cannot be used")
            }
            #expect(try cluster.primary.status().tls.map { (19...20).contains($0.daysToExpiry) } == true)
            relay.cutAll()
            try writeAndConverge("after a damaged certificate file")
        }

        @Test("the dialer checks that the listener's certificate names the address it dialed, or replication.tls.server-name; no token needed")
        func serverIdentity() throws {
            let cluster = try Cluster(size: 2, tls: true, token: false)
            defer { cluster.destroy() }
            let pki = cluster.root + "/pki"
            // node-a's certificate names node-a, not the address its peers dial.
            try Cluster.tls(["issue", pki, "node-a", "--dns", "node-a", "--days", "40", "--force"])
            let metricsPort = Cluster.freePorts(1)[0]
            let config = try String(contentsOfFile: cluster.primary.configPath, encoding: .utf8)
            try cluster.primary.writeConfig(config + "\nmetrics:\n  listen: 127.0.0.1:\(metricsPort)\n")
            try cluster.start()
            _ = try Command.sqlite(cluster.primary.mount + "/db.sqlite", "CREATE TABLE t(v); INSERT INTO t VALUES (1);")
            let replica = cluster.replicas[0]
            var reason = ""
            try waitUntil(timeout: 20, "the replica refuses node-a's certificate") {
                reason = (try? replica.status().upstream?.lastError ?? nil) ?? ""
                return !reason.isEmpty
            }
            #expect(reason.contains("certificate does not name 127.0.0.1"), "\(reason)")
            #expect(!FileManager.default.fileExists(atPath: replica.mount + "/db.sqlite"))

            // With server-name, the name is checked instead and the replica follows.
            try replica.stop()
            let text = try String(contentsOfFile: replica.configPath, encoding: .utf8)
            try replica.writeConfig(text.replacingOccurrences(of: "ca: \(pki)/ca.crt}", with: "ca: \(pki)/ca.crt, server-name: node-a}"))
            try replica.start()
            try cluster.waitForConvergence(["db.sqlite"])

            // The certificate's expiry is a metric (Unix seconds), as status shows it.
            let tls = try #require(try cluster.primary.status().tls)
            #expect((39...40).contains(tls.daysToExpiry))
            var line = ""
            try waitUntil(timeout: 10, interval: 0.2, "the expiry is exported") {
                let body = (try? Command.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(metricsPort)/metrics"]).output) ?? ""
                line = body.split(separator: "\n").first { $0.hasPrefix("replfs_tls_certificate_expiry_timestamp_seconds ") }.map(String.init) ?? ""
                return !line.isEmpty
            }
            let exported = Double(line.split(separator: " ").last ?? "") ?? 0
            let notAfter = try #require(ISO8601DateFormatter().date(from: tls.notAfter))
            #expect(abs(exported - notAfter.timeIntervalSince1970) < 2, "\(line) vs \(tls.notAfter)")
        }

        @Test("etcd over TLS with client certificates: the cluster elects and replicates; no certificate or another CA's is refused", .enabled(if: EtcdServer.isInstalled))
        func etcdOverTLS() throws {
            let pki = NSTemporaryDirectory() + "replfs-etcd-pki-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: pki) }
            try Cluster.tls(["init", pki])
            try Cluster.tls(["issue", pki, "etcd", "--ip", "127.0.0.1"])
            try Cluster.tls(["issue", pki, "replfs", "--dns", "replfs"])
            let client = Config.TLS(cert: pki + "/replfs.crt", key: pki + "/replfs.key", ca: pki + "/ca.crt")
            let etcd = try EtcdServer(tls: .init(server: Config.TLS(cert: pki + "/etcd.crt", key: pki + "/etcd.key", ca: pki + "/ca.crt"), client: client))
            defer { etcd.stop() }
            #expect(etcd.endpoint.hasPrefix("https://"))

            // Without a client certificate, or with one of another CA: refused.
            let bare = try EtcdClient(endpoints: [etcd.endpoint], requestTimeout: .seconds(2))
            defer { bare.shutdown() }
            #expect(throws: EtcdError.self) { try bare.get("/x") }
            try Cluster.tls(["init", pki + "/other"])
            try Cluster.tls(["issue", pki + "/other", "stranger", "--dns", "stranger"])
            // It trusts etcd's CA too, so only etcd can be the one refusing.
            let bundle = pki + "/both.crt"
            try (String(contentsOfFile: pki + "/ca.crt", encoding: .utf8) + String(contentsOfFile: pki + "/other/ca.crt", encoding: .utf8))
                .write(toFile: bundle, atomically: true, encoding: .utf8)
            let foreign = try EtcdClient(
                endpoints: [etcd.endpoint], requestTimeout: .seconds(2),
                tls: TLSIdentity.load(Config.TLS(cert: pki + "/other/stranger.crt", key: pki + "/other/stranger.key", ca: bundle), key: "test"))
            defer { foreign.shutdown() }
            #expect(throws: EtcdError.self) { try foreign.get("/x") }

            // replfsd with lease.etcd.tls: a primary is elected and the replica follows.
            let cluster = try Cluster(size: 2, lease: .etcd(endpoint: etcd.endpoint, tls: client))
            defer { cluster.destroy() }
            try cluster.start()
            let primary = try cluster.waitForPrimary()
            _ = try Command.sqlite(primary.mount + "/db.sqlite", "CREATE TABLE t(v); INSERT INTO t VALUES (1);")
            try cluster.waitForConvergence(["db.sqlite"])
        }

        static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
            guard haystack.count >= needle.count else { return false }
            for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
                if haystack[start..<start + needle.count].elementsEqual(needle) { return true }
            }
            return false
        }
    }
}

/// A started TLS cluster (node-a primary) whose replicas reach node-a
/// through a ``RecordingRelay``.
final class RelayedCluster {
    let cluster: Cluster
    let relay: RecordingRelay

    init(size: Int, tls: Bool = true) throws {
        let ports = Cluster.freePorts(size)
        relay = try RecordingRelay(upstream: ports[0])
        do {
            cluster = try Cluster(size: size, tls: tls, dialed: ["node-a": relay.port], ports: ports)
        } catch {
            relay.stop()
            throw error
        }
        do {
            try cluster.start()
        } catch {
            destroy()
            throw error
        }
    }

    func destroy() {
        relay.stop()
        cluster.destroy()
    }
}

/// Runs `body` with a started TLS cluster that is destroyed afterwards.
func withTLSCluster<T>(size: Int = 2, _ body: (Cluster) throws -> T) throws -> T {
    let cluster = try Cluster(size: size, tls: true)
    defer { cluster.destroy() }
    try cluster.start()
    return try body(cluster)
}

/// A TLS client presenting a given certificate to a replication listener.
enum TLSPeer {
    struct Outcome {
        /// Bytes of the replication stream received (after TLS).
        var applicationBytes: Int
        /// Whether the listener closed the connection (within 10 s).
        var closed: Bool
    }

    private final class Recorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        var bytes = 0
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { bytes += unwrapInboundIn(data).readableBytes }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    static func connect(port: Int, certificate: String, key: String, trust: String, send message: ReplicationMessage) throws -> Outcome {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
        configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(trust))
        configuration.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: configuration)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let recorder = Recorder()
        let channel = try ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHandler(recorder)
                }
            }
            .connect(host: "127.0.0.1", port: port).wait()
        channel.writeAndFlush(ReplicationFrameCodec.frame(message, allocator: channel.allocator), promise: nil)
        let closed = channel.eventLoop.makePromise(of: Bool.self)
        channel.closeFuture.whenComplete { _ in closed.succeed(true) }
        let timer = channel.eventLoop.scheduleTask(in: .seconds(10)) { closed.succeed(false) }
        let wasClosed = (try? closed.futureResult.wait()) ?? false
        timer.cancel()
        try? channel.close().wait()
        let bytes = try channel.eventLoop.submit { recorder.bytes }.wait()
        return Outcome(applicationBytes: bytes, closed: wasClosed)
    }
}
