import Foundation
import Prometheus
import Testing

@testable import ReplFS

@Suite("Health endpoints")
struct HealthEndpointTests {
    private func status(role: String, writable: Bool = false, connected: Bool? = nil, lagMs: Int? = nil, application: String? = nil, ready: Bool = true) -> AdminStatus {
        var status = AdminStatus(
            node: "node-a", cluster: "c", role: role, writable: writable, epoch: Epoch(7), primary: .init(name: "node-b", address: "10.0.0.2:20202"),
            lease: .init(type: "etcd", candidate: true, state: "x"))
        if let connected { status.upstream = .init(primary: "node-b", connected: connected, lagMs: lagMs) }
        if let application { status.process = .init(command: ["app"], state: application, pid: nil, restarts: 0, ready: application == "running" && ready) }
        return status
    }

    private func code(_ path: String, _ status: AdminStatus, method: String = "GET", maxLag: Duration = .seconds(1)) -> Int {
        HealthEndpoint.respond(
            to: HTTPServerRequest(method: method, path: path), maxLag: maxLag, registry: PrometheusCollectorRegistry(), status: { status }
        ).status
    }

    @Test("/primary is 200 only on the writable primary with its application running and ready; /replica only on a connected replica within max-lag")
    func codes() throws {
        let primary = status(role: "primary", writable: true)
        #expect(code("/primary", primary) == 200)
        #expect(code("/replica", primary) == 503)
        #expect(code("/health", primary) == 200)
        #expect(code("/primary", status(role: "primary", writable: false)) == 503, "not writable (fenced, handing off)")
        #expect(code("/primary", status(role: "primary", writable: true, application: "running")) == 200)
        #expect(code("/primary", status(role: "primary", writable: true, application: "starting")) == 503, "application not up")
        #expect(code("/primary", status(role: "primary", writable: true, application: "running", ready: false)) == 503, "running, not ready (exec.ready)")

        #expect(code("/replica", status(role: "replica", connected: true, lagMs: 3)) == 200)
        #expect(code("/replica", status(role: "replica", connected: true, lagMs: 1500)) == 503, "behind http.max-lag")
        #expect(code("/replica", status(role: "replica", connected: true, lagMs: 1500), maxLag: .seconds(2)) == 200)
        #expect(code("/replica", status(role: "replica", connected: false, lagMs: 0)) == 503, "not connected")
        #expect(code("/primary", status(role: "replica", connected: true, lagMs: 0)) == 503)
        #expect(code("/health", status(role: "replica", connected: false)) == 200)

        #expect(code("/primary", primary, method: "POST") == 405)
        #expect(code("/nope", primary) == 404)
        #expect(code("/metrics", primary) == 200)
    }

    @Test("the body says node, role, epoch, primary, lag and application, as JSON")
    func body() throws {
        let response = HealthEndpoint.respond(
            to: HTTPServerRequest(method: "GET", path: "/replica"), maxLag: .seconds(1), registry: PrometheusCollectorRegistry(),
            status: { status(role: "replica", connected: true, lagMs: 12, application: "stopped") })
        #expect(response.contentType == "application/json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        #expect(object["node"] as? String == "node-a")
        #expect(object["role"] as? String == "replica")
        #expect(object["epoch"] as? Int == 7)
        #expect(object["primary"] as? String == "node-b")
        #expect(object["lag_ms"] as? Int == 12)
        #expect(object["connected"] as? Bool == true)
        #expect(object["application"] as? String == "stopped")
    }
}
