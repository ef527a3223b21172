import Logging
import TestHTTP
import Testing

@testable import ReplFS

@Suite("Metrics endpoint", .serialized)
struct MetricsEndpointTests {
    @Test("GET /metrics on a free loopback port shows the values the daemon set")
    func scrape() async throws {
        let endpoint = MetricsEndpoint(logger: Logger(label: "metrics-test"))
        try await endpoint.start(listen: "127.0.0.1:0")
        let port = try #require(endpoint.port)
        #expect(port > 0)

        let metrics = endpoint.metrics
        metrics.setRole(primary: true)
        metrics.setEpoch(7)
        metrics.setTXID(1042, database: "db.sqlite")
        metrics.recordCommit(database: "db.sqlite", ltxBytes: 4096)
        metrics.recordCommit(database: "db.sqlite", ltxBytes: 100)
        metrics.setReplicaLag(3, replica: "node-b", database: "db.sqlite")
        metrics.recordSnapshotSent()
        metrics.recordLeaseRenewFailure()
        metrics.recordFUSEOperation(.write, duration: .microseconds(30))
        metrics.recordFUSEOperation(.write, duration: .milliseconds(3))

        let response = try #require(try await blocking { RawHTTP.send(port: port, RawHTTP.request("GET", "/metrics")) })
        #expect(response.status == 200)
        #expect(response.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        let lines = Set(response.body.split(separator: "\n").map(String.init))
        #expect(lines.contains("replfs_role 1.0"))
        #expect(lines.contains("replfs_epoch 7.0"))
        #expect(lines.contains(#"replfs_database_txid{database="db.sqlite"} 1042.0"#))
        #expect(lines.contains(#"replfs_commits_total{database="db.sqlite"} 2"#))
        #expect(lines.contains("replfs_ltx_bytes_total 4196"))
        #expect(lines.contains(#"replfs_replica_lag_transactions{replica="node-b",database="db.sqlite"} 3.0"#))
        #expect(lines.contains("replfs_snapshots_sent_total 1"))
        #expect(lines.contains("replfs_lease_renew_failures_total 1"))
        #expect(lines.contains(#"replfs_fuse_ops_total{op="write"} 2"#))
        #expect(lines.contains(#"replfs_fuse_ops_total{op="read"} 0"#))
        #expect(lines.contains(#"replfs_fuse_op_seconds_count{op="write"} 2"#))
        #expect(lines.contains(#"replfs_fuse_op_seconds_bucket{op="write",le="0.00005"} 1"#), "\(lines.filter { $0.contains("op=\"write\"") })")
        #expect(lines.contains("# TYPE replfs_fuse_op_seconds histogram"))

        metrics.setRole(primary: false)
        let later = try #require(try await blocking { RawHTTP.send(port: port, RawHTTP.request("GET", "/metrics")) })
        await endpoint.stop()
        #expect(later.body.contains("\nreplfs_role 0.0\n"))
    }

    @Test("a departed replica's lag and synchronous series are dropped")
    func removeReplica() {
        let endpoint = MetricsEndpoint(logger: Logger(label: "metrics-test"))
        endpoint.metrics.setReplicaLag(5, replica: "node-b", database: "db.sqlite")
        endpoint.metrics.setReplicaLag(1, replica: "node-c", database: "db.sqlite")
        endpoint.metrics.setReplicaSynchronous(true, replica: "node-b")
        endpoint.metrics.setReplicaSynchronous(false, replica: "node-c")
        #expect(endpoint.render().contains(#"replfs_replica_synchronous{replica="node-b"} 1.0"#))
        #expect(endpoint.render().contains(#"replfs_replica_synchronous{replica="node-c"} 0.0"#))
        #expect(endpoint.render().contains(#"replica="node-b""#))
        endpoint.metrics.removeReplica("node-b")
        #expect(!endpoint.render().contains(#"replica="node-b""#))
        #expect(endpoint.render().contains(#"replfs_replica_lag_transactions{replica="node-c",database="db.sqlite"} 1.0"#))
    }

    @Test("database handles are created once and shared")
    func databaseHandles() {
        let endpoint = MetricsEndpoint(logger: Logger(label: "metrics-test"))
        let handles = endpoint.metrics.database("db.sqlite")
        handles.commit(txid: 5)
        endpoint.metrics.recordCommit(database: "db.sqlite")
        #expect(endpoint.render().contains(#"replfs_commits_total{database="db.sqlite"} 2"#))
        #expect(endpoint.render().contains(#"replfs_database_txid{database="db.sqlite"} 5.0"#))
    }

    @Test("other paths are 404 and other methods 405")
    func routing() async throws {
        let endpoint = MetricsEndpoint(logger: Logger(label: "metrics-test"))
        try await endpoint.start(listen: "127.0.0.1:0")
        let port = try #require(endpoint.port)
        let statuses = try await blocking {
            [RawHTTP.send(port: port, RawHTTP.request("GET", "/nope"))?.status, RawHTTP.send(port: port, RawHTTP.request("POST", "/metrics", body: ""))?.status]
        }
        await endpoint.stop()
        #expect(statuses == [404, 405])
    }

    @Test("a port already bound and a malformed address are startup errors naming metrics.listen")
    func bindErrors() async throws {
        let first = MetricsEndpoint(logger: Logger(label: "metrics-test"))
        try await first.start(listen: "127.0.0.1:0")
        let port = try #require(first.port)
        let second = MetricsEndpoint(logger: Logger(label: "metrics-test"))
        await #expect {
            try await second.start(listen: "127.0.0.1:\(port)")
        } throws: { error in
            guard let error = error as? HTTPServerError else { return false }
            return error.code == .bind && "\(error)".hasPrefix("metrics.listen: 127.0.0.1:\(port) cannot be bound")
        }
        await #expect(throws: HTTPServerError(.invalidAddress, key: "metrics.listen", address: "localhost", "is not host:port")) {
            try await second.start(listen: "localhost")
        }
        await first.stop()
    }
}
