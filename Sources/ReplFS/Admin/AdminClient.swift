#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Talks to a running replfsd over its admin socket (`http+unix://`).
///
/// Synchronous on purpose: the CLI makes one call and exits, and the
/// daemon's answers (a promotion, an export) take seconds. Each call uses
/// a fresh connection and never retries a failed connect, so a daemon that
/// is not running is reported at once, naming the socket.
public struct AdminClient: Sendable {
    /// The socket `admin.socket` defaults to.
    public static let defaultSocket = Config.Admin().socket

    /// The admin socket's path.
    public var socket: String
    /// How long `status` may take.
    public var statusTimeout: Duration
    /// How long promote, demote, export and import may take.
    public var actionTimeout: Duration

    public init(socket: String = AdminClient.defaultSocket, statusTimeout: Duration = .seconds(10), actionTimeout: Duration = .seconds(600)) {
        self.socket = socket
        self.statusTimeout = statusTimeout
        self.actionTimeout = actionTimeout
    }

    /// `GET /status`.
    public func status() -> Result<AdminStatus, AdminClientError> {
        call(.GET, "/status", body: nil, timeout: statusTimeout)
    }

    /// `POST /promote`.
    public func promote(force: Bool = false) -> Result<AdminActionResult, AdminClientError> {
        call(.POST, "/promote", body: AdminPromoteRequest(force: force), timeout: actionTimeout)
    }

    /// `POST /demote`.
    public func demote() -> Result<AdminActionResult, AdminClientError> {
        call(.POST, "/demote", body: AdminEmptyRequest(), timeout: actionTimeout)
    }

    /// `POST /export`; `path` must be absolute (see ``absolutePath(_:)``).
    public func export(database: String, to path: String) -> Result<AdminActionResult, AdminClientError> {
        call(.POST, "/export", body: AdminTransferRequest(database: database, path: path), timeout: actionTimeout)
    }

    /// `POST /import`; `path` must be absolute (see ``absolutePath(_:)``).
    public func importDatabase(_ database: String, from path: String) -> Result<AdminActionResult, AdminClientError> {
        call(.POST, "/import", body: AdminTransferRequest(database: database, path: path), timeout: actionTimeout)
    }

    /// `POST /log/export`; `directory` must be absolute.
    public func exportLog(database: String, to directory: String) -> Result<AdminActionResult, AdminClientError> {
        call(.POST, "/log/export", body: AdminTransferRequest(database: database, path: directory), timeout: actionTimeout)
    }

    /// `path` made absolute against this process's working directory: the
    /// daemon resolves paths against its own, which is not the operator's.
    public static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        let base = FileManager.default.currentDirectoryPath
        return URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: base, isDirectory: true)).standardizedFileURL.path
    }

    /// Sends one request and decodes a `T` from a 2xx answer or an
    /// ``AdminError`` from any other.
    func call<T: Decodable>(_ method: HTTPMethod, _ path: String, body: (any Encodable)?, timeout: Duration) -> Result<T, AdminClientError> {
        let answer: (status: Int, body: [UInt8])
        switch send(method, path, body: body, timeout: timeout) {
        case .success(let value): answer = value
        case .failure(let error): return .failure(error)
        }
        let decoder = JSONDecoder()
        if (200..<300).contains(answer.status) {
            do {
                return .success(try decoder.decode(T.self, from: Data(answer.body)))
            } catch {
                return .failure(AdminClientError(.badResponse, socket: socket, "\(method) \(path): cannot decode \(T.self): \(error)"))
            }
        }
        if let refusal = try? decoder.decode(AdminError.self, from: Data(answer.body)) {
            return .failure(.refused(refusal, socket: socket))
        }
        let text = String(decoding: answer.body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .failure(AdminClientError(.badResponse, socket: socket, "\(method) \(path): HTTP \(answer.status) \(text)"))
    }

    private func send(_ method: HTTPMethod, _ path: String, body: (any Encodable)?, timeout: Duration) -> Result<(status: Int, body: [UInt8]), AdminClientError> {
        if let problem = checkSocket() { return .failure(problem) }
        var bytes: [UInt8]?
        if let body {
            do {
                bytes = Array(try JSONEncoder().encode(body))
            } catch {
                return .failure(AdminClientError(.badResponse, socket: socket, "cannot encode the request: \(error)"))
            }
        }
        guard let url = URL(httpURLWithSocketPath: socket, uri: path) else {
            return .failure(AdminClientError(.unreachable, socket: socket, "not a usable socket path"))
        }
        var configuration = HTTPClient.Configuration()
        // A daemon that is not running must be reported now, not after retries.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(2)
        let client = HTTPClient(eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton), configuration: configuration)
        defer { try? client.syncShutdown() }
        do {
            var headers = HTTPHeaders()
            if bytes != nil { headers.add(name: "Content-Type", value: "application/json") }
            let request = try HTTPClient.Request(url: url, method: method, headers: headers, body: bytes.map { .bytes($0) })
            let deadline = NIODeadline.now() + .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
            let response = try client.execute(request: request, deadline: deadline).wait()
            return .success((Int(response.status.code), response.body.map { Array($0.readableBytesView) } ?? []))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            return .failure(AdminClientError(.timedOut, socket: socket, "did not answer \(method) \(path) within \(timeout) (it may still complete: check replfsd status)"))
        } catch {
            return .failure(AdminClientError(.unreachable, socket: socket, AdminClient.reason(error)))
        }
    }

    /// Explains the common cases before connecting: no socket (replfsd not
    /// running, or another admin.socket), or something that is not a socket.
    private func checkSocket() -> AdminClientError? {
        switch Syscall.stat(socket) {
        case .failure(.noEntry):
            return AdminClientError(.unreachable, socket: socket, "no such socket (is replfsd running? is admin.socket set elsewhere?)")
        case .failure(let errno):
            return AdminClientError(.unreachable, socket: socket, "\(errno)")
        case .success(let st) where st.st_mode & S_IFMT != S_IFSOCK:
            return AdminClientError(.unreachable, socket: socket, "not a socket")
        case .success:
            return nil
        }
    }

    private static func reason(_ error: any Error) -> String {
        guard let errno = HTTPServer.errno(of: error) else { return "\(error)" }
        switch errno.rawValue {
        case ECONNREFUSED: return "connection refused (replfsd is not running; the socket file is stale)"
        case EACCES: return "permission denied (the socket is 0600: run as its owner, usually root)"
        default: return "\(errno)"
        }
    }
}
