import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// `replfsd mount`: lifecycle, passthrough semantics, refusals.
    @Suite("Mount")
    struct MountTests {
        @Test("SIGTERM and SIGINT unmount cleanly and exit 0; files stay in the data directory")
        func cleanUnmount() throws {
            for signal in [SIGTERM, SIGINT] {
                try withNode { node in
                    try "hello\n".write(toFile: node.mount + "/greeting.txt", atomically: false, encoding: .utf8)
                    guard let pid = node.pid else { throw Failure("not running") }
                    kill(pid, signal)
                    try waitUntil(timeout: 30, "replfsd exits") { !node.process!.process.isRunning }
                    let result = node.process!.finish()
                    #expect(result.status == 0, "\(result)")
                    #expect(!Node.isMounted(node.mount))
                    #expect(try String(contentsOfFile: node.data + "/files/greeting.txt", encoding: .utf8) == "hello\n")
                }
            }
        }

        @Test("plain files and directories behave as on a normal disk")
        func passthrough() throws {
            try withNode { node in
                let fm = FileManager.default
                let m = node.mount
                try fm.createDirectory(atPath: m + "/a/b/c", withIntermediateDirectories: true)

                // Write, read back, overwrite in the middle, append, truncate.
                let random = (0..<(5 << 20)).map { _ in UInt8.random(in: 0...255) }
                try Data(random).write(to: URL(fileURLWithPath: m + "/a/big.bin"))
                #expect(try Data(contentsOf: URL(fileURLWithPath: m + "/a/big.bin")) == Data(random))
                let handle = try #require(FileHandle(forUpdatingAtPath: m + "/a/big.bin"))
                try handle.seek(toOffset: 1000)
                handle.write(Data([1, 2, 3]))
                try handle.synchronize()
                try handle.truncate(atOffset: 2000)
                try handle.close()
                var expected = Array(random.prefix(2000))
                expected[1000] = 1
                expected[1001] = 2
                expected[1002] = 3
                #expect(try Data(contentsOf: URL(fileURLWithPath: m + "/a/big.bin")) == Data(expected))
                #expect(try Data(contentsOf: URL(fileURLWithPath: node.data + "/files/a/big.bin")) == Data(expected))

                let fd = open(m + "/a/log.txt", O_WRONLY | O_CREAT | O_APPEND, 0o644)
                #expect(fd >= 0)
                for line in ["one\n", "two\n"] { _ = line.withCString { write(fd, $0, strlen($0)) } }
                close(fd)
                let fd2 = open(m + "/a/log.txt", O_WRONLY | O_APPEND)
                _ = "three\n".withCString { write(fd2, $0, strlen($0)) }
                close(fd2)
                #expect(try String(contentsOfFile: m + "/a/log.txt", encoding: .utf8) == "one\ntwo\nthree\n")
                let fd3 = open(m + "/a/log.txt", O_WRONLY | O_TRUNC)
                close(fd3)
                #expect(try fm.attributesOfItem(atPath: m + "/a/log.txt")[.size] as? Int == 0)

                // Rename a file and a directory; the contents follow.
                try fm.moveItem(atPath: m + "/a/big.bin", toPath: m + "/a/b/moved.bin")
                try fm.moveItem(atPath: m + "/a/b", toPath: m + "/renamed")
                #expect(fm.fileExists(atPath: m + "/renamed/moved.bin"))
                #expect(fm.fileExists(atPath: m + "/renamed/c"))
                #expect(!fm.fileExists(atPath: m + "/a/b"))
                #expect(try Data(contentsOf: URL(fileURLWithPath: m + "/renamed/moved.bin")) == Data(expected))

                // Modes, times, links.
                try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: m + "/renamed/moved.bin")
                #expect(try fm.attributesOfItem(atPath: m + "/renamed/moved.bin")[.posixPermissions] as? Int == 0o600)
                let past = Date(timeIntervalSince1970: 1_000_000_000)
                try fm.setAttributes([.modificationDate: past], ofItemAtPath: m + "/renamed/moved.bin")
                #expect(try fm.attributesOfItem(atPath: m + "/renamed/moved.bin")[.modificationDate] as? Date == past)
                try fm.createSymbolicLink(atPath: m + "/link", withDestinationPath: "renamed/moved.bin")
                #expect(try fm.destinationOfSymbolicLink(atPath: m + "/link") == "renamed/moved.bin")
                #expect(try Data(contentsOf: URL(fileURLWithPath: m + "/link")) == Data(expected))

                // Listing, removal.
                #expect(Set(try fm.contentsOfDirectory(atPath: m)) == ["a", "renamed", "link"])
                try fm.removeItem(atPath: m + "/link")
                try fm.removeItem(atPath: m + "/renamed")
                #expect(Set(try fm.contentsOfDirectory(atPath: m)) == ["a"])
                #expect(rmdir(m + "/a") != 0 && errno == ENOTEMPTY)

                // statfs reports the data directory's file system.
                var st = statvfs()
                #expect(statvfs(m, &st) == 0)
                #expect(st.f_blocks > 0)
            }
        }

        @Test("a bad configuration exits 2 with one line naming the key, and changes nothing")
        func badConfiguration() throws {
            let cases: [(config: String, expected: String)] = [
                ("node: a\ndata: /tmp/x-data\n", "mount: required"),
                ("mount: /tmp/x-mnt\ndata: relative/path\n", "data: \"relative/path\" must be an absolute path"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nreplication:\n  sync-replica: 1\n", "replication.sync-replica: unknown key"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nlease:\n  etcd:\n    ttl: 2x\n", "lease.etcd.ttl: \"2x\" is not a duration"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nlease:\n  etcd:\n    ttl: 1s\n", "lease.etcd.ttl: must be at least 2s"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nreplication:\n  listen: nowhere\n", "replication.listen: \"nowhere\" is not host:port"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nretention: soon\n", "retention: \"soon\" is not a duration"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nlease:\n  type: consul\n", "lease.type: \"consul\" is not a lease type"),
                (
                    "mount: /tmp/x-mnt\ndata: /tmp/x-data\nlease:\n  static:\n    primary: c\n    peers: {a: 10.0.0.1:20202}\n",
                    "lease.static.primary: \"c\" is not one of lease.static.peers"
                ),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-mnt/data\n", "data: must not be inside the mount point"),
                ("mount: [unclosed\n", "invalid YAML"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nreplication:\n  sync-replicas: 1\n", "replication.sync-replicas: 1 is more than the 0 other node(s) in lease.static.peers"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\ndata: /tmp/x-data2\n", "data: appears twice (lines 2 and 3)"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nbackup:\n  path: /tmp/x-backup\n", "backup.path: /tmp/x-backup is not a directory"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nbackup:\n  path: /tmp/x-mnt/archive\n", "backup.path: \"/tmp/x-mnt/archive\" overlaps mount /tmp/x-mnt"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nbackup:\n  path: /var/tmp\n  retention: forever\n", "backup.retention: \"forever\" is not a duration"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nvip:\n  address: 10.0.0.100\n  interface: lo\n", "vip.address: \"10.0.0.100\" is not in CIDR form"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nvip:\n  address: 10.0.0.100/24\n  interface: nosuch0\n", "vip.interface: there is no network interface \"nosuch0\""),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nexec:\n  command: [app]\n  ready: {http: \"127.0.0.1:8080\"}\n", "exec.ready.http: \"127.0.0.1:8080\" is not an http:// or https:// URL"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-data\nhttp:\n  listen: 127.0.0.1:20203\n  max-lag: soon\n", "http.max-lag: \"soon\" is not a duration"),
                ("mount: /tmp/x-mnt\ndata: /tmp/x-mnt/../x-mnt/data\n", "data: must not be inside the mount point"),
                (
                    "node: node-c\nmount: /tmp/x-mnt\ndata: /tmp/x-data\nlease:\n  static:\n    primary: node-a\n    peers: {node-a: 10.0.0.1:20202}\n",
                    "lease.static.peers: does not name this node \"node-c\""
                ),
            ]
            let directory = NSTemporaryDirectory() + "replfs-config-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            for (index, testCase) in cases.enumerated() {
                let path = directory + "/bad\(index).yml"
                try testCase.config.write(toFile: path, atomically: true, encoding: .utf8)
                let result = try Command.run(TestEnvironment.replfsd, ["mount", "--config", path], timeout: 30)
                #expect(result.status == 2, "\(testCase.expected): \(result)")
                #expect(result.error.contains(testCase.expected), "expected \(testCase.expected): \(result.error)")
                #expect(result.error.split(separator: "\n").count == 1, "one line: \(result.error)")
                #expect(result.error.hasPrefix("replfsd: \(path)"), "names the file: \(result.error)")
            }
            #expect(!FileManager.default.fileExists(atPath: "/tmp/x-data"))
            #expect(!FileManager.default.fileExists(atPath: "/tmp/x-mnt"))

            let missing = try Command.run(TestEnvironment.replfsd, ["mount", "--config", directory + "/missing.yml"], timeout: 30)
            #expect(missing.status == 2)
            #expect(missing.error.contains("missing.yml: cannot read config file"))
        }

        @Test("a non-empty mount point, a foreign data directory or a busy node exits 2 and touches nothing")
        func refusals() throws {
            // Mount point with files in it.
            let node = try Node()
            defer { node.destroy() }
            try FileManager.default.createDirectory(atPath: node.mount, withIntermediateDirectories: true)
            try "old".write(toFile: node.mount + "/noise_private.key", atomically: true, encoding: .utf8)
            var result = try Command.run(TestEnvironment.replfsd, ["mount", "--config", node.configPath], timeout: 30)
            #expect(result.status == 2)
            #expect(result.error.contains("\(node.mount): mount point is not empty"), "\(result.error)")
            #expect(!FileManager.default.fileExists(atPath: node.data), "data directory untouched")
            try FileManager.default.removeItem(atPath: node.mount + "/noise_private.key")

            // A data directory with foreign content.
            try FileManager.default.createDirectory(atPath: node.data, withIntermediateDirectories: true)
            try "x".write(toFile: node.data + "/something", atomically: true, encoding: .utf8)
            result = try Command.run(TestEnvironment.replfsd, ["mount", "--config", node.configPath], timeout: 30)
            #expect(result.status == 2)
            #expect(result.error.contains("\(node.data): data directory is not empty and has no replfs.json"), "\(result.error)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: node.data) == ["something"])
            try FileManager.default.removeItem(atPath: node.data)

            // A data directory of another cluster.
            try node.start()
            try node.stop()
            try node.writeConfig("cluster: other\nnode: node-a\nmount: \(node.mount)\ndata: \(node.data)\n")
            result = try Command.run(TestEnvironment.replfsd, ["mount", "--config", node.configPath], timeout: 30)
            #expect(result.status == 2)
            #expect(result.error.contains("belongs to cluster \"replfs\", not \"other\""), "\(result.error)")
            #expect(!Node.isMounted(node.mount))

            // A second daemon on a running node: busy.
            try node.writeConfig("node: node-a\nmount: \(node.mount)\ndata: \(node.data)\n")
            try node.start()
            result = try Command.run(TestEnvironment.replfsd, ["mount", "--config", node.configPath], timeout: 30)
            #expect(result.status == 2)
            #expect(result.error.contains("mount point is busy"), "\(result.error)")
            let other = node.root + "/other.yml"
            try "node: node-a\nmount: \(node.root)/mnt2\ndata: \(node.data)\n".write(toFile: other, atomically: true, encoding: .utf8)
            result = try Command.run(TestEnvironment.replfsd, ["mount", "--config", other], timeout: 30)
            #expect(result.status == 2)
            #expect(result.error.contains("data directory is in use by another replfsd"), "\(result.error)")
            #expect(Node.isMounted(node.mount), "the running node is unaffected")
        }

        @Test("a -shm left in the bare mount point by a process that opened a database as the mount went away is removed at start; any other file still refuses")
        func straySharedMemory() throws {
            let node = try Node()
            defer { node.destroy() }
            try node.start()
            _ = try Command.sqlite(node.mount + "/app.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2);")
            _ = try node.stop()
            // What SQLite leaves when it opened app.db on the mount just
            // before the unmount and its -shm (opened by path at the first
            // read) just after: seen when every node of a cluster stops
            // under a writer.
            try Data(repeating: 0, count: 32_768).write(to: URL(fileURLWithPath: node.mount + "/app.db-shm"))
            try "x".write(toFile: node.mount + "/other.db", atomically: false, encoding: .utf8)
            let refused = try Command.run(TestEnvironment.replfsd, ["mount", "--config", node.configPath], timeout: 30)
            #expect(refused.status == 2, "anything but -shm files still refuses: \(refused)")
            #expect(FileManager.default.fileExists(atPath: node.mount + "/app.db-shm"), "a refused start changes nothing")
            try FileManager.default.removeItem(atPath: node.mount + "/other.db")

            try node.start()
            #expect(node.currentLog.contains("removing SQLite shared-memory files"), "\(node.currentLog)")
            #expect(try Command.sqlite(node.mount + "/app.db", "PRAGMA integrity_check; SELECT count(*) FROM t;") == "ok\n2")
            _ = try node.stop()
            #expect(try FileManager.default.contentsOfDirectory(atPath: node.mount).isEmpty)
        }

        @Test("a token file that group or others can read is refused with exit 2, as ssh refuses such keys")
        func tokenFileMode() throws {
            let node = try Node()
            defer { node.destroy() }
            let token = node.root + "/token"
            try "secret\n".write(toFile: token, atomically: true, encoding: .utf8)
            for mode: mode_t in [0o644, 0o640, 0o604] {
                chmod(token, mode)
                try node.writeConfig("node: node-a\nmount: \(node.mount)\ndata: \(node.data)\nreplication: {token-file: \(token)}\n")
                let result = try Command.run(TestEnvironment.replfsd, ["mount", "--config", node.configPath], timeout: 30)
                #expect(result.status == 2, "mode \(String(mode, radix: 8)): \(result)")
                #expect(result.error.contains("replication.token-file") && result.error.contains("chmod 600 \(token)"), "\(result.error)")
                #expect(!Node.isMounted(node.mount))
                #expect(!FileManager.default.fileExists(atPath: node.data), "data directory untouched")
            }
            chmod(token, 0o600)
            try node.start()
            #expect(Node.isMounted(node.mount))
        }

        @Test("after kill -9 the dead mount is cleared by the next start")
        func staleMount() throws {
            try withNode { node in
                try "kept".write(toFile: node.mount + "/file", atomically: false, encoding: .utf8)
                try node.kill9()
                var fs = statvfs()
                #expect(statvfs(node.mount, &fs) != 0 && errno == ENOTCONN, "the mount is dead")
                try node.start()
                #expect(try String(contentsOfFile: node.mount + "/file", encoding: .utf8) == "kept")
            }
        }
    }
}
