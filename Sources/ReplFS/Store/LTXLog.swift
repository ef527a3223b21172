#if canImport(Glibc)
import Glibc
#endif
import Logging

/// The LTX files of one database: `DATA/ltx/<key>/<min>-<max>.ltx`.
///
/// A committed transaction is recorded in the store's ``LTXSpool`` at the
/// commit point and written here by the ``LTXMaterializer`` just after, off
/// the commit path. Large transactions (snapshots) stream straight into
/// their file instead.
final class LTXLog: Sendable {
    /// Directory holding the files.
    let directory: String
    /// The directory's name under `DATA/ltx` (see ``DatabaseKey``).
    let key: String
    let directoryFD: Int32
    private let spool: LTXSpool
    private let materializer: LTXMaterializer

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
        switch Syscall.open(at: AT_FDCWD, directory, flags: O_RDONLY | O_DIRECTORY) {
        case .success(let fd): directoryFD = fd
        case .failure(let error): throw StoreError(.io, "cannot open LTX directory", path: directory, errno: error)
        }
        if DatabaseKey.isShortened(key, of: databasePath) {
            try LTXLog.recordPath(databasePath, in: directoryFD, directory: directory)
        }
        // A file being written when the daemon died: its record is still in
        // the spool, or its transaction was never acknowledged.
        if case .success(let entries) = Syscall.directoryEntries(directoryFD) {
            for entry in entries where entry.name.hasSuffix(LTXMaterializer.temporarySuffix) { _ = Syscall.unlink(at: directoryFD, entry.name) }
        }
    }

    deinit {
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

    /// Path of the file holding `minTXID...maxTXID`.
    func path(minTXID: TXID, maxTXID: TXID) -> String {
        directory + "/" + LTXFileName(minTXID: minTXID, maxTXID: maxTXID).description
    }

    /// Records one complete LTX file for `txid`: in the spool now (flushed
    /// with `sync`), as its own file shortly after.
    func append(_ bytes: [UInt8], minTXID: TXID? = nil, txid: TXID, sync: Bool, expectSync: Bool = false) -> Result<Void, Errno> {
        spool.append(key: key, txid: txid, bytes: bytes, sync: sync, expectSync: expectSync).map { location in
            let name = LTXFileName(minTXID: minTXID ?? txid, maxTXID: txid).description
            materializer.enqueue(.write(directoryFD: directoryFD, name: name, source: location, owner: self))
            materializer.waitForRoom()
        }
    }

    /// The transaction `txid` was logged but did not commit: forget it.
    func abandon(_ txid: TXID) {
        spool.abandon(key: key, txid: txid)
        materializer.enqueue(.remove(directoryFD: directoryFD, name: LTXFileName(minTXID: txid, maxTXID: txid).description, owner: self))
    }

    /// Waits until every recorded transaction is written as its own file.
    func waitForFiles() {
        materializer.drain()
    }

    // MARK: - Large files

    /// An LTX file streamed straight to its final name (snapshots), in
    /// bounded memory, bypassing the spool.
    struct PendingFile {
        fileprivate let fd: Int32
        fileprivate let name: String
        fileprivate let directoryFD: Int32

        /// Appends bytes at the end of the file.
        func append(_ bytes: [UInt8]) -> Result<Void, Errno> {
            bytes.withUnsafeBytes { Syscall.write(fd, $0) }
        }

        /// Completes the file; with `sync` it is on stable storage on return.
        func commit(sync: Bool) -> Result<Void, Errno> {
            let result = sync ? Syscall.fsync(fd).flatMap { Syscall.fsync(directoryFD) } : .success(())
            Syscall.close(fd)
            if case .failure = result { _ = Syscall.unlink(at: directoryFD, name) }
            return result
        }

        /// Deletes the partial file.
        func abandon() {
            Syscall.close(fd)
            _ = Syscall.unlink(at: directoryFD, name)
        }
    }

    /// Starts the file holding `minTXID...maxTXID`, replacing a torn leftover.
    func begin(minTXID: TXID, maxTXID: TXID) -> Result<PendingFile, Errno> {
        let name = LTXFileName(minTXID: minTXID, maxTXID: maxTXID).description
        return Syscall.open(at: directoryFD, name, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
            .map { PendingFile(fd: $0, name: name, directoryFD: directoryFD) }
    }

    // MARK: - Listing and recovery

    /// The file names in the directory, ordered by TXID.
    func fileNames() -> [LTXFileName] {
        guard case .success(let entries) = Syscall.directoryEntries(directoryFD) else { return [] }
        return entries.compactMap { try? LTXFileName(parsing: $0.name) }.sorted { $0.minTXID < $1.minTXID }
    }

    /// Removes one file (recovery of a torn write, retention).
    func remove(_ name: LTXFileName) {
        _ = Syscall.unlink(at: directoryFD, name.description)
    }
}
