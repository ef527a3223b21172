#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// The log of one database: `DATA/ltx/<key>/`, its segments and single LTX
/// files (``LTXLogDirectory``).
///
/// A committed transaction is recorded in the store's ``LTXSpool`` at the
/// commit point and appended to a segment by the ``LTXMaterializer`` just
/// after, off the commit path. Large transactions (snapshots) stream
/// straight into a single file instead.
final class LTXLog: Sendable {
    /// Directory holding the files.
    let directory: String
    /// The directory's name under `DATA/ltx` (see ``DatabaseKey``).
    let key: String
    let directoryFD: Int32
    private let spool: LTXSpool
    private let materializer: LTXMaterializer
    private let files: Mutex<LTXLogDirectory>

    /// `databasePath` is the database's path in the mount, recorded in the
    /// directory when `key` does not hold it whole (``DatabaseKey``).
    init(directory: String, key: String, databasePath: String, spool: LTXSpool, materializer: LTXMaterializer) throws(StoreError) {
        self.directory = directory
        self.key = key
        self.spool = spool
        self.materializer = materializer
        if case .failure(let error) = Syscall.mkdir(at: AT_FDCWD, directory, mode: 0o755), error != .exists {
            throw StoreError(.io, "cannot create LTX directory", path: directory, errno: error)
        }
        let fd: Int32
        switch Syscall.open(at: AT_FDCWD, directory, flags: O_RDONLY | O_DIRECTORY) {
        case .success(let value): fd = value
        case .failure(let error): throw StoreError(.io, "cannot open LTX directory", path: directory, errno: error)
        }
        directoryFD = fd
        if DatabaseKey.isShortened(key, of: databasePath) {
            try LTXLog.recordPath(databasePath, in: directoryFD, directory: directory)
        }
        // A file being written when the daemon died: its record is still in
        // the spool, or its transaction was never acknowledged.
        if case .success(let entries) = Syscall.directoryEntries(directoryFD) {
            for entry in entries where entry.name.hasSuffix(LTXMaterializer.temporarySuffix) { _ = Syscall.unlink(at: directoryFD, entry.name) }
        }
        files = Mutex(LTXLogDirectory(directoryFD: fd))
    }

    deinit {
        files.withLock { $0.seal() }
        Syscall.close(directoryFD)
    }

    /// Writes the database's path into its log directory (once, durably,
    /// before the first record of the log can exist).
    private static func recordPath(_ path: String, in directoryFD: Int32, directory: String) throws(StoreError) {
        let name = DatabaseKey.pathFileName
        if case .success = Syscall.lstat(at: directoryFD, name) { return }
        if case .failure(let error) = writeDurably(Array(path.utf8), name: name, in: directoryFD) {
            throw StoreError(.io, "cannot record the database path", path: directory + "/" + name, errno: error)
        }
    }

    /// Replaces the file `name` with `bytes`, on stable storage on return:
    /// written under a temporary name, synced, renamed, the directory synced.
    private static func writeDurably(_ bytes: [UInt8], name: String, in directoryFD: Int32) -> Result<Void, Errno> {
        let temporary = name + LTXMaterializer.temporarySuffix
        return Syscall.open(at: directoryFD, temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).flatMap { fd in
            defer { Syscall.close(fd) }
            return bytes.withUnsafeBytes { Syscall.write(fd, $0) }.flatMap { Syscall.fsync(fd) }
        }
        .flatMap { Syscall.rename(at: directoryFD, temporary, to: name) }.flatMap { Syscall.fsync(directoryFD) }
    }

    // MARK: - Epochs

    /// The file holding the database's ``EpochHistory``.
    static let epochsFileName = "epochs"

    /// The epoch history recorded in the directory; empty when there is none
    /// (a log from before epochs were recorded) or it cannot be read.
    func loadEpochs(logger: Logger) -> EpochHistory {
        guard case .success(let fd) = Syscall.open(at: directoryFD, Self.epochsFileName, flags: O_RDONLY) else { return EpochHistory() }
        defer { Syscall.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        guard case .success(let count) = buffer.withUnsafeMutableBytes({ Syscall.pread(fd, into: $0, at: 0) }),
            let history = EpochHistory(parsing: String(decoding: buffer.prefix(count), as: UTF8.self))
        else {
            logger.error("cannot read the epoch history; epochs of this database's transactions are unknown", metadata: ["file": "\(directory)/\(Self.epochsFileName)"])
            return EpochHistory()
        }
        return history
    }

    /// Records `history` durably.
    func saveEpochs(_ history: EpochHistory) -> Result<Void, Errno> {
        Self.writeDurably(Array(history.description.utf8), name: Self.epochsFileName, in: directoryFD)
    }

    /// The database path a log directory recorded, if its key was cut short.
    static func recordedPath(ltxRoot: String, key: String) -> String? {
        guard case .success(let fd) = Syscall.open(at: AT_FDCWD, ltxRoot + "/" + key + "/" + DatabaseKey.pathFileName, flags: O_RDONLY) else {
            return nil
        }
        defer { Syscall.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 8192)
        guard case .success(let count) = buffer.withUnsafeMutableBytes({ Syscall.pread(fd, into: $0, at: 0) }), count > 0 else { return nil }
        return String(decoding: buffer.prefix(count), as: UTF8.self)
    }

    /// Path of the single file holding `minTXID...maxTXID`.
    func path(minTXID: TXID, maxTXID: TXID) -> String {
        directory + "/" + LTXFileName(minTXID: minTXID, maxTXID: maxTXID).description
    }

    // MARK: - Recording

    /// Records one complete LTX file for `txid`: in the spool now (flushed
    /// with `sync`), in a segment shortly after.
    func append(_ bytes: [UInt8], minTXID: TXID? = nil, txid: TXID, sync: Bool, expectSync: Bool = false) -> Result<Void, Errno> {
        spool.append(key: key, txid: txid, bytes: bytes, sync: sync, expectSync: expectSync).map { location in
            materializer.enqueue(.write(source: location, minTXID: minTXID ?? txid, maxTXID: txid, log: self))
            materializer.waitForRoom()
        }
    }

    /// The materializer's half of ``append(_:minTXID:txid:sync:expectSync:)``.
    func writeRecord(_ bytes: [UInt8], minTXID: TXID, maxTXID: TXID) -> Result<Void, Errno> {
        files.withLock { $0.append(bytes, minTXID: minTXID, maxTXID: maxTXID, now: MonotonicClock.nanoseconds()) }
    }

    /// The transaction `txid` was logged but did not commit: forget it.
    func abandon(_ txid: TXID) {
        spool.abandon(key: key, txid: txid)
        materializer.enqueue(.remove(txid: txid, log: self))
    }

    /// The materializer's half of ``abandon(_:)``.
    func removeRecord(_ txid: TXID) {
        files.withLock { $0.removeNewest(txid) }
    }

    /// Waits until every recorded transaction is in its segment or file.
    func waitForFiles() {
        materializer.drain()
    }

    /// Starts the log again at a snapshot ending at `base`: every file goes.
    /// The spool records the reset first, durably, so that a crash cannot
    /// bring the old history's records back.
    func removeAll(resettingTo base: TXID) -> Result<Void, Errno> {
        waitForFiles()
        return spool.reset(key: key, base: base).map { _ in files.withLock { $0.removeAll() } }
    }

    /// Takes the file at `path` (a snapshot received in full) as the single
    /// file holding `minTXID...maxTXID`, durably.
    func adoptFile(at path: String, minTXID: TXID, maxTXID: TXID) -> Result<Void, Errno> {
        let destination = self.path(minTXID: minTXID, maxTXID: maxTXID)
        _ = Syscall.unlink(at: AT_FDCWD, destination)
        return Syscall.link(at: AT_FDCWD, path, to: destination).flatMapError { _ in Syscall.rename(at: AT_FDCWD, path, to: destination) }
            .flatMap {
                Syscall.open(at: AT_FDCWD, destination, flags: O_RDONLY).flatMap { fd in
                    defer { Syscall.close(fd) }
                    return Syscall.fsync(fd)
                }
            }
            .map { files.withLock { $0.addFile(minTXID: minTXID, maxTXID: maxTXID) } }
    }

    // MARK: - Large files

    /// An LTX file streamed straight to its final name (snapshots), in
    /// bounded memory, bypassing the spool.
    struct PendingFile {
        fileprivate let fd: Int32
        fileprivate let name: LTXFileName
        fileprivate let log: LTXLog

        /// Appends bytes at the end of the file.
        func append(_ bytes: [UInt8]) -> Result<Void, Errno> {
            bytes.withUnsafeBytes { Syscall.write(fd, $0) }
        }

        /// Completes the file; with `sync` it is on stable storage on return.
        func commit(sync: Bool) -> Result<Void, Errno> {
            let result = sync ? Syscall.fsync(fd).flatMap { Syscall.fsync(log.directoryFD) } : .success(())
            Syscall.close(fd)
            switch result {
            case .success: log.files.withLock { $0.addFile(minTXID: name.minTXID, maxTXID: name.maxTXID) }
            case .failure: _ = Syscall.unlink(at: log.directoryFD, name.description)
            }
            return result
        }

        /// Deletes the partial file.
        func abandon() {
            Syscall.close(fd)
            _ = Syscall.unlink(at: log.directoryFD, name.description)
        }
    }

    /// Starts the file holding `minTXID...maxTXID`, replacing a torn leftover.
    func begin(minTXID: TXID, maxTXID: TXID) -> Result<PendingFile, Errno> {
        let name = LTXFileName(minTXID: minTXID, maxTXID: maxTXID)
        return Syscall.open(at: directoryFD, name.description, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
            .map { PendingFile(fd: $0, name: name, log: self) }
    }

    // MARK: - Reading, recovery, retention

    /// The newest record (recovery reads the position from it).
    func newestRecord() -> LTXLogRecord? {
        let last = files.withLock { $0.entries.last }
        guard let last else { return nil }
        let reader = LTXLogReader(log: self, entries: [last], after: TXID(last.maxTXID.rawValue - 1))
        return reader.next()
    }

    /// Removes the newest record (torn: a crash cut its write short).
    func removeNewestRecord() {
        files.withLock { files in
            if let last = files.lastTXID { files.removeNewest(last) }
        }
    }

    /// Reads the transactions after `txid`, in order, from the files there
    /// are now. Files that retention removes meanwhile stay readable to it
    /// once opened; the reader stops where one was already gone.
    func reader(after txid: TXID) -> LTXLogReader {
        LTXLogReader(log: self, entries: files.withLock { $0.entries(after: txid) }, after: txid)
    }

    /// Retention: removes the files last changed before `cutoff` (seconds
    /// since the epoch), oldest first, keeping the newest; seals the segment
    /// being written if it was started before `sealBefore` (monotonic ns),
    /// so that it can expire as a whole. Returns how many files went.
    func prune(modifiedBefore cutoff: Int, sealBefore: UInt64) -> Int {
        files.withLock { files in
            files.seal(openedBefore: sealBefore)
            return files.prune(modifiedBefore: cutoff)
        }
    }
}

/// One transaction (or merged range) read from a log.
struct LTXLogRecord: Sendable {
    var minTXID: TXID
    var maxTXID: TXID
    var content: LTXContent
}

/// Reads a log's records after a TXID, oldest first, one at a time: a
/// replica's catch-up or an export holds one record in memory, not the log.
final class LTXLogReader {
    private let log: LTXLog
    private var entries: [LTXLogDirectory.Entry]
    private var segmentFD: Int32 = -1
    private var segment: LTXSegmentReader?
    private let after: TXID

    init(log: LTXLog, entries: [LTXLogDirectory.Entry], after: TXID) {
        self.log = log
        self.entries = entries.reversed()
        self.after = after
    }

    deinit {
        if segmentFD >= 0 { Syscall.close(segmentFD) }
    }

    /// The next record, or nil at the end (or where a file is gone).
    func next() -> LTXLogRecord? {
        while true {
            if segment != nil {
                if let record = segment!.next() {
                    if record.maxTXID <= after { continue }
                    return LTXLogRecord(minTXID: record.minTXID, maxTXID: record.maxTXID, content: .bytes(record.bytes))
                }
                Syscall.close(segmentFD)
                segmentFD = -1
                segment = nil
            }
            guard let entry = entries.popLast() else { return nil }
            switch entry.storage {
            case .file:
                let path = log.directory + "/" + entry.name
                guard case .success = Syscall.stat(path) else { return nil }
                return LTXLogRecord(minTXID: entry.minTXID, maxTXID: entry.maxTXID, content: .file(path))
            case .segment:
                guard case .success(let fd) = Syscall.open(at: log.directoryFD, entry.name, flags: O_RDONLY) else { return nil }
                segmentFD = fd
                segment = LTXSegmentReader(fileDescriptor: fd)
            }
        }
    }
}
