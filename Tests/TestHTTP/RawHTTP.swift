#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A bare HTTP/1.1 client over a Unix or TCP socket (shared by the test
/// targets), for tests that must send
/// what ``AdminClient`` never would (malformed JSON, wrong methods, huge
/// bodies) and read the answer exactly as the server wrote it.
public enum RawHTTP {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: String
    }

    public static func request(_ method: String, _ path: String, body: String? = nil, bodyBytes: Int? = nil) -> [UInt8] {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        var payload = Array((body ?? "").utf8)
        if let bodyBytes { payload = [UInt8](repeating: UInt8(ascii: "x"), count: bodyBytes) }
        if body != nil || bodyBytes != nil { text += "Content-Length: \(payload.count)\r\n" }
        text += "\r\n"
        return Array(text.utf8) + payload
    }

    public static func send(unixSocket path: String, _ request: [UInt8]) -> Response? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else { return nil }
        return exchange(fd, request)
    }

    /// Calls `body` (connect or bind) with the address of the socket file at `path`.
    private static func withUnixAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    public static func send(port: Int, _ request: [UInt8]) -> Response? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        return exchange(fd, request)
    }

    /// Writes the request, reads to end of file (the request said
    /// `Connection: close`), and parses status, headers and body.
    private static func exchange(_ fd: Int32, _ request: [UInt8]) -> Response? {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            // The server may answer 413 and close before reading everything.
            if n <= 0 { break }
            sent += n
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { return nil }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Response(status: status, headers: headers, body: String(text[split.upperBound...]))
    }

    /// Leaves a socket file nobody listens on, as a replfsd killed with -9 does.
    public static func makeStaleSocket(at path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return withUnixAddress(path, { bind(fd, $0, $1) }) == 0
    }
}
