import Foundation
import Testing

@testable import ReplFS

@Suite("Configuration")
struct ConfigLoaderTests {
    @Test("defaults: a lone primary with only mount and data")
    func defaults() throws {
        let config = try ConfigLoader.parse("mount: /mnt/x\ndata: /var/lib/replfs\n", hostname: "host-1")
        #expect(config.node == "host-1")
        #expect(config.cluster == "replfs")
        #expect(config.retention == .seconds(600))
        #expect(config.lease.type == .static)
        #expect(config.lease.candidate)
        #expect(config.replication.listen == "0.0.0.0:20202")
        #expect(config.replication.syncReplicas == 0)
        #expect(config.admin.socket == "/run/replfs/replfsd.sock")
        #expect(config.exec == nil)
    }

    @Test("every key of the design's example")
    func fullExample() throws {
        let config = try ConfigLoader.parse("""
            node: node-a
            cluster: headscale
            mount: /var/lib/headscale
            data: /var/lib/replfs
            replication:
              listen: 0.0.0.0:20202
              advertise: 10.0.0.1:20202
              token-file: /etc/replfs/token
              tls: {cert: /etc/replfs/c.pem, key: /etc/replfs/k.pem, ca: /etc/replfs/ca.pem}
              sync-replicas: 1
            lease:
              type: etcd
              candidate: false
              static:
                primary: node-a
                peers: {node-a: 10.0.0.1:20202, node-b: 10.0.0.2:20202}
              etcd:
                endpoints: [http://127.0.0.1:2379]
                key: /replfs/headscale/primary
                ttl: 2s
            admin:
              socket: /run/replfs/replfsd.sock
            exec:
              command: [headscale, serve]
              stop-timeout: 10s
            metrics:
              listen: 127.0.0.1:9090
            retention: 1m30s
            """, hostname: "unused")
        #expect(config.node == "node-a")
        #expect(config.cluster == "headscale")
        #expect(config.replication.advertise == "10.0.0.1:20202")
        #expect(config.replication.tokenFile == "/etc/replfs/token")
        #expect(config.replication.tls == Config.TLS(cert: "/etc/replfs/c.pem", key: "/etc/replfs/k.pem", ca: "/etc/replfs/ca.pem"))
        #expect(config.replication.syncReplicas == 1)
        #expect(config.lease.type == .etcd)
        #expect(!config.lease.candidate)
        #expect(config.lease.staticPeers == ["node-a": "10.0.0.1:20202", "node-b": "10.0.0.2:20202"])
        #expect(config.lease.etcdKey == "/replfs/headscale/primary")
        #expect(config.lease.etcdTTL == .seconds(2))
        #expect(config.exec?.command == ["headscale", "serve"])
        #expect(config.exec?.stopTimeout == .seconds(10))
        #expect(config.metrics.listen == "127.0.0.1:9090")
        #expect(config.retention == .seconds(90))
    }

    @Test("errors name the key", arguments: [
        ("data: /d\n", "mount"),
        ("mount: /m\ndata: /d\nbogus: 1\n", "bogus"),
        ("mount: /m\ndata: /d\nreplication: {sync-replicas: -1}\n", "replication.sync-replicas"),
        ("mount: /m\ndata: /d\nlease: {candidate: maybe}\n", "lease.candidate"),
        ("mount: /m\ndata: /d\nexec: {stop-timeout: 5s}\n", "exec.command"),
        ("mount: /m\ndata: /d\nlease: {etcd: {endpoints: [ftp://x]}}\n", "lease.etcd.endpoints"),
        ("mount: /m\ndata: /d\nlease: {etcd: {key: relative}}\n", "lease.etcd.key"),
        ("mount: /m\ndata: /d\nreplication: {tls: {cert: /c}}\n", "replication.tls.key"),
    ])
    func errors(text: String, key: String) {
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(text, hostname: "h") }
        do {
            _ = try ConfigLoader.parse(text, hostname: "h")
        } catch {
            #expect(error.key == key, "\(error)")
        }
    }

    @Test("durations")
    func durations() {
        #expect(ConfigLoader.parseDuration("500ms") == .milliseconds(500))
        #expect(ConfigLoader.parseDuration("2s") == .seconds(2))
        #expect(ConfigLoader.parseDuration("10m") == .seconds(600))
        #expect(ConfigLoader.parseDuration("1h") == .seconds(3600))
        #expect(ConfigLoader.parseDuration("1m30s") == .seconds(90))
        #expect(ConfigLoader.parseDuration("2") == nil)
        #expect(ConfigLoader.parseDuration("2x") == nil)
        #expect(ConfigLoader.parseDuration("") == nil)
    }

    @Test("the example configurations in etc/ load, with the keys an operator expects")
    func examples() throws {
        let etc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path + "/etc"
        for name in ["replfsd.yml", "replfsd-cluster.yml"] {
            _ = try ConfigLoader.load(path: etc + "/" + name)
        }
        for node in ["a", "b", "c"] {
            let config = try ConfigLoader.load(path: etc + "/headscale/replfsd-node-\(node).yml")
            #expect(config.node == "node-\(node)")
            #expect(config.lease.type == .etcd)
            #expect(config.lease.etcdTTL == .seconds(2))
            #expect(config.exec?.command.first == "/usr/bin/headscale")
            #expect(config.mount == "/var/lib/headscale")
            #expect(config.advertisedAddress.hasSuffix(":20202"))
        }
    }
}
