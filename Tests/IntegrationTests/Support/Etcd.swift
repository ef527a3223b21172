import Foundation
import ReplFS

#if canImport(Glibc)
import Glibc
#endif

/// A throwaway single-node etcd on loopback ports, with its own data
/// directory and log file in a temp directory, for tests that need a real
/// lease service.
///
/// `init` starts it and returns once it serves requests. It can be stopped
/// and started again on the same ports and data (`halt()` / `start()`),
/// frozen (`pause()` / `resume()`: the process stops, its sockets still
/// accept connections but nothing answers, like a hung server), or killed
/// (`kill()`, like a crash). `stop()` ends it and removes everything; it also
/// runs on deinit. `REPLFS_KEEP_TEST_DATA` keeps the directory for a post-mortem.
final class EtcdServer: @unchecked Sendable {
    static let binary = "/usr/bin/etcd"

    /// The temp directory holding `data/` and `etcd.log`.
    let root: String
    var dataDirectory: String { root + "/data" }
    var logPath: String { root + "/etcd.log" }
    private(set) var clientPort: Int
    private(set) var peerPort: Int
    /// The client URL, for `EtcdClient(endpoints:)` and replfsd's `lease.etcd.endpoints`.
    var endpoint: String { "\(tls == nil ? "http" : "https")://127.0.0.1:\(clientPort)" }
    /// Serve clients over TLS only, and only to clients with a certificate
    /// of `ca` (`--client-cert-auth`); `client` is one such certificate.
    struct TLSFiles {
        var server: Config.TLS
        var client: Config.TLS
    }
    let tls: TLSFiles?
    /// Another address to serve clients on (a partition test's veth), set before ``start(timeout:)``.
    var extraClientHost: String?
    /// The client URL on ``extraClientHost``.
    var extraEndpoint: String? { extraClientHost.map { "http://\($0):\(clientPort)" } }

    private let lock = NSLock()
    private var process: Process?
    private var paused = false
    private var removed = false
    /// Why the last health probe over TLS failed, for the failure message.
    private var lastProbeError = ""

    static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    /// Creates the directory and starts etcd; with `start: false` only
    /// reserves the ports. A port taken between choosing and binding it is
    /// retried with new ports.
    init(start: Bool = true, startTimeout: Double = 30, tls: TLSFiles? = nil) throws {
        self.tls = tls
        root = NSTemporaryDirectory() + "replfs-etcd-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let ports = Cluster.freePorts(2)
        clientPort = ports[0]
        peerPort = ports[1]
        guard start else { return }
        var attempt = 0
        while true {
            do {
                try self.start(timeout: startTimeout)
                return
            } catch is Failure where attempt < 3 && logTail.contains("address already in use") {
                attempt += 1
                try? FileManager.default.removeItem(atPath: logPath)
                try? FileManager.default.removeItem(atPath: dataDirectory)
                let ports = Cluster.freePorts(2)
                clientPort = ports[0]
                peerPort = ports[1]
            } catch {
                stop()
                throw error
            }
        }
    }

    deinit { stop() }

    var pid: Int32? { lock.withLock { process?.processIdentifier } }
    var isRunning: Bool { lock.withLock { process?.isRunning ?? false } }

    /// The last part of etcd's log, for failure messages.
    var logTail: String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return String(text.suffix(3000))
    }

    /// Starts etcd (again, with the same ports and data) and waits until it
    /// answers a linearizable request (GET /health goes through raft).
    func start(timeout: Double = 30) throws {
        try lock.withLock {
            guard process == nil else { throw Failure("etcd is already running (pid \(process!.processIdentifier))") }
            if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
            guard let log = FileHandle(forWritingAtPath: logPath) else { throw Failure("cannot open \(logPath)") }
            log.seekToEndOfFile()
            let peer = "http://127.0.0.1:\(peerPort)"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: EtcdServer.binary)
            process.arguments = [
                "--name", "t", "--data-dir", dataDirectory, "--logger", "zap",
                "--listen-client-urls", ([endpoint] + (extraEndpoint.map { [$0] } ?? [])).joined(separator: ","), "--advertise-client-urls", endpoint,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "t=\(peer)",
            ]
            if let tls {
                process.arguments! += [
                    "--cert-file", tls.server.cert, "--key-file", tls.server.key, "--trusted-ca-file", tls.server.ca, "--client-cert-auth",
                ]
            }
            process.standardOutput = log
            process.standardError = log
            process.standardInput = FileHandle.nullDevice
            try process.run()
            try? log.close()
            self.process = process
            paused = false
        }
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if isHealthy() { return }
            if !isRunning {
                lock.withLock { process = nil }
                throw Failure("etcd exited while starting; log:\n\(logTail)")
            }
            if Date() > deadline {
                halt()
                throw Failure("etcd did not become healthy within \(timeout)s (\(lock.withLock { lastProbeError })); log:\n\(logTail)")
            }
            usleep(20_000)
        }
    }

    /// Sends `signal` and waits for the process to exit (SIGKILL after
    /// `timeout`); data and directory stay, so `start()` can bring it back.
    func halt(signal: Int32 = SIGTERM, timeout: Double = 10) {
        guard let process = lock.withLock({ () -> Process? in
            defer { self.process = nil }
            return self.process
        }) else { return }
        let pid = process.processIdentifier
        Glibc.kill(pid, signal)
        if lock.withLock({ paused }) { Glibc.kill(pid, SIGCONT) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning { Glibc.kill(pid, SIGKILL) }
        process.waitUntilExit()
        lock.withLock { paused = false }
    }

    /// Kills etcd at once, as a crash would (its data stays).
    func kill() { halt(signal: SIGKILL) }

    /// Freezes the process (SIGSTOP): connections are still accepted by the
    /// kernel but nothing answers, and etcd's clocks stand still.
    func pause() {
        lock.withLock {
            guard let process, !paused else { return }
            Glibc.kill(process.processIdentifier, SIGSTOP)
            paused = true
        }
    }

    /// Lets a paused etcd run again (SIGCONT).
    func resume() {
        lock.withLock {
            guard let process, paused else { return }
            Glibc.kill(process.processIdentifier, SIGCONT)
            paused = false
        }
    }

    /// Stops etcd (SIGTERM, then SIGKILL if it lingers) and removes the
    /// directory. Idempotent.
    func stop() {
        halt()
        let remove = lock.withLock { () -> Bool in
            defer { removed = true }
            return !removed
        }
        if remove && ProcessInfo.processInfo.environment["REPLFS_KEEP_TEST_DATA"] == nil {
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// Sends one HTTP/1.0 request to etcd's client port over a plain socket
    /// and returns the response body: for readiness checks and for set-up a
    /// test needs outside the client under test (e.g. `/v3/kv/compaction`).
    /// Whether etcd answers a linearizable request (over TLS, with the client certificate).
    private func isHealthy() -> Bool {
        guard let tls else {
            return (try? request("/health", method: "GET", timeout: 1))?.contains("\"health\":\"true\"") == true
        }
        guard let identity = try? TLSIdentity.load(tls.client, key: "test"),
            let client = try? EtcdClient(endpoints: [endpoint], requestTimeout: .seconds(1), tls: identity)
        else { return false }
        defer { client.shutdown() }
        do {
            _ = try client.get("/health-probe")
            return true
        } catch {
            lock.withLock { lastProbeError = "\(error)" }
            return false
        }
    }

    func request(_ path: String, method: String = "POST", json: String = "", timeout: Double = 2) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(clientPort).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw Failure("connect to \(endpoint): \(String(cString: strerror(errno)))") }
        let body = Array(json.utf8)
        let head = "\(method) \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        let message = Array(head.utf8) + body
        var sent = 0
        while sent < message.count {
            let n = message[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure("send to \(endpoint): \(String(cString: strerror(errno)))") }
            sent += n
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            guard n > 0 else { throw Failure("no reply from \(endpoint)\(path): \(String(cString: strerror(errno)))") }
            response += buffer[..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw Failure("a malformed HTTP reply from \(endpoint)\(path): \(text)") }
        let status = text.prefix(while: { $0 != "\r" })
        guard status.contains(" 200 ") else { throw Failure("\(endpoint)\(path): \(status): \(text[split.upperBound...])") }
        return String(text[split.upperBound...])
    }

    /// Compacts etcd's history up to `revision`, so older revisions can no
    /// longer be watched from.
    func compact(_ revision: Int64) throws {
        _ = try request("/v3/kv/compaction", json: "{\"revision\":\"\(revision)\",\"physical\":true}")
    }
}
