import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A TCP relay on loopback in front of a node that records every byte it
/// carries, in both directions, to check what crosses the network; it can
/// cut every connection it carries (the peers then reconnect through it).
final class RecordingRelay: @unchecked Sendable {
    let port: Int
    private let upstream: Int
    private let listener: Int32
    private let lock = NSLock()
    private var toUpstream: [[UInt8]] = []
    private var fromUpstream: [[UInt8]] = []
    private var open: [Int32] = []

    init(upstream: Int) throws {
        self.upstream = upstream
        port = Cluster.freePorts(1)[0]
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = TamperingProxy.address(port)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(listener, 16) == 0 else { throw Failure("relay cannot listen on \(port)") }
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// What the dialing side sent, one entry per connection, in order.
    var sent: [[UInt8]] { lock.withLock { toUpstream } }
    /// What the node answered, one entry per connection, in order.
    var received: [[UInt8]] { lock.withLock { fromUpstream } }

    /// Closes every connection carried now.
    func cutAll() {
        // Under the lock: a socket leaves `open` before it can be closed.
        lock.withLock { for fd in open { shutdown(fd, Int32(SHUT_RDWR)) } }
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        cutAll()
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
            let index = lock.withLock { () -> Int in
                toUpstream.append([])
                fromUpstream.append([])
                open += [client, server]
                return toUpstream.count - 1
            }
            let pair = TamperingProxy.SocketPair(client: client, server: server)
            Thread.detachNewThread { [self] in pump(from: client, to: server, index: index, upstream: true, pair: pair) }
            Thread.detachNewThread { [self] in pump(from: server, to: client, index: index, upstream: false, pair: pair) }
        }
    }

    private func pump(from source: Int32, to destination: Int32, index: Int, upstream: Bool, pair: TamperingProxy.SocketPair) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            lock.withLock {
                if upstream { toUpstream[index] += buffer[0..<n] } else { fromUpstream[index] += buffer[0..<n] }
            }
            var offset = 0
            while offset < n {
                let written = buffer[offset..<n].withUnsafeBytes { send(destination, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if written <= 0 { break }
                offset += written
            }
            if offset < n { break }
        }
        lock.withLock { open.removeAll { $0 == source || $0 == destination } }
        pair.end()
    }
}
