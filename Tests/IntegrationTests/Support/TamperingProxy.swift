import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy between a replica and its primary that damages the
/// primary's stream once, on the first connection that carries enough LTX
/// frames: it flips a byte inside one, cuts the stream in the middle of
/// one, or sends an old one again. Later connections pass through intact.
final class TamperingProxy: @unchecked Sendable {
    enum Mode: String, CaseIterable, Sendable {
        case flipByte
        case truncate
        case replay
    }

    let port: Int
    private let upstream: Int
    private let mode: Mode
    private let listener: Int32
    private let lock = NSLock()
    private var tampered = false
    private var running = true

    /// Whether the damage was done.
    var didTamper: Bool {
        lock.lock()
        defer { lock.unlock() }
        return tampered
    }

    init(upstream: Int, mode: Mode) throws {
        self.upstream = upstream
        self.mode = mode
        port = Cluster.freePorts(1)[0]
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = TamperingProxy.address(port)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(listener, 16) == 0 else { throw Failure("proxy cannot listen on \(port)") }
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    static func address(_ port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    func stop() {
        lock.lock()
        running = false
        lock.unlock()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = TamperingProxy.address(upstream)
            let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard connected == 0 else {
                close(client)
                close(server)
                continue
            }
            let pair = SocketPair(client: client, server: server)
            Thread.detachNewThread { TamperingProxy.pump(from: client, to: server, pair: pair) }
            Thread.detachNewThread { [self] in frames(from: server, to: client, pair: pair) }
        }
    }

    /// The two sockets of one relayed connection, closed once both
    /// directions have ended (closing twice could close a descriptor that
    /// another thread opened meanwhile).
    final class SocketPair: @unchecked Sendable {
        let client: Int32
        let server: Int32
        private let lock = NSLock()
        private var ended = 0

        init(client: Int32, server: Int32) {
            self.client = client
            self.server = server
        }

        func end() {
            shutdown(client, Int32(SHUT_RDWR))
            shutdown(server, Int32(SHUT_RDWR))
            let last = lock.withLock { () -> Bool in
                ended += 1
                return ended == 2
            }
            if last {
                close(client)
                close(server)
            }
        }
    }

    private static func pump(from source: Int32, to destination: Int32, pair: SocketPair) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if n <= 0 || !writeAll(destination, Array(buffer[0..<n])) { break }
        }
        pair.end()
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    private static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let n = bytes[offset...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return nil }
            offset += n
        }
        return bytes
    }

    /// Forwards the primary's frames, damaging the third LTX frame once.
    private func frames(from server: Int32, to client: Int32, pair: SocketPair) {
        var ltxFrames = 0
        var remembered: [UInt8]?
        defer { pair.end() }
        while let prefix = TamperingProxy.readExactly(server, 4) {
            let length = Int(prefix[0]) << 24 | Int(prefix[1]) << 16 | Int(prefix[2]) << 8 | Int(prefix[3])
            guard var body = TamperingProxy.readExactly(server, length) else { return }
            if body.first == 10 { ltxFrames += 1 }
            lock.lock()
            let armed = !tampered && body.first == 10
            lock.unlock()
            if armed && ltxFrames == 1 { remembered = prefix + body }
            if armed && ltxFrames == 3 {
                lock.lock()
                tampered = true
                lock.unlock()
                switch mode {
                case .flipByte:
                    body[body.count / 2] ^= 0x5A
                case .truncate:
                    _ = TamperingProxy.writeAll(client, prefix + Array(body.prefix(body.count / 2)))
                    return
                case .replay:
                    guard TamperingProxy.writeAll(client, prefix + body), let old = remembered else { return }
                    _ = TamperingProxy.writeAll(client, old)
                    continue
                }
            }
            guard TamperingProxy.writeAll(client, prefix + body) else { return }
        }
    }
}
