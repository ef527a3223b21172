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
            "etcd: through promote, demote and a crash failover, no sample (every 20 ms) finds two nodes answering 200 on /primary, and a settled cluster has exactly one, whose application answers; /replica and /health answer on the others; the hooks ran on the right nodes with the right environment",
            .enabled(if: EtcdServer.isInstalled))
        func onePrimary() throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let cluster = try Cluster(lease: .etcd(endpoint: etcd.endpoint))
            defer { cluster.destroy() }
            let ports = Cluster.freePorts(cluster.nodes.count)
            let applicationPorts = Cluster.freePorts(cluster.nodes.count)
            let script = cluster.root + "/name-server.py"
            try NodeNameServer.write(to: script)
            let hookLog = cluster.root + "/hooks.log"
            let hook = "[/bin/sh, -c, 'echo \"$REPLFS_NODE $REPLFS_ROLE $REPLFS_EPOCH $REPLFS_PRIMARY\" >> \(hookLog)']"
            for (index, node) in cluster.nodes.enumerated() {
                let text = try String(contentsOfFile: node.configPath, encoding: .utf8)
                try node.writeConfig(
                    text + "\nhttp:\n  listen: 127.0.0.1:\(ports[index])\n"
                        + NodeNameServer.execSection(script: script, host: "127.0.0.1", port: applicationPorts[index])
                        + "\nhooks:\n  on-primary: \(hook)\n  on-replica: \(hook)\n  timeout: 5s\n")
            }
            /// The last hook each node ran: "ROLE EPOCH PRIMARY".
            func lastHooks() -> [String: String] {
                let lines = ((try? String(contentsOfFile: hookLog, encoding: .utf8)) ?? "").split(separator: "\n")
                var last: [String: String] = [:]
                for line in lines {
                    let fields = line.split(separator: " ", maxSplits: 1)
                    if fields.count == 2 { last[String(fields[0])] = String(fields[1]) }
                }
                return last
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
                // /primary said 200 only once the application answered.
                let index = cluster.nodes.firstIndex { $0 === primary }!
                #expect(RawHTTP.send(port: applicationPorts[index], RawHTTP.request("GET", "/"))?.status == 200)
                // The hooks: on-primary on the primary, at its epoch, naming
                // itself; on-replica on the others, naming it.
                let epoch = try primary.status().epoch.rawValue
                try waitUntil(timeout: 10, "the hooks ran for epoch \(epoch)") {
                    let last = lastHooks()
                    return last[primary.name] == "primary \(epoch) \(primary.name)"
                        && cluster.nodes.allSatisfy { $0 === primary || last[$0.name]?.hasPrefix("replica ") == true }
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
