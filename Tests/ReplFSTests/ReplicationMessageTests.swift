import Foundation
import NIOCore
import Testing

@testable import ReplFS

@Suite("Replication messages")
struct ReplicationMessageTests {
    static let messages: [ReplicationMessage] = [
        .hello(.init(version: 2, cluster: "c", node: "node-b", nonce: [1, 2, 3])),
        .challenge(.init(version: 2, cluster: "c", node: "node-a", epoch: 7, isPrimary: false, primary: "node-c", primaryAddress: "10.0.0.3:20202", nonce: [4], proof: [5, 6])),
        .authenticate(.init(proof: [9], epoch: 7, candidate: true, address: "10.0.0.2:20202",
            positions: [.init(database: "db.sqlite", position: Position(txid: TXID(12), checksum: Checksum(0x8000_0000_0000_0001)))],
            files: [.init(path: "noise_private.key", checksum: 42)])),
        .handoffRequest(node: "node-b"),
        .handoff(.init(node: "node-b", address: "10.0.0.2:20202", epoch: 8)),
        .handoffAccepted(node: "node-b"),
        .heartbeat(epoch: 8),
    ]

    @Test("every message survives a frame round trip")
    func roundTrip() throws {
        for message in Self.messages {
            var buffer = ReplicationFrameCodec.frame(message, allocator: ByteBufferAllocator())
            let decoded = try ReplicationFrameCodec.decode(&buffer)
            #expect(decoded == message)
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test("a proof covers the claims: a changed epoch or primary fails verification")
    func proofCoversClaims() {
        let authenticator = Authenticator(token: Array("secret".utf8))
        var challenge = ReplicationMessage.Challenge(
            version: 2, cluster: "c", node: "node-a", epoch: 3, isPrimary: true, primary: "node-a", primaryAddress: "a:1", nonce: [1], proof: [])
        challenge.proof = authenticator.proof(role: .primary, cluster: "c", challenge: [9], own: [1], claims: challenge.claims)
        #expect(authenticator.verify(challenge.proof, role: .primary, cluster: "c", challenge: [9], own: [1], claims: challenge.claims))
        var altered = challenge
        altered.epoch = 4
        #expect(!authenticator.verify(altered.proof, role: .primary, cluster: "c", challenge: [9], own: [1], claims: altered.claims))
        altered = challenge
        altered.primary = "node-x"
        #expect(!authenticator.verify(altered.proof, role: .primary, cluster: "c", challenge: [9], own: [1], claims: altered.claims))
        #expect(!Authenticator(token: Array("other".utf8)).verify(challenge.proof, role: .primary, cluster: "c", challenge: [9], own: [1], claims: challenge.claims))
    }

    @Test("the node state is saved durably and read back; a missing file is a fresh state")
    func nodeState() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("replfs-state-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = NodeStateFile(directory: DataDirectory(root: root))
        #expect(try file.load() == NodeState())
        try file.save(NodeState(epoch: 9, primary: "node-b"))
        #expect(try file.load() == NodeState(epoch: 9, primary: "node-b"))
        try "garbage".write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(throws: StoreError.self) { try file.load() }
    }
}
