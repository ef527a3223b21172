import CSQLite
import Foundation
import Logging
import ReplFS
import Synchronization
import Testing

/// Commit capture and replica apply driven by real SQLite through a
/// ``Store`` in a temporary directory (``StoreVFS``): no root, no FUSE, no
/// mount. The integration tests check the same through real mounts.
@Suite("Capture and apply without a mount")
struct CaptureWithoutMountTests {
    @Test("every commit in each journal mode is captured, and the log rebuilds the database byte for byte", arguments: ["DELETE", "TRUNCATE", "PERSIST", "WAL"])
    func everyCommitCaptured(journalMode: String) throws {
        let primary = try ScratchStore()
        do {
            let db = try primary.vfs.open("app.db")
            try db.execute("PRAGMA journal_mode=\(journalMode); CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            for i in 1...50 { try db.execute("INSERT INTO t(v) VALUES ('row \(i) \(String(repeating: "x", count: i * 40))')") }
            try db.execute("BEGIN; INSERT INTO t(v) VALUES ('rolled back'); ROLLBACK")
        }
        // Closing the last connection checkpoints a WAL into the file.
        let position = try #require(primary.store.position(of: "app.db"))
        let bytes = try primary.fileBytes("app.db")
        #expect(position.txid.rawValue >= 51, "the schema and 50 inserts are 51 commits at least: \(position)")
        #expect(position.checksum == DatabaseImage.checksum(of: bytes), "the position's checksum is the content's (invariant 1)")
        #expect(try SQLiteHandle(path: primary.files + "/app.db", readOnly: true).query("SELECT count(*) FROM t") == ["50"])

        let export = primary.root + "/export"
        let exported = try primary.store.exportLog(database: "app.db", into: export).get()
        #expect(exported.last == position.txid)
        let rebuilt = primary.root + "/rebuilt.db"
        let summary = try LTXRebuilder().rebuild(directory: export, into: rebuilt)
        #expect(summary.lastTXID == position.txid && summary.postApplyChecksum == position.checksum)
        #expect(try Data(contentsOf: URL(fileURLWithPath: rebuilt)) == Data(bytes), "the log rebuilds the database byte for byte")
    }

    @Test("a rolled-back transaction leaves the position where it was")
    func rollbackChangesNothing() throws {
        let primary = try ScratchStore()
        let db = try primary.vfs.open("app.db")
        try db.execute("PRAGMA journal_mode=DELETE; CREATE TABLE t(v); INSERT INTO t VALUES (1)")
        let before = try #require(primary.store.position(of: "app.db"))
        try db.execute("BEGIN; INSERT INTO t VALUES (2); INSERT INTO t SELECT v + 10 FROM t; ROLLBACK")
        #expect(primary.store.position(of: "app.db") == before)
    }

    @Test("a replica store applies the primary's records as they are committed and holds the same database")
    func replicaApplies() throws {
        let primary = try ScratchStore()
        let replica = try ScratchStore(writable: false)
        let mount = RecordingMountAccess()
        replica.store.setMountAccess(mount)
        let records = RecordedTransactions()
        primary.store.setObserver(records)
        do {
            let db = try primary.vfs.open("app.db")
            try db.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
            for i in 1...30 { try db.execute("INSERT INTO t(v) VALUES (randomblob(\(i * 100)))") }
            try db.execute("CREATE INDEX t_v ON t(v); DELETE FROM t WHERE id % 3 = 0")
        }
        let position = try #require(primary.store.position(of: "app.db"))
        var applied: Position?
        for batch in records.take(database: "app.db").chunked(7) {
            let result = replica.store.applyTransactions(database: "app.db", batch, divergent: false)
            #expect(result.refusal == nil, "\(String(describing: result.refusal))")
            applied = result.position
        }
        // (The epoch comes with the primary's history, which replication sends apart.)
        #expect(applied?.txid == position.txid && applied?.checksum == position.checksum)
        #expect(replica.store.position(of: "app.db")?.checksum == position.checksum)
        let copy = try SQLiteHandle(path: replica.files + "/app.db", readOnly: true)
        #expect(try copy.query("PRAGMA integrity_check") == ["ok"])
        #expect(try copy.query("SELECT count(*), sum(length(v)) FROM t") == SQLiteHandle(path: primary.files + "/app.db", readOnly: true).query("SELECT count(*), sum(length(v)) FROM t"))
        #expect(DatabaseImage.checksum(of: try replica.fileBytes("app.db")) == position.checksum)
        #expect(mount.invalidated.withLock { $0.contains("app.db") }, "the kernel's cached pages of the database are dropped")
    }

    @Test("a corrupt or out-of-order record is refused and changes nothing on the replica")
    func badRecordsRefused() throws {
        let primary = try ScratchStore()
        let replica = try ScratchStore(writable: false)
        let records = RecordedTransactions()
        primary.store.setObserver(records)
        do {
            let db = try primary.vfs.open("app.db")
            try db.execute("CREATE TABLE t(v); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)")
        }
        let all = records.take(database: "app.db")
        try #require(all.count >= 3)
        let first = replica.store.applyTransactions(database: "app.db", [all[0]], divergent: false)
        let start = try #require(first.position)

        // Out of order: the third before the second.
        let skipped = replica.store.applyTransactions(database: "app.db", [all[2]], divergent: false)
        guard case .notNext = skipped.refusal else { Issue.record("not refused as out of order: \(String(describing: skipped.refusal))"); return }
        #expect(replica.store.position(of: "app.db") == start)

        // One byte of the page data flipped: the file checksum no longer holds.
        guard case .bytes(var bytes) = all[1] else { Issue.record("expected an in-memory record"); return }
        bytes[LTXHeader.size + 10] ^= 0xFF
        let corrupt = replica.store.applyTransactions(database: "app.db", [.bytes(bytes)], divergent: false)
        guard case .corrupt = corrupt.refusal else { Issue.record("not refused as corrupt: \(String(describing: corrupt.refusal))"); return }
        #expect(replica.store.position(of: "app.db") == start)
        #expect(DatabaseImage.checksum(of: try replica.fileBytes("app.db")) == start.checksum, "the file is as the first record left it")
    }
}

extension CaptureWithoutMountTests {
    @Test("a journal left hot when writes stopped at the commit point is rolled back before the primary's snapshot: readers open the database, the copy kept aside holds only what was committed")
    func staleJournalRolledBack() throws {
        let old = try ScratchStore()
        let other = try ScratchStore()
        let records = RecordedTransactions()
        other.store.setObserver(records)
        do {
            let db = try other.vfs.open("app.db")
            try db.execute("PRAGMA journal_mode=DELETE; CREATE TABLE t(v); INSERT INTO t VALUES ('new primary')")
        }
        // An application that keeps its connection, as Headscale does.
        let writer = try old.vfs.open("app.db")
        try writer.execute("PRAGMA journal_mode=DELETE; CREATE TABLE t(v); INSERT INTO t VALUES ('committed')")
        // The lease runs out just as SQLite deletes the journal (its commit point).
        let store = old.store
        old.vfs.beforeDelete.withLock { $0 = { path in if path == "app.db-journal" { store.stopWrites(reason: "lost its lease") } } }
        #expect(throws: (any Error).self, "the commit is refused") { try writer.execute("INSERT INTO t VALUES ('never committed')") }
        #expect(FileManager.default.fileExists(atPath: old.files + "/app.db-journal"), "the refused commit leaves the journal hot")

        // Rejoining as a replica of a primary with another history: a snapshot.
        let result = old.store.applyTransactions(database: "app.db", records.take(database: "app.db"), divergent: true)
        #expect(result.refusal == nil, "\(String(describing: result.refusal))")
        #expect(!FileManager.default.fileExists(atPath: old.files + "/app.db-journal"))
        #expect(try SQLiteHandle(path: old.files + "/app.db", readOnly: true).query("SELECT v FROM t") == ["new primary"])
        let asides = old.store.movedAside
        try #require(asides.count == 1, "\(asides)")
        let kept = try SQLiteHandle(path: asides[0], readOnly: true)
        #expect(try kept.query("PRAGMA integrity_check") == ["ok"])
        #expect(try kept.query("SELECT v FROM t") == ["committed"], "the copy holds what this node committed, not the refused transaction")
        withExtendedLifetime(writer) {}
    }
}

/// A data directory and a store in a temporary directory.
final class ScratchStore {
    let root: String
    let directory: DataDirectory
    let store: Store
    let vfs: StoreVFS
    var files: String { root + "/data/files" }

    init(writable: Bool = true) throws {
        root = NSTemporaryDirectory() + "replfs-unit-" + UUID().uuidString
        directory = DataDirectory(root: root + "/data")
        try directory.prepare(cluster: "unit", node: "n1")
        store = try Store(directory: directory, nodeID: 1, logger: Logger(label: "test"))
        if writable { store.startWrites(epoch: Epoch(1)) } else { store.stopWrites() }
        vfs = StoreVFS(store: store, filesRoot: root + "/data/files")
    }

    deinit {
        store.close()
        try? FileManager.default.removeItem(atPath: root)
    }

    func fileBytes(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: files + "/" + path)))
    }
}

/// The checksum LTX gives a database image: every page but the lock page.
enum DatabaseImage {
    static func checksum(of bytes: [UInt8]) -> Checksum {
        guard bytes.count >= 100 else { return .emptyDatabase }
        let pageSize = Int(bytes[16]) << 8 | Int(bytes[17]) == 1 ? 65536 : Int(bytes[16]) << 8 | Int(bytes[17])
        let lockPage = PageNumber.lockPage(pageSize: pageSize)
        var checksum = Checksum.emptyDatabase
        bytes.withUnsafeBytes { raw in
            for index in 0..<(bytes.count / pageSize) {
                let pgno = PageNumber(UInt32(index + 1))
                if pgno == lockPage { continue }
                let page = UnsafeRawBufferPointer(rebasing: raw[(index * pageSize)..<((index + 1) * pageSize)])
                checksum = checksum.replacingPage(old: .zero, new: Checksum.page(pgno, page))
            }
        }
        return checksum
    }
}

/// The store's transactions, as replication would receive them.
final class RecordedTransactions: StoreObserver, @unchecked Sendable {
    private let records = Mutex<[String: [LTXContent]]>([:])

    func storeDidChange(_ change: StoreChange) {
        guard case .transaction(let database, _, _, let ltx) = change else { return }
        records.withLock { $0[database, default: []].append(ltx) }
    }

    func take(database: String) -> [LTXContent] {
        records.withLock { $0.removeValue(forKey: database) ?? [] }
    }
}

/// A mount that remembers what the store asked the kernel to forget.
final class RecordingMountAccess: MountAccess {
    let invalidated = Mutex<Set<String>>([])

    func invalidateContent(path: String, _ what: CacheInvalidation) {
        invalidated.withLock { _ = $0.insert(path) }
    }

    func invalidateName(path: String) {}

    func excludeReaders(database path: String, walMode: Bool) -> any ReaderGate {
        NoMountAccess().excludeReaders(database: path, walMode: walMode)
    }

    func tryExcludeReaders(database path: String, walMode: Bool, patience: Duration) -> (any ReaderGate)? {
        NoMountAccess().excludeReaders(database: path, walMode: walMode)
    }

    func openSharedMemory(database path: String) -> Int32? { nil }
}

extension Array {
    func chunked(_ size: Int) -> [[Element]] {
        stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min($0 + size, count)]) }
    }
}
