#if canImport(Glibc)
import Glibc
#endif

/// The files of one database's log, `DATA/ltx/<key>/`, and an index of them:
/// segments (``LTXSegment``, many small transactions each) and single LTX
/// files (`<min>-<max>.ltx`: snapshots and transactions too large for the
/// spool), together one unbroken TXID range.
///
/// The index holds one entry per file, not per transaction, so a log of a
/// million transactions costs a few hundred entries of memory. Only the
/// newest segment is read at open (its last TXID is not in any name); every
/// other entry ends where the next begins.
///
/// Not thread-safe: ``LTXLog`` keeps it behind a lock; the spool's replay
/// uses one alone before the store starts.
struct LTXLogDirectory: ~Copyable {
    /// One file of the log.
    struct Entry: Sendable, Equatable {
        enum Storage: Sendable, Equatable {
            case segment
            case file
        }
        var minTXID: TXID
        var maxTXID: TXID
        var storage: Storage

        var name: String {
            switch storage {
            case .segment: LTXSegment.name(firstTXID: minTXID)
            case .file: LTXFileName(minTXID: minTXID, maxTXID: maxTXID).description
            }
        }
    }

    /// The segment appends go to.
    private struct Active {
        var fd: Int32
        var minTXID: TXID
        var size: Int64
        /// Where the newest record starts (for ``removeNewest(_:)``).
        var lastRecord: Int64?
        /// When its first record was written (``MonotonicClock`` ns).
        var opened: UInt64
    }

    let directoryFD: Int32
    /// Every file, ordered by TXID.
    private(set) var entries: [Entry] = []
    private var active: Active?

    /// A segment is closed for appends once it holds this many bytes.
    static let segmentLimit: Int64 = 16 << 20

    /// Lists the directory. A newest segment's torn tail (a crash while the
    /// materializer wrote it, before the spool could be retired) is cut.
    init(directoryFD: Int32) {
        self.directoryFD = directoryFD
        var found: [Entry] = []
        if case .success(let names) = Syscall.directoryEntries(directoryFD) {
            for entry in names {
                if let first = LTXSegment.firstTXID(ofName: entry.name) {
                    found.append(Entry(minTXID: first, maxTXID: first, storage: .segment))
                } else if let name = try? LTXFileName(parsing: entry.name), name.minTXID <= name.maxTXID {
                    found.append(Entry(minTXID: name.minTXID, maxTXID: name.maxTXID, storage: .file))
                }
            }
        }
        found.sort { ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID) }
        for index in found.indices where found[index].storage == .segment {
            if index + 1 < found.count {
                found[index].maxTXID = TXID(max(found[index + 1].minTXID.rawValue - 1, found[index].minTXID.rawValue))
            }
        }
        entries = found
        if let last = entries.last, last.storage == .segment {
            switch scanSegment(last.name) {
            case .some((let maxTXID, let end, _)) where maxTXID != nil:
                entries[entries.count - 1].maxTXID = maxTXID!
                truncate(last.name, to: end)
            default:
                // Not one whole record: the segment was being started.
                _ = Syscall.unlink(at: directoryFD, last.name)
                entries.removeLast()
            }
        }
    }

    deinit {
        if let active { Syscall.close(active.fd) }
    }

    /// The newest TXID in the log.
    var lastTXID: TXID? { entries.last?.maxTXID }

    // MARK: - Appending

    /// Appends one LTX file (`bytes`, covering `minTXID...maxTXID`) to the
    /// newest segment, or starts a segment when it does not follow that
    /// segment's last record. No sync: the spool holds the record until the
    /// file system is synced.
    mutating func append(_ bytes: [UInt8], minTXID: TXID, maxTXID: TXID, now: UInt64) -> Result<Void, Errno> {
        if let current = active {
            let follows = entries.last.map { $0.storage == .segment && $0.minTXID == current.minTXID && $0.maxTXID.next == minTXID } ?? false
            if !follows || current.size >= Self.segmentLimit { seal() }
        }
        if active == nil, case .failure(let error) = startSegment(minTXID: minTXID, now: now) { return .failure(error) }
        var record = [UInt8]()
        record.reserveCapacity(LTXSegment.recordPrefixSize + bytes.count)
        BigEndian.append(UInt32(bytes.count), to: &record)
        record.append(contentsOf: bytes)
        let offset = active!.size
        let written = record.withUnsafeBytes { Syscall.pwrite(active!.fd, $0, at: offset) }
        if case .failure(let error) = written {
            // Nothing half-written may stay: later records would follow it.
            _ = Syscall.ftruncate(active!.fd, offset)
            return .failure(error)
        }
        active!.size = offset + Int64(record.count)
        active!.lastRecord = offset
        entries[entries.count - 1].maxTXID = maxTXID
        return .success(())
    }

    private mutating func startSegment(minTXID: TXID, now: UInt64) -> Result<Void, Errno> {
        let name = LTXSegment.name(firstTXID: minTXID)
        // A segment under this name is left from records removed since.
        if let index = entries.firstIndex(where: { $0.storage == .segment && $0.minTXID == minTXID }) { entries.remove(at: index) }
        let opened = Syscall.open(at: directoryFD, name, flags: O_RDWR | O_CREAT | O_TRUNC, mode: 0o644).flatMap { fd in
            LTXSegment.header.withUnsafeBytes { Syscall.pwrite(fd, $0, at: 0) }.map { _ in fd }.mapError { error in
                Syscall.close(fd)
                return error
            }
        }
        switch opened {
        case .success(let fd):
            active = Active(fd: fd, minTXID: minTXID, size: Int64(LTXSegment.headerSize), lastRecord: nil, opened: now)
            insert(Entry(minTXID: minTXID, maxTXID: minTXID, storage: .segment))
            return .success(())
        case .failure(let error):
            _ = Syscall.unlink(at: directoryFD, name)
            return .failure(error)
        }
    }

    /// Closes the newest segment for appends: the next record starts a new
    /// one, so this one can expire as a whole.
    mutating func seal() {
        if let active { Syscall.close(active.fd) }
        active = nil
    }

    /// Seals the newest segment if its first record is older than `before`.
    mutating func seal(openedBefore before: UInt64) {
        if let active, active.opened < before { seal() }
    }

    /// Records a single LTX file written into the directory.
    mutating func addFile(minTXID: TXID, maxTXID: TXID) {
        seal()
        entries.removeAll { $0.storage == .file && $0.minTXID == minTXID && $0.maxTXID == maxTXID }
        insert(Entry(minTXID: minTXID, maxTXID: maxTXID, storage: .file))
    }

    private mutating func insert(_ entry: Entry) {
        let index = entries.firstIndex { ($0.minTXID, $0.maxTXID) > (entry.minTXID, entry.maxTXID) } ?? entries.count
        entries.insert(entry, at: index)
    }

    // MARK: - Removing

    /// Removes the newest transaction if it is `txid` (it did not commit).
    mutating func removeNewest(_ txid: TXID) {
        guard let last = entries.last, last.maxTXID == txid else { return }
        switch last.storage {
        case .file:
            _ = Syscall.unlink(at: directoryFD, last.name)
            entries.removeLast()
        case .segment:
            if let current = active, current.minTXID == last.minTXID, let start = current.lastRecord {
                _ = Syscall.ftruncate(current.fd, start)
                active!.size = start
                active!.lastRecord = nil
                if start == Int64(LTXSegment.headerSize) {
                    seal()
                    _ = Syscall.unlink(at: directoryFD, last.name)
                    entries.removeLast()
                } else {
                    entries[entries.count - 1].maxTXID = TXID(txid.rawValue - 1)
                }
            } else {
                truncateSegments(from: txid)
            }
        }
    }

    /// Removes every segment record from `txid` on (the spool's replay puts
    /// them back). Single files are left: they never pass through the spool.
    mutating func truncateSegments(from txid: TXID) {
        seal()
        var kept: [Entry] = []
        for entry in entries {
            guard entry.storage == .segment, entry.maxTXID >= txid else {
                kept.append(entry)
                continue
            }
            if entry.minTXID >= txid {
                _ = Syscall.unlink(at: directoryFD, entry.name)
                continue
            }
            // The cut falls inside: keep the records before it.
            guard case .some((let before, _, let cut)) = scanSegment(entry.name, stopAt: txid), let before, let cut else {
                _ = Syscall.unlink(at: directoryFD, entry.name)
                continue
            }
            truncate(entry.name, to: cut)
            var shortened = entry
            shortened.maxTXID = before
            kept.append(shortened)
        }
        entries = kept
    }

    /// Removes every file (the log starts again from a snapshot), except
    /// the single file `keep`.
    mutating func removeAll(keeping keep: Entry? = nil) {
        seal()
        for entry in entries where entry != keep { _ = Syscall.unlink(at: directoryFD, entry.name) }
        entries = entries.filter { $0 == keep }
    }

    /// Removes the oldest files whose last change is before `cutoff`
    /// (seconds since the epoch), oldest first, never the newest one nor the
    /// segment being appended to. Returns how many went.
    mutating func prune(modifiedBefore cutoff: Int) -> Int {
        var removed = 0
        while entries.count > 1 {
            let oldest = entries[0]
            if oldest.storage == .segment, let active, active.minTXID == oldest.minTXID { break }
            guard case .success(let st) = Syscall.lstat(at: directoryFD, oldest.name) else {
                entries.removeFirst()
                continue
            }
            guard Int(st.st_mtim.tv_sec) < cutoff else { break }
            _ = Syscall.unlink(at: directoryFD, oldest.name)
            entries.removeFirst()
            removed += 1
        }
        return removed
    }

    // MARK: - Reading

    /// The entries holding transactions after `txid`, oldest first.
    func entries(after txid: TXID) -> [Entry] {
        entries.filter { $0.maxTXID > txid }
    }

    /// Reads a segment: the last TXID of its valid records, where they end,
    /// and (with `stopAt`) where the first record reaching `stopAt` starts.
    private func scanSegment(_ name: String, stopAt: TXID? = nil) -> (maxTXID: TXID?, end: Int64, cut: Int64?)? {
        guard case .success(let fd) = Syscall.open(at: directoryFD, name, flags: O_RDONLY) else { return nil }
        defer { Syscall.close(fd) }
        var reader = LTXSegmentReader(fileDescriptor: fd)
        guard reader.hasHeader else { return nil }
        var last: TXID?
        while let record = reader.next() {
            if let stopAt, record.maxTXID >= stopAt { return (last, record.offset, record.offset) }
            last = record.maxTXID
        }
        return (last, reader.end, nil)
    }

    private func truncate(_ name: String, to size: Int64) {
        guard case .success(let fd) = Syscall.open(at: directoryFD, name, flags: O_WRONLY) else { return }
        defer { Syscall.close(fd) }
        if case .success(let st) = Syscall.fstat(fd), Int64(st.st_size) > size { _ = Syscall.ftruncate(fd, size) }
    }
}
