import Foundation
import Logging
import ReplFS
import Synchronization
import Testing

/// The role controller carrying out what a lease reports, on a store in a
/// temporary directory: no mount, no network, no lease keeper.
@Suite("Role controller without a mount")
struct RoleControllerTests {
    @Test("elected, lost, following: writes open and close, the application starts and is killed, the epoch is persisted, in that order")
    func leaseEventsInOrder() throws {
        let node = try ScratchStore(writable: false)
        let application = RecordingApplication()
        let server = ReplicationServer(
            store: node.store, feed: ChangeFeed(), authenticator: Authenticator(token: nil), cluster: "unit", node: "n1", nodeID: 1,
            logger: Logger(label: "test"))
        defer { server.stop() }
        let identity = ReplicaClient.Identity(
            cluster: "unit", node: "n1", nodeID: 1, candidate: true, address: "127.0.0.1:1", authenticator: Authenticator(token: nil))
        let controller = try RoleController(
            store: node.store, feed: ChangeFeed(), server: server, identity: identity, stateFile: NodeStateFile(directory: node.directory),
            application: application, logger: Logger(label: "test"))
        defer { controller.shutdown() }
        #expect(controller.role == .fenced && !node.store.isWritable, "nothing is written before a lease decides")

        controller.report(.elected(epoch: Epoch(3)))
        #expect(controller.role == .primary && controller.epoch == Epoch(3))
        #expect(node.store.isWritable)
        #expect(try NodeStateFile(directory: node.directory).load().epoch == Epoch(3), "the epoch is on disk before writes open")
        #expect(application.events == ["start"])
        do {
            let db = try node.vfs.open("app.db")
            try db.execute("CREATE TABLE t(v); INSERT INTO t VALUES (1)")
        }
        #expect(node.store.position(of: "app.db")?.epoch == Epoch(3), "transactions are committed in the lease's epoch")

        controller.report(.lost(reason: "a test"))
        #expect(controller.role == .fenced && !node.store.isWritable)
        #expect(application.events == ["start", "kill"], "a node that lost its lease kills its application, it does not ask")
        #expect(throws: (any Error).self, "a write after the lease is lost fails") {
            try node.vfs.open("app.db").execute("INSERT INTO t VALUES (2)")
        }
        #expect(controller.snapshot.lastError?.contains("a test") == true)

        controller.report(.following(Peer(name: "n2", address: "127.0.0.1:9"), epoch: Epoch(4)))
        #expect(controller.role == .replica && controller.primary?.name == "n2" && controller.epoch == Epoch(4))
        #expect(!node.store.isWritable)
        #expect(try NodeStateFile(directory: node.directory).load() == NodeState(epoch: Epoch(4), primary: "n2"))
    }
}

/// An application that records what it was asked to do.
final class RecordingApplication: SupervisedApplication {
    private let log = Mutex<[String]>([])
    var events: [String] { log.withLock { $0 } }

    func start() {
        log.withLock { $0.append("start") }
    }

    func stop(immediately: Bool) {
        log.withLock { $0.append(immediately ? "kill" : "stop") }
    }
}
