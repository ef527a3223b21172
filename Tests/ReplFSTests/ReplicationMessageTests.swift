import Foundation
import NIOCore
import Testing

@testable import ReplFS

@Suite("Replication messages")
struct ReplicationMessageTests {
    static let messages: [ReplicationMessage] = [
        .hello(.init(version: 3, cluster: "c", node: "node-b", nodeID: 0xfeed_beef_0000_0001, nonce: [1, 2, 3])),
        .challenge(.init(version: 3, nonce: [4], proof: [5, 6])),
        .welcome(.init(node: "node-a", nodeID: 77, epoch: Epoch(7), isPrimary: false, primary: "node-c", primaryAddress: "10.0.0.3:20202", proof: [5, 6])),
        .authenticate(.init(proof: [9], epoch: Epoch(7), candidate: true, probe: true, address: "10.0.0.2:20202",
            positions: [.init(database: "db.sqlite", position: Position(txid: TXID(12), checksum: Checksum(0x8000_0000_0000_0001), epoch: Epoch(6)))],
            files: [.init(path: "noise_private.key", checksum: 42)])),
        .handoffRequest(node: "node-b"),
        .epochs(database: "db.sqlite", history: EpochHistory([.init(epoch: Epoch(3), firstTXID: TXID(1)), .init(epoch: Epoch(9), firstTXID: TXID(40))])),
        .handoff(.init(node: "node-b", address: "10.0.0.2:20202", epoch: Epoch(8))),
        .handoffAccepted(node: "node-b"),
        .heartbeat(epoch: Epoch(8)),
        .acknowledge(database: "db.sqlite", txid: TXID(41)),
        .logged(database: "db.sqlite", txid: TXID(42)),
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

    @Test("a proof covers the claims: a changed epoch, primary or node ID fails verification")
    func proofCoversClaims() {
        let authenticator = Authenticator(token: Array("secret".utf8))
        var challenge = ReplicationMessage.Welcome(
            node: "node-a", nodeID: 5, epoch: Epoch(3), isPrimary: true, primary: "node-a", primaryAddress: "a:1", proof: [])
        challenge.proof = authenticator.proof(role: .primary, cluster: "c", challenge: [9], own: [1], claims: challenge.claims)
        #expect(authenticator.verify(challenge.proof, role: .primary, cluster: "c", challenge: [9], own: [1], claims: challenge.claims))
        var altered = challenge
        altered.epoch = 4
        #expect(!authenticator.verify(altered.proof, role: .primary, cluster: "c", challenge: [9], own: [1], claims: altered.claims))
        altered = challenge
        altered.primary = "node-x"
        #expect(!authenticator.verify(altered.proof, role: .primary, cluster: "c", challenge: [9], own: [1], claims: altered.claims))
        altered = challenge
        altered.nodeID = 6
        #expect(!authenticator.verify(altered.proof, role: .primary, cluster: "c", challenge: [9], own: [1], claims: altered.claims))
        // A replica's proof covers the name and node ID of its hello.
        let hello = ReplicationMessage.Hello(version: 3, cluster: "c", node: "node-b", nodeID: 1, nonce: [2])
        let authenticate = ReplicationMessage.Authenticate(proof: [], epoch: Epoch(0), candidate: true, address: "b:1", positions: [], files: [])
        let proof = authenticator.proof(role: .replica, cluster: "c", challenge: [1], own: [2], claims: authenticate.claims(identity: hello))
        var impostor = hello
        impostor.nodeID = 2
        #expect(authenticator.verify(proof, role: .replica, cluster: "c", challenge: [1], own: [2], claims: authenticate.claims(identity: hello)))
        #expect(!authenticator.verify(proof, role: .replica, cluster: "c", challenge: [1], own: [2], claims: authenticate.claims(identity: impostor)))
        #expect(!Authenticator(token: Array("other".utf8)).verify(challenge.proof, role: .primary, cluster: "c", challenge: [9], own: [1], claims: challenge.claims))
    }

    @Test("the node state is saved durably and read back; a missing file is a fresh state")
    func nodeState() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("replfs-state-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = NodeStateFile(directory: DataDirectory(root: root))
        #expect(try file.load() == NodeState())
        try file.save(NodeState(epoch: Epoch(9), primary: "node-b"))
        #expect(try file.load() == NodeState(epoch: Epoch(9), primary: "node-b"))
        try "garbage".write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(throws: StoreError.self) { try file.load() }
    }
}
