import Foundation
import NIOCore
@testable import ReplFS
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// Peers that never prove the token: they must cost the primary almost
    /// nothing, learn nothing, and never disturb the replicas that did.
    @Suite("hostile peers")
    struct HostilePeerTests {
        @Test("100 strangers each announcing a 32 MiB frame cost the primary < 32 MiB; the replica keeps following; refusals are logged a few times, not 100")
        func oversizedFrames() throws {
            try withCluster(size: 2) { cluster in
                _ = try Command.sqlite(cluster.primary.mount + "/app.db", "CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                try cluster.waitForConvergence(["app.db"])
                let pid = try #require(cluster.primary.pid)
                let before = try #require(Stranger.residentBytes(pid))
                let port = cluster.ports[0]

                // Writes on the primary throughout, so the replica has to follow.
                let writer = try Command.start(TestEnvironment.testkit, [
                    "workload", "--db", cluster.primary.mount + "/load.db", "--journal-mode", "wal", "--transactions", "2000",
                ])
                let peak = Shared(before)
                let flooding = Shared(true)
                let sampler = Thread {
                    while flooding.value {
                        if let rss = Stranger.residentBytes(pid) { peak.update { $0 = max($0, rss) } }
                        usleep(20_000)
                    }
                }
                sampler.start()
                // All 100 at once, each holding its connection until every
                // one has sent what it could.
                let sent = DispatchGroup()
                let release = DispatchSemaphore(value: 0)
                for _ in 0..<100 {
                    sent.enter()
                    Thread.detachNewThread {
                        let stranger = Stranger(port: port)
                        if let stranger {
                            // A length prefix of 32 MiB, then 31 MiB of the frame.
                            var prefix = UInt32(32 << 20).bigEndian
                            if withUnsafeBytes(of: &prefix, { stranger.send($0) }) {
                                let chunk = [UInt8](repeating: 0x5A, count: 1 << 20)
                                for _ in 0..<31 where !chunk.withUnsafeBytes({ stranger.send($0) }) { break }
                            }
                        }
                        sent.leave()
                        release.wait()
                        stranger?.close()
                    }
                }
                #expect(sent.wait(timeout: .now() + 120) == .success, "the strangers finish sending")
                if let rss = Stranger.residentBytes(pid) { peak.update { $0 = max($0, rss) } }
                flooding.update { $0 = false }
                for _ in 0..<100 { release.signal() }
                #expect(writer.finish().status == 0)
                let growth = peak.value - before
                #expect(growth < 32 << 20, "primary RSS grew by \(growth >> 20) MiB (\(before >> 20) -> \(peak.value >> 20) MiB)")

                _ = try Command.sqlite(cluster.primary.mount + "/app.db", "INSERT INTO t VALUES(2);")
                try cluster.waitForConvergence(["app.db", "load.db"])
                let lines = cluster.primary.currentLog.split(separator: "\n").filter { $0.contains("refused connection") }
                #expect(!lines.isEmpty, "refusals are logged")
                #expect(lines.count <= 3, "at most once a minute per address, with a count: \(lines.count) lines")
            }
        }

        @Test("a peer that never authenticates is closed at the handshake deadline; connections awaiting authentication are capped")
        func handshakeDeadlineAndCap() throws {
            try withCluster(size: 2) { cluster in
                _ = try Command.sqlite(cluster.primary.mount + "/app.db", "CREATE TABLE t(x); INSERT INTO t VALUES(1);")
                try cluster.waitForConvergence(["app.db"])
                let port = cluster.ports[0]
                // Idle strangers: the first 16 are held until the deadline,
                // the rest are closed at once.
                let strangers = (0..<24).compactMap { _ in Stranger(port: port) }
                defer { strangers.forEach { $0.close() } }
                #expect(strangers.count == 24)
                // One window for all of them: the deadline closes the admitted
                // ones 5 s after they connected, so each must be judged at once.
                let door = Date().addingTimeInterval(1.5)
                let closedAtOnce = strangers.filter { $0.waitClosed(until: door) }.count
                #expect(closedAtOnce >= 8, "\(closedAtOnce) of 24 closed at the door")
                #expect(closedAtOnce < 24, "some are admitted to the handshake")
                let start = Date()
                let deadline = Date().addingTimeInterval(15)
                for stranger in strangers { #expect(stranger.waitClosed(until: deadline), "closed by the handshake deadline") }
                #expect(Date().timeIntervalSince(start) < 12)
                // The replica, authenticated before, never noticed.
                _ = try Command.sqlite(cluster.primary.mount + "/app.db", "INSERT INTO t VALUES(2);")
                try cluster.waitForConvergence(["app.db"])
            }
        }

        @Test("protocol versions: the previous one is spoken (a rolling upgrade), others are refused with the range")
        func protocolVersions() throws {
            try withCluster(size: 2) { cluster in
                func firstAnswer(_ version: UInt16) throws -> ReplicationMessage? {
                    let peer = try #require(Stranger(port: cluster.ports[0]))
                    defer { peer.close() }
                    let hello = ReplicationMessage.hello(
                        .init(version: version, cluster: "replfs", node: "x", nodeID: 1, nonce: Array(repeating: 3, count: 16)))
                    #expect(ReplicationFrameCodec.frame(hello, allocator: ByteBufferAllocator()).withUnsafeReadableBytes { peer.send($0) })
                    return peer.firstMessage(timeout: 6)
                }
                for version in [ReplicationMessage.oldestProtocolVersion, ReplicationMessage.protocolVersion] {
                    guard case .challenge(let challenge) = try firstAnswer(version) else {
                        Issue.record("version \(version) is not answered with a challenge")
                        continue
                    }
                    #expect(challenge.version == version, "the connection speaks the replica's version")
                }
                for version in [ReplicationMessage.oldestProtocolVersion - 1, ReplicationMessage.protocolVersion + 1] {
                    guard case .refused(let reason) = try firstAnswer(version) else {
                        Issue.record("version \(version) is not refused")
                        continue
                    }
                    #expect(reason.contains("protocol version \(version)"), "\(reason)")
                }
            }
        }

        @Test("a peer without the token learns nothing: not the cluster, the node, its epoch or the primary")
        func nothingRevealed() throws {
            try withCluster(size: 2) { cluster in
                let stranger = try #require(Stranger(port: cluster.ports[0]))
                defer { stranger.close() }
                let hello = ReplicationMessage.hello(
                    .init(version: ReplicationMessage.protocolVersion, cluster: "guess", node: "x", nodeID: 1, nonce: Array(repeating: 1, count: 16)))
                let frame = ReplicationFrameCodec.frame(hello, allocator: ByteBufferAllocator())
                #expect(frame.withUnsafeReadableBytes { stranger.send($0) })
                let answer = stranger.readAll(timeout: 10)
                #expect(!answer.isEmpty, "the refusal is sent")
                var buffer = ByteBufferAllocator().buffer(bytes: answer)
                let message = try ReplicationFrameCodec.decode(&buffer)
                guard case .refused(let reason) = message else {
                    Issue.record("expected a refusal, got \(String(describing: message))")
                    return
                }
                #expect(!reason.contains("replfs"), "the refusal names this node's cluster: \(reason)")
                #expect(cluster.primary.currentLog.contains("this is \"replfs\""), "the log has the detail: \(cluster.primary.currentLog)")

                // The right cluster, without the token: the challenge holds a
                // nonce and a proof, and a wrong proof gets a refusal; neither
                // names the node, its epoch or the primary.
                let guesser = try #require(Stranger(port: cluster.ports[0]))
                defer { guesser.close() }
                let rightCluster = ReplicationMessage.hello(
                    .init(version: ReplicationMessage.protocolVersion, cluster: "replfs", node: "x", nodeID: 1, nonce: Array(repeating: 2, count: 16)))
                #expect(ReplicationFrameCodec.frame(rightCluster, allocator: ByteBufferAllocator()).withUnsafeReadableBytes { guesser.send($0) })
                let authenticate = ReplicationMessage.authenticate(
                    .init(proof: Array(repeating: 0, count: 32), epoch: Epoch(0), candidate: true, address: "127.0.0.1:1", positions: [], files: []))
                #expect(ReplicationFrameCodec.frame(authenticate, allocator: ByteBufferAllocator()).withUnsafeReadableBytes { guesser.send($0) })
                let replies = guesser.readAll(timeout: 10)
                var frames = ByteBufferAllocator().buffer(bytes: replies)
                var received: [ReplicationMessage] = []
                while let message = try ReplicationFrameCodec.decode(&frames) { received.append(message) }
                #expect(received.count == 2, "\(received)")
                guard case .challenge = received.first, case .refused(let refusal) = received.last else {
                    Issue.record("expected a challenge and a refusal: \(received)")
                    return
                }
                let text = String(decoding: replies, as: UTF8.self)
                for secret in ["node-a", "127.0.0.1:\(cluster.ports[0])"] {
                    #expect(!text.contains(secret), "a peer without the token learned \(secret)")
                }
                #expect(refusal.contains("authentication failed"))
            }
        }
    }
}

/// A raw TCP client playing a peer that never proves the token.
final class Stranger: @unchecked Sendable {
    let fd: Int32

    init?(port: Int) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = TamperingProxy.address(port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            Glibc.close(fd)
            return nil
        }
    }

    /// Sends all of `bytes`; false once the peer has closed or reset.
    func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var done = 0
        while done < bytes.count {
            var poll = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard Glibc.poll(&poll, 1, 5000) == 1 else { return false }
            let n = Glibc.send(fd, bytes.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL))
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    /// Whether the peer has closed the connection (end of file or reset)
    /// by `deadline` (checked once if it has passed); what it sends before
    /// is discarded.
    func waitClosed(until deadline: Date) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        repeat {
            var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if Glibc.poll(&poll, 1, deadline > Date() ? 50 : 0) == 1 {
                let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if n == 0 || (n < 0 && errno != EAGAIN) { return true }
            }
        } while Date() < deadline
        return false
    }

    /// Everything the peer sends until it closes (or `timeout`).
    func readAll(timeout: Double) -> [UInt8] {
        read(timeout: timeout) { _ in false }
    }

    /// The first whole message the peer sends (nil if none within `timeout`).
    func firstMessage(timeout: Double) -> ReplicationMessage? {
        var buffer = ByteBufferAllocator().buffer(bytes: read(timeout: timeout) { received in
            var frames = ByteBufferAllocator().buffer(bytes: received)
            return (try? ReplicationFrameCodec.decode(&frames)) != nil
        })
        return try? ReplicationFrameCodec.decode(&buffer)
    }

    /// What the peer sends until `enough` says so, it closes, or `timeout` passes.
    private func read(timeout: Double, until enough: ([UInt8]) -> Bool) -> [UInt8] {
        let deadline = Date().addingTimeInterval(timeout)
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline, !enough(result) {
            var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard Glibc.poll(&poll, 1, 100) == 1 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            result += buffer[0..<n]
        }
        return result
    }

    func close() { Glibc.close(fd) }

    /// VmRSS of a process, in bytes.
    static func residentBytes(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kilobytes * 1024
    }
}

/// A value shared between the test's threads.
private final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func update(_ body: (inout Value) -> Void) { lock.withLock { body(&stored) } }
}
