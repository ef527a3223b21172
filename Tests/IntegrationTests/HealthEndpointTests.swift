import Foundation
import ReplFS
import Synchronization
import TestHTTP
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// `http.listen`: what a load balancer asks each node.
    @Suite("Health endpoints")
    struct HealthEndpointTests {
        /// The status code of `GET path` on 127.0.0.1:`port` (nil: no answer).
        static func status(port: Int, _ path: String) -> Int? {
            RawHTTP.send(port: port, RawHTTP.request("GET", path))?.status
        }

        @Test(
            "etcd: through promote, demote and a crash failover, no sample (every 20 ms) finds two nodes answering 200 on /primary, and a settled cluster has exactly one; /replica and /health answer on the others",
            .enabled(if: EtcdServer.isInstalled))
        func onePrimary() throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let cluster = try Cluster(lease: .etcd(endpoint: etcd.endpoint))
            defer { cluster.destroy() }
            let ports = Cluster.freePorts(cluster.nodes.count)
            for (node, port) in zip(cluster.nodes, ports) {
                let text = try String(contentsOfFile: node.configPath, encoding: .utf8)
                try node.writeConfig(text + "\nhttp:\n  listen: 127.0.0.1:\(port)\n")
            }
            try cluster.start()
            let sampling = Mutex(true)
            let samples = Mutex<(count: Int, most: Int, double: [String])>((0, 0, []))
            let sampler = Thread {
                while sampling.withLock({ $0 }) {
                    let answering = zip(cluster.nodes, ports).filter { Self.status(port: $0.1, "/primary") == 200 }.map(\.0.name)
                    samples.withLock {
                        $0.count += 1
                        $0.most = max($0.most, answering.count)
                        if answering.count > 1 { $0.double.append(answering.joined(separator: "+")) }
                    }
                    usleep(20_000)
                }
            }
            sampler.start()
            defer { sampling.withLock { $0 = false } }
            func settled() throws -> Node {
                let primary = try cluster.waitForPrimary(timeout: 30)
                try waitUntil(timeout: 10, "exactly the primary answers 200 on /primary") {
                    zip(cluster.nodes, ports).filter { Self.status(port: $0.1, "/primary") == 200 }.map(\.0.name) == [primary.name]
                }
                for (node, port) in zip(cluster.nodes, ports) where node !== primary {
                    try waitUntil(timeout: 10, "\(node.name) answers 200 on /replica") { Self.status(port: port, "/replica") == 200 }
                    #expect(Self.status(port: port, "/primary") == 503)
                }
                return primary
            }
            let first = try settled()
            let target = try #require(cluster.replicas.first)
            #expect(try target.admin(["promote"]).status == 0)
            #expect(try settled() === target)
            #expect(try target.admin(["demote"]).status == 0)
            let third = try settled()
            #expect(third !== target)
            try third.kill9()
            let fourth = try cluster.waitForPrimary(timeout: 30, not: third)
            _ = fourth
            try third.start()
            _ = try settled()
            for (node, port) in zip(cluster.nodes, ports) { #expect(Self.status(port: port, "/health") == 200, "\(node.name)") }
            sampling.withLock { $0 = false }
            let seen = samples.withLock { $0 }
            print("health: \(seen.count) samples of /primary on every node, at most \(seen.most) answering 200 at once (first primary \(first.name))")
            #expect(seen.count > 100)
            #expect(seen.most == 1, "two nodes answered 200 on /primary at once: \(seen.double.prefix(5))")
        }
    }
}
