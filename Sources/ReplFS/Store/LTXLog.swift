#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The LTX files of one database: `DATA/ltx/<key>/<min>-<max>.ltx`.
///
/// Files are written under their final name with a single `write` (a crash
/// can leave a torn last file; recovery drops it, since its transaction was
/// never acknowledged). Durability follows SQLite's own requests: a file is
/// flushed with `fdatasync` when SQLite syncs the transaction it belongs to,
/// never earlier, so `synchronous=NORMAL` keeps its speed.
final class LTXLog: Sendable {
    /// Directory holding the files.
    let directory: String
    fileprivate let directoryFD: Int32
    /// Descriptors of files written but not yet flushed.
    private let unsynced: Mutex<Unsynced>

    private struct Unsynced: ~Copyable {
        var descriptors: [Int32] = []
        /// More files than we keep open were written since the last flush:
        /// flush the whole file system instead.
        var overflowed = false
    }

    /// How many unflushed files keep their descriptor open.
    private static let maximumOpenUnsynced = 16

    init(directory: String) throws(StoreError) {
        self.directory = directory
        if case .failure(let error) = Syscall.mkdir(at: AT_FDCWD, directory, mode: 0o755), error != .exists {
            throw StoreError(.io, "cannot create LTX directory", path: directory, errno: error)
        }
        switch Syscall.open(at: AT_FDCWD, directory, flags: O_RDONLY | O_DIRECTORY) {
        case .success(let fd): directoryFD = fd
        case .failure(let error): throw StoreError(.io, "cannot open LTX directory", path: directory, errno: error)
        }
        unsynced = Mutex(Unsynced())
    }

    deinit {
        unsynced.withLock { state in
            for fd in state.descriptors { Syscall.close(fd) }
        }
        Syscall.close(directoryFD)
    }

    /// Path of the file holding `minTXID...maxTXID`.
    func path(minTXID: TXID, maxTXID: TXID) -> String {
        directory + "/" + LTXFileName(minTXID: minTXID, maxTXID: maxTXID).description
    }

    /// An LTX file being written. Small transactions write it in one call;
    /// snapshots stream into it in bounded memory.
    struct PendingFile {
        fileprivate let fd: Int32
        fileprivate let name: String
        fileprivate let log: LTXLog

        /// Appends bytes at the end of the file.
        func append(_ bytes: [UInt8]) -> Result<Void, Errno> {
            bytes.withUnsafeBytes { Syscall.write(fd, $0) }
        }

        /// Completes the file. With `sync`, it is on stable storage on return;
        /// otherwise the next ``LTXLog/syncPending()`` flushes it.
        func commit(sync: Bool) -> Result<Void, Errno> {
            if sync {
                let result = Syscall.fsync(fd, dataOnly: true)
                Syscall.close(fd)
                if case .failure = result { _ = Syscall.unlink(at: log.directoryFD, name) }
                return result
            }
            log.keepUnsynced(fd)
            return .success(())
        }

        /// Deletes the partial file (the transaction failed or changed nothing).
        func abandon() {
            Syscall.close(fd)
            _ = Syscall.unlink(at: log.directoryFD, name)
        }
    }

    /// Starts the file holding `minTXID...maxTXID`, replacing a torn leftover.
    func begin(minTXID: TXID, maxTXID: TXID) -> Result<PendingFile, Errno> {
        let name = LTXFileName(minTXID: minTXID, maxTXID: maxTXID).description
        return Syscall.open(at: directoryFD, name, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
            .map { PendingFile(fd: $0, name: name, log: self) }
    }

    private func keepUnsynced(_ fd: Int32) {
        unsynced.withLock { state in
            if state.descriptors.count < LTXLog.maximumOpenUnsynced {
                state.descriptors.append(fd)
            } else {
                state.overflowed = true
                Syscall.close(fd)
            }
        }
    }

    /// Whether files written since the last flush are still unflushed.
    var hasPending: Bool {
        unsynced.withLock { !$0.descriptors.isEmpty || $0.overflowed }
    }

    /// Flushes every file written without `sync` since the last call.
    func syncPending() -> Result<Void, Errno> {
        let (descriptors, overflowed) = unsynced.withLock { state -> ([Int32], Bool) in
            defer {
                state.descriptors.removeAll(keepingCapacity: true)
                state.overflowed = false
            }
            return (state.descriptors, state.overflowed)
        }
        var failure: Errno?
        if overflowed {
            if case .failure(let error) = Syscall.syncfs(directoryFD) { failure = error }
        } else {
            for fd in descriptors {
                if case .failure(let error) = Syscall.fsync(fd, dataOnly: true) { failure = failure ?? error }
            }
        }
        for fd in descriptors { Syscall.close(fd) }
        if failure == nil, overflowed || !descriptors.isEmpty {
            // The new names must be durable too.
            if case .failure(let error) = Syscall.fsync(directoryFD) { failure = error }
        }
        if let failure { return .failure(failure) }
        return .success(())
    }

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
