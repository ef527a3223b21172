#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization

/// A plain file, directory or symbolic link in the replicated tree, with a
/// digest of what replication copies (kind, mode, content or target).
public struct PlainEntry: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case file = 1
        case directory = 2
        case symlink = 3
    }

    public var path: String
    public var kind: Kind
    public var mode: UInt32
    public var digest: UInt64

    static func digest(kind: Kind, mode: UInt32, bytes: [UInt8]) -> UInt64 {
        var crc = CRC64()
        var prefix: [UInt8] = [kind.rawValue]
        BigEndian.append(mode, to: &prefix)
        prefix.withUnsafeBytes { crc.update($0) }
        bytes.withUnsafeBytes { crc.update($0) }
        return crc.value
    }
}

extension Store {
    // MARK: - Wiring

    /// How the store reaches the kernel's caches and locks of its mount.
    public func setMountAccess(_ access: any MountAccess) {
        mountAccess.withLock { $0 = access }
    }

    var mount: any MountAccess { mountAccess.withLock { $0 } }

    /// `DATA/tmp`, for snapshots in transit.
    var temporaryDirectory: String { directory.root + "/tmp" }

    // MARK: - What this node holds

    /// Every database with a history, and its position.
    public func positions() -> [(database: String, position: Position)] {
        databases.withLock { Array($0.values) }
            .map { ($0.path, $0.position) }
            .filter { $0.1.txid.rawValue > 0 }
            .sorted { $0.0 < $1.0 }
    }

    /// The plain files, directories and links, sorted by path (a directory
    /// before what it contains).
    public func plainEntries() -> [PlainEntry] {
        var entries: [PlainEntry] = []
        collectPlain(in: "", into: &entries)
        return entries.sorted { $0.path < $1.path }
    }

    private func collectPlain(in directoryPath: String, into entries: inout [PlainEntry]) {
        guard case .success(let fd) = Syscall.open(at: filesFD, directoryPath.isEmpty ? "." : directoryPath, flags: O_RDONLY | O_DIRECTORY) else { return }
        defer { Syscall.close(fd) }
        guard case .success(let list) = Syscall.directoryEntries(fd) else { return }
        for item in list {
            let path = directoryPath.isEmpty ? item.name : directoryPath + "/" + item.name
            guard let entry = plainEntry(path) else { continue }
            entries.append(entry)
            if entry.kind == .directory { collectPlain(in: path, into: &entries) }
        }
    }

    /// The entry at `path` if it is replicated whole (not a database and not
    /// one of SQLite's own files).
    func plainEntry(_ path: String) -> PlainEntry? {
        guard case .success(let st) = attributes(path) else { return nil }
        let mode = UInt32(st.st_mode & 0o7777)
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            return PlainEntry(path: path, kind: .directory, mode: mode, digest: PlainEntry.digest(kind: .directory, mode: mode, bytes: []))
        case S_IFLNK:
            guard case .success(let target) = readlink(path) else { return nil }
            return PlainEntry(path: path, kind: .symlink, mode: 0, digest: PlainEntry.digest(kind: .symlink, mode: 0, bytes: Array(target.utf8)))
        case S_IFREG:
            guard isPlain(path), !isDatabaseFile(path), case .success(let content) = readPlainFile(path) else { return nil }
            return PlainEntry(path: path, kind: .file, mode: mode, digest: PlainEntry.digest(kind: .file, mode: mode, bytes: content))
        default:
            return nil
        }
    }

    // MARK: - Primary: catch-up sources

    /// Where a replica at `position` can be brought to this node's current
    /// position from: the LTX files after it, if they are all retained and
    /// the replica's checksum matches this node's history at that TXID.
    public enum CatchUp {
        case upToDate
        /// LTX files to send in order. With `rebasedFrom`, the replica stands
        /// inside the first file (a merged file of a former replica) at a
        /// position this node went through: send that file's pages as a file
        /// starting right after the replica's position.
        case records(CatchUpRun, rebasedFrom: Position?)
        /// A snapshot is needed; `divergent` when the replica's history could
        /// not be confirmed as this node's (it keeps its copy aside).
        case snapshot(divergent: Bool)
    }

    public func catchUp(database path: String, from replica: Position?) -> CatchUp {
        guard let database = database(at: path, create: false) else { return .snapshot(divergent: replica != nil) }
        let current = database.position
        guard let replica, replica.txid.rawValue > 0 else { return current.txid.rawValue == 0 ? .upToDate : .snapshot(divergent: false) }
        if replica.txid > current.txid { return .snapshot(divergent: true) }
        // Log matching: the replica's last transaction must have been
        // committed in the epoch this node's history gives it. The checksum
        // alone cannot show it (invariant 1).
        if replica.epoch.isKnown, let mine = database.epochHistory.epoch(at: replica.txid), mine != replica.epoch {
            logger.warning(
                "a replica's history diverged from this node's: its last transaction was committed in another epoch",
                metadata: ["database": "\(path)", "replica-position": "\(replica)", "replica-epoch": "\(replica.epoch)", "epoch-here": "\(mine)"])
            return .snapshot(divergent: true)
        }
        if replica.txid == current.txid { return replica.checksum == current.checksum ? .upToDate : .snapshot(divergent: true) }
        database.waitForLogFiles()
        // Records of transactions committed after this point may still be
        // being written: they are left to the change feed.
        let limit = database.position.txid
        guard let log = database.existingLog else { return .snapshot(divergent: true) }
        let reader = log.reader(after: replica.txid)
        // The chain must start right after the replica, from its checksum.
        // If the records that would show it were pruned, the replica's
        // history cannot be confirmed as this node's: it keeps its copy aside.
        guard let first = reader.next(), first.maxTXID <= limit, first.minTXID <= replica.txid.next,
            let header = try? first.content.header()
        else {
            return .snapshot(divergent: true)
        }
        var rebase: Position?
        if first.minTXID == replica.txid.next {
            if header.tracksChecksums && header.preApplyChecksum != replica.checksum { return .snapshot(divergent: true) }
        } else {
            // Inside a merged file: confirmed only if this node went through
            // the very same position.
            guard database.recentChecksum(at: replica.txid) == replica.checksum else { return .snapshot(divergent: true) }
            rebase = replica
        }
        // The replica's history is this node's (the first record follows
        // it): send the unbroken run of records from there.
        return .records(CatchUpRun(reader: reader, first: first, limit: limit), rebasedFrom: rebase)
    }

    /// The epoch history of a database (empty when it has none).
    public func epochHistory(of path: String) -> EpochHistory {
        database(at: path, create: false)?.epochHistory ?? EpochHistory()
    }

    /// The primary's epoch history of a database (replica): adopted with the
    /// next batch of its files that is applied.
    public func notePrimaryEpochs(database path: String, _ history: EpochHistory) {
        database(at: path, create: true)?.notePrimaryEpochs(history)
    }

    /// A consistent copy of a database at its current position (in `DATA/tmp`).
    public func snapshot(database path: String) -> Result<DatabaseSnapshot, Errno> {
        guard let database = database(at: path, create: false) else { return .failure(.noEntry) }
        _ = Syscall.mkdir(at: AT_FDCWD, temporaryDirectory, mode: 0o700)
        let file = temporaryDirectory + "/snapshot-\(DatabaseKey.escape(path))-\(UUID().uuidString.prefix(8)).db"
        let result = database.snapshot(into: file)
        // A copy that failed (no space, a page that would not verify) is not left behind.
        if case .failure = result { _ = Syscall.unlink(at: AT_FDCWD, file) }
        return result
    }

    /// Makes sure every transaction logged so far has its LTX file.
    public func waitForDatabaseLogFiles() {
        waitForLogFiles()
    }

    // MARK: - Replica: applying what the primary sends

    /// Applies LTX files for a database, in order, as one batch (see
    /// ``Database/applyReplicated``): the position reached, and why the
    /// rest was refused if it was. `logged` is told when transactions are
    /// durable here, before they are applied.
    public func applyTransactions(
        database path: String, _ files: [LTXContent], divergent: Bool, logged: (TXID) -> Void = { _ in }
    ) -> (position: Position?, refusal: ApplyRefusal?) {
        guard let database = database(at: path, create: true) else { return (nil, .io(database: path, .io)) }
        return database.applyReplicated(files, mount: mount, aside: { self.asideDestination($0, $1) }, keepAside: divergent, logged: logged)
    }

    /// Where a database this node holds is kept before the primary's
    /// snapshot replaces it (invariant 6: never deleted):
    /// `DATA/aside/<key>.<time>.txid-<N>`, the TXID this node had reached.
    func asideDestination(_ path: String, _ position: Position) -> String {
        let asideDirectory = directory.root + "/aside"
        _ = Syscall.mkdir(at: AT_FDCWD, asideDirectory, mode: 0o700)
        let key = DatabaseKey.escape(path)
        let suffix = ".txid-\(position.txid.rawValue)"
        // The same position kept already (a retried snapshot): that copy.
        let existing = (try? Syscall.listDirectory(asideDirectory).get()) ?? []
        if let kept = existing.first(where: { name in
            // <key>.<time><suffix>, the time without dots.
            name.hasPrefix(key + ".") && name.hasSuffix(suffix) && !name.dropFirst(key.count + 1).dropLast(suffix.count).contains(".")
        }) {
            return asideDirectory + "/" + kept
        }
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        return asideDirectory + "/" + key + "." + stamp + suffix
    }

    /// Databases moved aside (for status): their paths, oldest first.
    public var movedAside: [String] {
        let directory = self.directory.root + "/aside"
        let names = (try? Syscall.listDirectory(directory).get()) ?? []
        return names.filter { !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") && !$0.hasSuffix("-journal") }.sorted().map { directory + "/" + $0 }
    }

    /// What an aside copy's name says: the database and the TXID this node
    /// had reached ("app.db through TXID 42"), if it says it.
    public static func describeAside(_ path: String) -> String? {
        let parts = (path.split(separator: "/").last ?? "").split(separator: ".")
        guard parts.count >= 3, let last = parts.last, last.hasPrefix("txid-") else { return nil }
        return DatabaseKey.unescape(parts.dropLast(2).joined(separator: ".")) + " through TXID " + last.dropFirst(5)
    }

    /// Writes a plain file whole and atomically (a reader sees the old or
    /// the new content, never a mix): into `DATA/tmp`, then renamed in.
    public func applyFile(path: String, mode: UInt32, content: [UInt8]) -> Result<Void, Errno> {
        _ = Syscall.mkdir(at: AT_FDCWD, temporaryDirectory, mode: 0o700)
        let staged = temporaryDirectory + "/file-\(UUID().uuidString)"
        let result = Syscall.open(at: AT_FDCWD, staged, flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode_t(mode)).flatMap { fd in
            defer { Syscall.close(fd) }
            return content.withUnsafeBytes { Syscall.write(fd, $0) }
                .flatMap { Syscall.fchmod(fd, mode: mode_t(mode)) }
                .flatMap { Syscall.fsync(fd, dataOnly: true) }
        }.flatMap {
            ensureParent(of: path)
            return Syscall.rename(at: AT_FDCWD, staged, to: directory.files + "/" + path)
        }
        if case .failure = result { _ = Syscall.unlink(at: AT_FDCWD, staged) }
        mount.invalidateName(path: path)
        return result
    }

    public func applyDirectory(path: String, mode: UInt32) -> Result<Void, Errno> {
        ensureParent(of: path)
        var result = Syscall.mkdir(at: filesFD, path, mode: mode_t(mode))
        if case .failure(.exists) = result { result = Syscall.chmod(at: filesFD, path, mode: mode_t(mode)) }
        mount.invalidateName(path: path)
        return result
    }

    public func applySymlink(path: String, target: String) -> Result<Void, Errno> {
        ensureParent(of: path)
        _ = Syscall.unlink(at: filesFD, path)
        let result = Syscall.symlink(target, at: filesFD, path)
        mount.invalidateName(path: path)
        return result
    }

    /// Removes a plain file, link or directory (with what is in it).
    public func applyRemove(path: String) -> Result<Void, Errno> {
        let result: Result<Void, Errno>
        if case .success(let st) = attributes(path), (st.st_mode & S_IFMT) == S_IFDIR {
            result = Syscall.removeTree(directory.files + "/" + path)
        } else {
            result = Syscall.unlink(at: filesFD, path)
        }
        mount.invalidateName(path: path)
        if case .failure(.noEntry) = result { return .success(()) }
        return result
    }

    public func applyRename(from: String, to: String) -> Result<Void, Errno> {
        ensureParent(of: to)
        let result = Syscall.rename(at: filesFD, from, to: to)
        mount.invalidateName(path: from)
        mount.invalidateName(path: to)
        return result
    }

    private func ensureParent(of path: String) {
        guard let slash = path.lastIndex(of: "/") else { return }
        _ = Syscall.makeDirectories(directory.files + "/" + path[..<slash])
    }
}

/// The records a replica needs to catch up, read from the log one at a time
/// (a replica far behind does not cost the primary memory): the unbroken
/// run from the replica's position up to the position when it was asked.
/// A break (a file retention removed meanwhile) ends the run; the next
/// catch-up goes on from there.
public final class CatchUpRun {
    private let reader: LTXLogReader
    private var first: LTXLogRecord?
    private var expected: TXID
    private let limit: TXID

    init(reader: LTXLogReader, first: LTXLogRecord, limit: TXID) {
        self.reader = reader
        self.first = first
        self.expected = first.minTXID
        self.limit = limit
    }

    /// The next LTX file to send, or nil at the end of the run.
    public func next() -> LTXContent? {
        guard let record = first.take() ?? reader.next(), record.minTXID == expected, record.maxTXID <= limit else { return nil }
        expected = record.maxTXID.next
        return record.content
    }
}
