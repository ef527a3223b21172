#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization

/// Why a replicated LTX file was refused. Nothing was changed.
public enum ApplyRefusal: Error, CustomStringConvertible, Sendable {
    /// The file does not follow the database's position.
    case notNext(database: String, position: Position, minTXID: TXID, preApply: Checksum)
    /// The file does not decode or its checksums do not hold.
    case corrupt(database: String, LTXError)
    /// Applying it would not give the post-apply checksum it claims: this
    /// replica's content is not what the primary thinks it is.
    case postApplyMismatch(database: String, expected: Checksum, computed: Checksum)
    case io(database: String, Errno)

    public var description: String {
        switch self {
        case .notNext(let database, let position, let minTXID, let preApply):
            return "\(database): LTX file starting at TXID \(minTXID) (pre-apply \(preApply)) does not follow position \(position)"
        case .corrupt(let database, let error):
            return "\(database): corrupt LTX file: \(error)"
        case .postApplyMismatch(let database, let expected, let computed):
            return "\(database): applying would give checksum \(computed), the file says \(expected)"
        case .io(let database, let errno):
            return "\(database): \(errno)"
        }
    }
}

extension Database {
    /// Applies one LTX file received from the primary (replica).
    ///
    /// The file is decoded and checked in full first (file checksum, that it
    /// follows this database's position, that the result has the post-apply
    /// checksum it claims) and refused with nothing changed otherwise. Then it
    /// is recorded in this node's own log (so a crash before the pages land is
    /// redone at restart), readers are held off with SQLite's own locks, the
    /// pages are written, the kernel's cached pages are dropped and, in WAL
    /// mode, the WAL-index header is rewritten so that readers notice.
    ///
    /// A snapshot (minimum TXID 1) replaces the database whole; if the
    /// replica had a history the primary could not vouch for
    /// (`keepAside`), its database is first copied to `aside` and named in
    /// the log (invariant 6).
    func applyReplicated(
        _ source: LTXContent, mount: any MountAccess, aside: (String) -> String?, keepAside: Bool
    ) -> Result<Position, ApplyRefusal> {
        state.withLock { state in
            // Pass 1: verify, and compute what the table will hold.
            let header: LTXHeader
            var updates: [(UInt32, Checksum)] = []
            var checksum: Checksum
            var wholeImage: Bool
            var isWAL: Bool?
            do {
                var decoder = try Self.decoder(for: source)
                defer { decoder.source.closeIfFile() }
                header = try decoder.decodeHeader()
                let pageSize = Int(header.pageSize)
                wholeImage = header.isSnapshot || (header.commit > 0 && pageSize != state.pageSize) || state.pageChecksums.count != Int(state.pageCount)
                if header.isSnapshot {
                    // A snapshot never takes a database back in time, unless the
                    // primary found its history diverged (then a copy is kept).
                    guard keepAside || header.maxTXID >= state.position.txid else {
                        return .failure(.notNext(database: path, position: state.position, minTXID: header.minTXID, preApply: header.preApplyChecksum))
                    }
                } else {
                    guard header.minTXID.rawValue == state.position.txid.rawValue + 1, !header.tracksChecksums || header.preApplyChecksum == state.position.checksum else {
                        return .failure(.notNext(database: path, position: state.position, minTXID: header.minTXID, preApply: header.preApplyChecksum))
                    }
                }
                checksum = wholeImage ? .emptyDatabase : state.position.checksum
                if !wholeImage && header.commit < state.pageCount {
                    for pgno in (header.commit + 1)...state.pageCount {
                        checksum = checksum.replacingPage(old: state.pageChecksums[Int(pgno - 1)], new: .zero)
                    }
                }
                let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
                defer { page.deallocate() }
                while let pgno = try decoder.nextPage(into: page) {
                    let new = Checksum.page(pgno, UnsafeRawBufferPointer(page))
                    let old: Checksum = (!wholeImage && pgno.rawValue <= state.pageCount) ? state.pageChecksums[Int(pgno.rawValue - 1)] : .zero
                    checksum = checksum.replacingPage(old: old, new: new)
                    updates.append((pgno.rawValue, new))
                    if pgno.rawValue == 1, let databaseHeader = DatabaseHeader(UnsafeRawBufferPointer(page)) { isWAL = databaseHeader.isWAL }
                }
                let trailer = try decoder.finish()
                if header.tracksChecksums && trailer.postApplyChecksum != checksum {
                    return .failure(.postApplyMismatch(database: path, expected: trailer.postApplyChecksum, computed: checksum))
                }
            } catch let error as LTXError {
                return .failure(.corrupt(database: path, error))
            } catch {
                return .failure(.io(database: path, .io))
            }

            // Record it in this node's log before the database changes.
            if header.isSnapshot, state.exists, keepAside, let copy = aside(path) {
                logger.warning(
                    "moved this replica's database aside before taking the primary's snapshot",
                    metadata: ["database": "\(path)", "position": "\(state.position)", "aside": "\(copy)"])
            }
            if case .failure(let error) = record(source, header: header, in: &state) { return .failure(.io(database: path, error)) }

            // Pass 2: apply, readers held off.
            let gate = mount.excludeReaders(database: path, walMode: state.isWAL || isWAL == true)
            defer { gate.release() }
            let existed = state.exists || Self.fileExists(environment.filesFD, path)
            if case .failure(let error) = writePages(source, header: header) { return .failure(.io(database: path, error)) }
            closeReadFD(&state)
            apply(
                Prepared(
                    txid: header.maxTXID, checksum: checksum, pageSize: Int(header.pageSize), commitSize: header.commit,
                    allPages: wholeImage, updates: updates, isWAL: isWAL),
                to: &state)
            if state.isWAL {
                // Readers of a WAL database need a -wal to open; here it stays empty.
                if case .success(let fd) = Syscall.open(at: environment.filesFD, path + "-wal", flags: O_WRONLY | O_CREAT, mode: 0o644) {
                    Syscall.close(fd)
                }
                gate.resetWALIndex(pageSize: state.pageSize, pageCount: state.pageCount)
            }
            if header.commit == 0 || !existed {
                mount.invalidateName(path: path)
            }
            mount.invalidateContent(path: path)
            return .success(state.position)
        }
    }

    private static func decoder(for source: LTXContent) throws(LTXError) -> LTXDecoder<AnyLTXSource> {
        switch source {
        case .bytes(let bytes): return LTXDecoder(source: .memory(LTXMemorySource(bytes)))
        case .file(let path): return LTXDecoder(source: .file(try LTXFileSource(path: path)))
        }
    }

    private static func fileExists(_ directory: Int32, _ path: String) -> Bool {
        if case .success = Syscall.lstat(at: directory, path) { return true }
        return false
    }

    /// Appends the file to this node's log; a snapshot starts the log anew.
    private func record(_ source: LTXContent, header: LTXHeader, in state: inout State) -> Result<Void, Errno> {
        let log: LTXLog
        switch ensureLog(&state) {
        case .success(let value): log = value
        case .failure(let error): return .failure(error)
        }
        if header.isSnapshot {
            log.waitForFiles()
            for name in log.fileNames() { log.remove(name) }
        }
        switch source {
        case .bytes(let bytes) where header.minTXID == header.maxTXID:
            return log.append(bytes, txid: header.maxTXID, sync: false)
        case .bytes(let bytes):
            return log.begin(minTXID: header.minTXID, maxTXID: header.maxTXID).flatMap { file in
                file.append(bytes).flatMap { file.commit(sync: true) }
            }
        case .file(let path):
            let destination = log.path(minTXID: header.minTXID, maxTXID: header.maxTXID)
            _ = Syscall.unlink(at: AT_FDCWD, destination)
            guard Glibc.link(path, destination) == 0 || Glibc.rename(path, destination) == 0 else { return .failure(.current) }
            return Syscall.open(at: AT_FDCWD, destination, flags: O_RDONLY).flatMap { fd in
                defer { Syscall.close(fd) }
                return Syscall.fsync(fd)
            }
        }
    }

    /// Writes the file's pages into the database file (deleting it for commit 0).
    private func writePages(_ source: LTXContent, header: LTXHeader) -> Result<Void, Errno> {
        if header.commit == 0 {
            switch Syscall.unlink(at: environment.filesFD, path) {
            case .success, .failure(.noEntry): return .success(())
            case .failure(let error): return .failure(error)
            }
        }
        let fd: Int32
        switch Syscall.open(at: environment.filesFD, path, flags: O_RDWR | O_CREAT, mode: 0o644) {
        case .success(let value): fd = value
        case .failure(let error): return .failure(error)
        }
        defer { Syscall.close(fd) }
        let pageSize = Int(header.pageSize)
        do {
            var decoder = try Self.decoder(for: source)
            defer { decoder.source.closeIfFile() }
            _ = try decoder.decodeHeader()
            let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
            defer { page.deallocate() }
            while let pgno = try decoder.nextPage(into: page) {
                if case .failure(let error) = Syscall.pwrite(fd, UnsafeRawBufferPointer(page), at: Int64(pgno.rawValue - 1) * Int64(pageSize)) {
                    return .failure(error)
                }
            }
        } catch {
            return .failure(.io)
        }
        return Syscall.ftruncate(fd, Int64(header.commit) * Int64(pageSize))
    }
}

/// An LTX byte source that is either in memory or a file.
enum AnyLTXSource: LTXByteSource {
    case memory(LTXMemorySource)
    case file(LTXFileSource)

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(LTXError) -> Int {
        switch self {
        case .memory(var source):
            let n = try source.read(into: buffer)
            self = .memory(source)
            return n
        case .file(var source):
            let n = try source.read(into: buffer)
            self = .file(source)
            return n
        }
    }

    func closeIfFile() {
        if case .file(let source) = self { source.close() }
    }
}
