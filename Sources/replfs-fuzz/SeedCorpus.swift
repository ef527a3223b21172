import Foundation
import NIOCore
@testable import ReplFS

/// Seed inputs for each target, made with this project's own encoders, so
/// fuzzing starts from well-formed files, frames and requests
/// (`replfs-fuzz seeds DIR` writes them to `DIR/<target>/`; they are kept in
/// `Tests/fuzz/`).
enum SeedCorpus {
    static func inputs(for target: FuzzTarget) -> [(name: String, bytes: [UInt8])] {
        switch target {
        case .ltx: return ltxFiles()
        case .frames: return frameStreams()
        case .http: return httpRequests()
        case .config: return configFiles()
        }
    }

    static func write(to directory: String) throws {
        for target in FuzzTarget.allCases {
            let folder = directory + "/" + target.rawValue
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for (name, bytes) in inputs(for: target) {
                try Data(bytes).write(to: URL(fileURLWithPath: folder + "/" + name))
            }
        }
    }

    private static func ltxFiles() -> [(String, [UInt8])] {
        func file(pageSize: Int, pages: [UInt32], commit: UInt32, minTXID: UInt64, maxTXID: UInt64, pre: Checksum) -> [UInt8] {
            let header = LTXHeader(
                pageSize: UInt32(pageSize), commit: commit, minTXID: TXID(minTXID), maxTXID: TXID(maxTXID), timestamp: 1_700_000_000_000,
                preApplyChecksum: pre, nodeID: 1)
            do {
                var encoder = try LTXEncoder(header: header)
                var checksum = minTXID == 1 || commit == 0 ? Checksum.emptyDatabase : pre
                for pgno in pages {
                    var page = [UInt8](repeating: 0, count: pageSize)
                    for index in 0..<min(pageSize, 64) { page[index] = UInt8(truncatingIfNeeded: Int(pgno) &* 31 &+ index) }
                    page.withUnsafeBytes { checksum = checksum.replacingPage(old: .zero, new: Checksum.page(PageNumber(pgno), $0)) }
                    try page.withUnsafeBytes { try encoder.append(PageNumber(pgno), page: $0) }
                }
                try encoder.finish(postApplyChecksum: checksum)
                return encoder.takeBytes()
            } catch {
                fatalError("cannot encode a seed LTX file: \(error)")
            }
        }
        return [
            ("snapshot-4096", file(pageSize: 4096, pages: [1, 2, 3], commit: 3, minTXID: 1, maxTXID: 1, pre: .zero)),
            ("snapshot-512", file(pageSize: 512, pages: Array(1...8), commit: 8, minTXID: 1, maxTXID: 5, pre: .zero)),
            ("incremental", file(pageSize: 4096, pages: [2], commit: 3, minTXID: 7, maxTXID: 7, pre: Checksum(0x8000_0000_1234_5678))),
            ("deletion", file(pageSize: 4096, pages: [], commit: 0, minTXID: 9, maxTXID: 9, pre: Checksum(0x8000_0000_0000_0001))),
        ]
    }

    private static func frameStreams() -> [(String, [UInt8])] {
        func stream(_ messages: [ReplicationMessage]) -> [UInt8] {
            var buffer = ByteBufferAllocator().buffer(capacity: 256)
            for message in messages { ReplicationFrameCodec.encode(message, into: &buffer) }
            return Array(buffer.readableBytesView)
        }
        let position = ReplicationMessage.DatabasePosition(database: "db.sqlite", position: Position(txid: TXID(12), checksum: Checksum(0x8000_0000_0000_0001), epoch: Epoch(3)))
        return [
            ("handshake", stream([
                .hello(.init(version: ReplicationMessage.protocolVersion, cluster: "fuzz", node: "node-b", nodeID: 2, nonce: Array(repeating: 1, count: 16))),
                .challenge(.init(version: ReplicationMessage.protocolVersion, nonce: Array(repeating: 2, count: 16), proof: Array(repeating: 3, count: 32))),
                .authenticate(.init(proof: Array(repeating: 4, count: 32), epoch: Epoch(3), candidate: true, address: "10.0.0.2:20202", positions: [position],
                    files: [.init(path: "noise_private.key", checksum: 42)])),
                .welcome(.init(node: "node-a", nodeID: 1, epoch: Epoch(3), isPrimary: true, primary: "node-a", primaryAddress: "10.0.0.1:20202", proof: Array(repeating: 5, count: 32))),
            ])),
            ("stream", stream([
                .epochs(database: "db.sqlite", history: EpochHistory([.init(epoch: Epoch(1), firstTXID: TXID(1)), .init(epoch: Epoch(3), firstTXID: TXID(10))])),
                .ltx(database: "db.sqlite", part: .whole, bytes: ltxFiles()[0].1),
                .putFile(.init(path: "noise_private.key", mode: 0o600, content: Array("privkey:00".utf8))),
                .makeDirectory(path: "cache", mode: 0o755),
                .symlink(path: "cache/link", target: "../db.sqlite"),
                .removePath("old"),
                .heartbeat(epoch: Epoch(3)),
                .acknowledge(database: "db.sqlite", txid: TXID(12)),
                .logged(database: "db.sqlite", txid: TXID(13)),
                .handoffRequest(node: "node-b"),
                .handoff(.init(node: "node-b", address: "10.0.0.2:20202", epoch: Epoch(4))),
                .handoffAccepted(node: "node-b"),
                .refused(reason: "stale"),
            ])),
        ]
    }

    private static func httpRequests() -> [(String, [UInt8])] {
        func request(_ text: String) -> [UInt8] { Array(text.replacingOccurrences(of: "\n", with: "\r\n").utf8) }
        return [
            ("status", request("GET /status HTTP/1.1\nHost: replfsd\n\n")),
            ("promote", request("POST /promote HTTP/1.1\nHost: replfsd\nContent-Type: application/json\nContent-Length: 14\n\n{\"force\":true}")),
            ("export-chunked", request("POST /export HTTP/1.1\nHost: replfsd\nTransfer-Encoding: chunked\n\n2b\n{\"database\":\"db.sqlite\",\"path\":\"/tmp/out\"}\n0\n\n")),
            ("pipelined", request("GET /status?json=1 HTTP/1.1\nHost: a\n\nPOST /demote HTTP/1.1\nHost: a\nContent-Length: 0\n\nHEAD /status HTTP/1.1\n\n")),
        ]
    }

    private static func configFiles() -> [(String, [UInt8])] {
        let lone = "mount: /var/lib/headscale\ndata: /var/lib/replfs\n"
        let cluster = """
            node: node-a
            mount: /var/lib/headscale
            data: /var/lib/replfs
            retention: 10m
            replication:
              listen: 0.0.0.0:20202
              advertise: 10.0.0.1:20202
              token-file: /etc/replfs/token
            lease:
              type: static
              candidate: true
              static:
                primary: node-a
                peers: {node-a: 10.0.0.1:20202, node-b: 10.0.0.2:20202}
            admin:
              socket: /run/replfs/replfsd.sock
            exec:
              command: [headscale, serve]
              stop-timeout: 10s

            """
        let etcd = """
            mount: /m
            data: /d
            lease:
              type: etcd
              etcd:
                endpoints: [http://127.0.0.1:2379]
                key: /replfs/headscale/primary
                ttl: 2s
              max-lag: 0
            fuse:
              io-uring: auto

            """
        return [("lone", Array(lone.utf8)), ("cluster", Array(cluster.utf8)), ("etcd", Array(etcd.utf8))]
    }
}
