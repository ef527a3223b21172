import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix

/// `exec.ready`: how the supervisor tells that the application serves, not
/// merely runs (Headscale opens its listener only after its migrations).
///
/// Until it answers, `/primary` says 503 and neither the virtual IP nor the
/// `on-primary` hook moves: clients are sent to a primary only once they
/// would get an answer there.
public struct ReadinessProbe: Sendable, Equatable, CustomStringConvertible {
    public enum Target: Sendable, Equatable {
        /// `{http: URL}`: a GET that answers 2xx.
        case http(url: String)
        /// `{tcp: HOST:PORT}`: a connection that is accepted.
        case tcp(host: String, port: Int)
    }

    public var target: Target

    /// How long one check may take.
    static let timeout = Duration.seconds(1)

    public init(_ target: Target) {
        self.target = target
    }

    public var description: String {
        switch target {
        case .http(let url): "GET \(url)"
        case .tcp(let host, let port): "TCP \(host):\(port)"
        }
    }

    /// Asks once; blocks the calling thread (never an event loop) for up to
    /// ``timeout``. The failure says what the application answered, or why
    /// it could not be reached.
    public func check() -> Result<Void, ReadinessError> {
        let deadline = NIODeadline.now() + .milliseconds(Self.timeout.milliseconds)
        do {
            switch target {
            case .http(let url):
                let response = try HTTPClient.shared.execute(request: HTTPClient.Request(url: url), deadline: deadline).wait()
                guard (200..<300).contains(response.status.code) else {
                    return .failure(ReadinessError(probe: self, "answered \(response.status.code)"))
                }
            case .tcp(let host, let port):
                let channel = try ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connectTimeout(.milliseconds(Self.timeout.milliseconds))
                    .connect(host: host, port: port).wait()
                try? channel.close().wait()
            }
            return .success(())
        } catch {
            return .failure(ReadinessError(probe: self, "\(error)"))
        }
    }

    /// What is wrong with an `exec.ready.http` value, if anything: it
    /// must be an `http://` (or `https://`) URL with a host.
    static func problem(withURL text: String) -> String? {
        guard text.hasPrefix("http://") || text.hasPrefix("https://") else { return "\"\(text)\" is not an http:// or https:// URL" }
        // Checked here, not left to the HTTP client: a port out of range
        // traps inside it.
        guard let url = URLComponents(string: text), let host = url.host, !host.isEmpty else { return "\"\(text)\" has no host" }
        if let port = url.port, !(1...65535).contains(port) { return "\"\(text)\" has a port out of range (1-65535)" }
        return nil
    }
}

/// Why the application is not ready (yet).
public struct ReadinessError: Error, Sendable, Equatable, CustomStringConvertible {
    public var probe: String
    public var reason: String

    init(probe: ReadinessProbe, _ reason: String) {
        self.probe = probe.description
        self.reason = reason
    }

    public var description: String { "\(probe): \(reason)" }
}
