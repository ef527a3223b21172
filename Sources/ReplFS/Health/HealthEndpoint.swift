import Foundation
import Logging
import Prometheus
import ServiceLifecycle

/// `http.listen`: what a load balancer or a monitor asks a node, as
/// Patroni's REST API answers HAProxy's health checks.
///
/// - `GET /health`: 200 while the daemon serves its mount.
/// - `GET /primary`: 200 only on the writable primary whose application
///   (`exec`), if any, is running and ready (`exec.ready`); 503 otherwise.
/// - `GET /replica`: 200 on a replica connected to its primary with
///   nothing received waiting longer than `http.max-lag` to be applied.
/// - `GET /metrics`: the Prometheus text (what `metrics.listen` serves too).
///
/// Every answer but `/metrics` has a JSON body: node, role, writable,
/// epoch, primary, connected, lag (ms), application.
public final class HealthEndpoint: Service, Sendable {
    /// What a health answer says about the node.
    public struct Body: Codable, Equatable, Sendable {
        public var node: String
        public var role: String
        public var writable: Bool
        public var epoch: UInt64
        public var primary: String?
        /// A replica's link to its primary.
        public var connected: Bool?
        /// A replica's lag: how long the oldest change received and not yet
        /// applied has waited.
        public var lagMs: Int?
        /// The supervised application's state ("running", "stopped", ...), or nil without `exec`.
        public var application: String?
        /// Whether the application runs and answered its readiness probe
        /// (`exec.ready`), or nil without `exec`.
        public var applicationReady: Bool?

        init(_ status: AdminStatus) {
            node = status.node
            role = status.role
            writable = status.writable
            epoch = status.epoch.rawValue
            primary = status.primary?.name
            connected = status.upstream?.connected
            lagMs = status.upstream?.lagMs
            application = status.process?.state
            applicationReady = status.process.map { $0.ready == true }
        }
    }

    private let server: HTTPServer

    /// - Parameters:
    ///   - status: the node's status now (what `replfsd status` shows).
    ///   - registry: the metrics served at `/metrics`.
    public init(maxLag: Duration, registry: PrometheusCollectorRegistry, logger: Logger, status: @escaping @Sendable () -> AdminStatus) {
        server = HTTPServer(key: "http.listen", handlerThreads: 2, logger: logger) { request in
            HealthEndpoint.respond(to: request, maxLag: maxLag, registry: registry, status: status)
        }
    }

    /// Listens on "host:port" (port 0 picks a free one; see ``port``).
    public func start(listen address: String) async throws(HTTPServerError) {
        try await server.start(at: HTTPServerAddress.parse(hostPort: address, key: "http.listen"))
    }

    public func run() async throws {
        try await server.run()
    }

    public func stop() async {
        await server.stop()
    }

    /// The bound port while running.
    public var port: Int? {
        if case .tcp(_, let port) = server.boundAddress { return port }
        return nil
    }

    static func respond(
        to request: HTTPServerRequest, maxLag: Duration, registry: PrometheusCollectorRegistry, status: () -> AdminStatus
    ) -> HTTPServerResponse {
        guard request.method == "GET" || request.method == "HEAD" else {
            return HTTPServerResponse(status: 405, contentType: "text/plain; charset=utf-8", headers: ["Allow": "GET"], body: Array("use GET\n".utf8))
        }
        switch request.path {
        case "/metrics":
            return HTTPServerResponse(status: 200, contentType: MetricsEndpoint.contentType, body: registry.emitToBuffer())
        case "/health":
            return answer(true, status())
        case "/primary":
            let body = Body(status())
            return answer(isPrimary(body), body)
        case "/replica":
            let body = Body(status())
            return answer(isReplica(body, maxLag: maxLag), body)
        default:
            return .text("not found: \(request.path) (GET /health, /primary, /replica, /metrics)", status: 404)
        }
    }

    /// The writable primary, with its application (if any) running and ready.
    static func isPrimary(_ body: Body) -> Bool {
        body.role == "primary" && body.writable && (body.application == nil || body.applicationReady == true)
    }

    /// A replica connected to its primary, within `maxLag`.
    static func isReplica(_ body: Body, maxLag: Duration) -> Bool {
        body.role == "replica" && body.connected == true && Int64(body.lagMs ?? .max) <= maxLag.milliseconds
    }

    private static func answer(_ healthy: Bool, _ status: AdminStatus) -> HTTPServerResponse {
        answer(healthy, Body(status))
    }

    private static func answer(_ healthy: Bool, _ body: Body) -> HTTPServerResponse {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        let bytes = ((try? encoder.encode(body)) ?? Data()) + Data("\n".utf8)
        return HTTPServerResponse(status: healthy ? 200 : 503, contentType: "application/json", body: [UInt8](bytes))
    }
}
