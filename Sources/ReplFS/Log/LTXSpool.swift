#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// Where a transaction's LTX file is recorded at its commit point:
/// `DATA/spool/<n>`, an append-only file shared by every database.
///
/// Creating a file costs a directory update (about 25 µs here, more as the
/// directory grows); appending to an open file costs a few. So the commit
/// path appends the encoded LTX file here before SQLite is answered, and
/// ``LTXMaterializer`` appends it to its database's segment just after. A
/// crash in between loses nothing: ``replay(logger:restore:)`` puts back,
/// per log, everything from the first record the spool holds.
///
/// Spools are prepared ahead, filled with zeros: records then overwrite
/// allocated blocks, so flushing is a data-only `fdatasync` with no
/// file-system journal commit (SQLite's WAL, reused from its start after
/// checkpoints, has the same property). A zero length ends the records. A
/// spool is deleted only after every file written from it is durable.
final class LTXSpool: Sendable {
    let directory: String
    private let directoryFD: Int32
    private let materializer: LTXMaterializer
    private let state: Mutex<State>

    private struct State: ~Copyable {
        var fd: Int32 = -1
        var sequence: UInt64 = 0
        var size: Int64 = 0
        /// Bytes known durable.
        var synced: Int64 = 0
        /// Records appended since the last flush.
        var unsynced: Bool { size > synced }
        /// The next spool, already filled with zeros.
        var prepared: (fd: Int32, sequence: UInt64)?
        var preparing = false
    }

    /// A spool is rotated once it holds this many bytes.
    static let limit: Int64 = 16 << 20

    private enum RecordKind: UInt32 {
        /// A whole LTX file for the log directory `key`.
        case file = 1
        /// The transaction with this TXID in `key` did not commit.
        case abandoned = 2
        /// The log `key` starts again from a snapshot ending at this TXID:
        /// every earlier record of it is void.
        case reset = 3
    }

    /// One record found by ``replay(logger:restore:)``.
    struct Record {
        var key: String
        var txid: TXID
        var bytes: [UInt8]

        /// The file's first TXID (a replica records merged ranges).
        var minTXID: TXID {
            bytes.count >= 24 ? bytes.withUnsafeBytes { TXID(BigEndian.load(UInt64.self, from: $0, at: 16)) } : txid
        }
    }

    init(directory: String, materializer: LTXMaterializer) throws(StoreError) {
        self.directory = directory
        self.materializer = materializer
        if case .failure(let error) = Syscall.mkdir(at: AT_FDCWD, directory, mode: 0o755), error != .exists {
            throw StoreError(.io, "cannot create spool directory", path: directory, errno: error)
        }
        switch Syscall.open(at: AT_FDCWD, directory, flags: O_RDONLY | O_DIRECTORY) {
        case .success(let fd): directoryFD = fd
        case .failure(let error): throw StoreError(.io, "cannot open spool directory", path: directory, errno: error)
        }
        state = Mutex(State())
    }

    deinit {
        state.withLock { state in
            if state.fd >= 0 { Syscall.close(state.fd) }
            if let prepared = state.prepared { Syscall.close(prepared.fd) }
        }
        Syscall.close(directoryFD)
    }

    static func name(_ sequence: UInt64) -> String {
        String(sequence, radix: 16)
    }

    /// Opens the first spool (after ``replay(logger:restore:)``),
    /// prepared in full so that the first transactions flush cheaply too.
    func start() throws(StoreError) {
        let sequence = existingSequences().last.map { $0 + 1 } ?? 1
        guard let fd = fill(sequence) else {
            throw StoreError(.io, "cannot create spool", path: directory + "/" + LTXSpool.name(sequence))
        }
        state.withLock { state in
            state.fd = fd
            state.sequence = sequence
            state.size = 0
            state.synced = 0
        }
    }

    // MARK: - Commit path

    /// Appends a complete LTX file for `txid` of the log `key`; with `sync`
    /// it is on stable storage on return.
    ///
    /// `expectSync` says SQLite is likely to sync right after (WAL with
    /// `synchronous=FULL`): the write-out starts now, so the flush that
    /// sync brings waits less.
    func append(key: String, txid: TXID, bytes: [UInt8], sync: Bool, expectSync: Bool = false) -> Result<Location, Errno> {
        appendRecord(.file, key: key, txid: txid, payload: bytes, sync: sync, startWriteOut: expectSync)
    }

    /// Where a record's payload (the LTX file) lies, so that the materializer
    /// reads it back from the page cache instead of holding it in memory.
    struct Location: Sendable {
        var directoryFD: Int32
        var sequence: UInt64
        var offset: Int64
        var length: Int
    }

    /// Records that `txid` of `key` did not commit after all.
    func abandon(key: String, txid: TXID) {
        appendRecord(.abandoned, key: key, txid: txid, payload: [], sync: false)
    }

    /// Records, durably, that the log `key` starts again from a snapshot
    /// ending at `base`.
    func reset(key: String, base: TXID) -> Result<Void, Errno> {
        appendRecord(.reset, key: key, txid: base, payload: [], sync: true).map { _ in () }
    }

    @discardableResult
    private func appendRecord(_ kind: RecordKind, key: String, txid: TXID, payload: [UInt8], sync: Bool, startWriteOut: Bool = false) -> Result<Location, Errno> {
        let keyBytes = Array(key.utf8)
        // length, kind, txid, key length, key, payload
        let bodyCount = 8 + 2 + keyBytes.count + payload.count
        var record = [UInt8]()
        record.reserveCapacity(8 + bodyCount)
        BigEndian.append(UInt32(bodyCount), to: &record)
        BigEndian.append(kind.rawValue, to: &record)
        BigEndian.append(txid.rawValue, to: &record)
        BigEndian.append(UInt16(keyBytes.count), to: &record)
        record.append(contentsOf: keyBytes)
        record.append(contentsOf: payload)
        let result: Result<Location, Errno> = state.withLock { state in
            if state.fd < 0 || (state.size > 0 && state.size + Int64(record.count) + 8 > LTXSpool.limit) {
                if case .failure(let error) = rotate(&state) { return .failure(error) }
            }
            let written = record.withUnsafeBytes { Syscall.pwrite(state.fd, $0, at: state.size) }
            if case .failure(let error) = written { return .failure(error) }
            let location = Location(
                directoryFD: directoryFD, sequence: state.sequence, offset: state.size + Int64(record.count - payload.count), length: payload.count)
            if startWriteOut && !sync { _ = Syscall.startWriteOut(state.fd, offset: state.size, length: Int64(record.count)) }
            state.size += Int64(record.count)
            if sync {
                if case .failure(let error) = Syscall.fsync(state.fd, dataOnly: true) { return .failure(error) }
                state.synced = state.size
            }
            return .success(location)
        }
        if case .failure(let error) = result { noteAppendFailure(error) }
        return result
    }

    /// Paces the line about refused commits.
    private let refusedCommits = LogThrottle()

    /// Logs, at most once a minute, that commits are being refused.
    private func noteAppendFailure(_ error: Errno) {
        guard refusedCommits.isDue() else { return }
        materializer.logger.withLock { $0 }?.error(
            "commits refused: a transaction cannot be recorded in the spool, so SQLite gets SQLITE_FULL (or SQLITE_IOERR) and rolls it back",
            metadata: ["error": "\(error)", "spool": "\(directory)"])
    }

    /// Starts the next spool; the old one is retired (deleted once every file
    /// written from it is durable) by the materializer, in order.
    private func rotate(_ state: inout State) -> Result<Void, Errno> {
        if state.fd >= 0 {
            if state.unsynced { _ = Syscall.fsync(state.fd, dataOnly: true) }
            Syscall.close(state.fd)
            materializer.enqueue(.retire(directoryFD: directoryFD, sequence: state.sequence))
        }
        state.size = 0
        state.synced = 0
        if let prepared = state.prepared {
            state.prepared = nil
            state.fd = prepared.fd
            state.sequence = prepared.sequence
        } else {
            state.sequence += 1
            switch Syscall.open(at: directoryFD, LTXSpool.name(state.sequence), flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644) {
            case .success(let fd): state.fd = fd
            case .failure(let error):
                state.fd = -1
                return .failure(error)
            }
        }
        prepareNext(&state)
        return .success(())
    }

    private func prepareNext(_ state: inout State) {
        guard !state.preparing, state.prepared == nil else { return }
        state.preparing = true
        let sequence = state.sequence + 1
        materializer.enqueue(.prepare { [self] in
            let fd = fill(sequence)
            self.state.withLock { state in
                state.preparing = false
                if let fd, state.prepared == nil, sequence > state.sequence {
                    state.prepared = (fd, sequence)
                } else if let fd {
                    Syscall.close(fd)
                    _ = Syscall.unlink(at: directoryFD, LTXSpool.name(sequence))
                }
            }
        })
    }

    /// Creates spool `sequence` filled with zeros, synced.
    private func fill(_ sequence: UInt64) -> Int32? {
        guard case .success(let fd) = Syscall.open(at: directoryFD, LTXSpool.name(sequence), flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644) else {
            return nil
        }
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        for chunk in 0..<Int(LTXSpool.limit >> 20) {
            if case .failure = zeros.withUnsafeBytes({ Syscall.pwrite(fd, $0, at: Int64(chunk) << 20) }) {
                Syscall.close(fd)
                return nil
            }
        }
        guard case .success = Syscall.fsync(fd), case .success = Syscall.fsync(directoryFD) else {
            Syscall.close(fd)
            return nil
        }
        return fd
    }

    /// Whether records were appended since the last flush.
    var hasPending: Bool {
        state.withLock { $0.unsynced }
    }

    /// Flushes the spool (SQLite is syncing what these transactions belong to).
    func syncPending() -> Result<Void, Errno> {
        state.withLock { state in
            guard state.unsynced, state.fd >= 0 else { return .success(()) }
            let result = Syscall.fsync(state.fd, dataOnly: true)
            if case .success = result { state.synced = state.size }
            return result
        }
    }

    /// A spool range written out to the device but not yet flushed.
    struct WrittenOut {
        var sequence: UInt64
        var end: Int64
    }

    /// Writes the unflushed records out to the device without flushing its
    /// cache. Followed by an fsync of any file on the same file system (the
    /// one SQLite asked for), they are durable with a single device flush.
    func writeOutPending() -> Result<WrittenOut?, Errno> {
        state.withLock { state in
            guard state.unsynced, state.fd >= 0 else { return .success(nil) }
            let range = WrittenOut(sequence: state.sequence, end: state.size)
            return Syscall.writeOut(state.fd, offset: state.synced, length: state.size - state.synced).map { range }
        }
    }

    /// The fsync that followed ``writeOutPending()`` succeeded.
    func markSynced(_ range: WrittenOut) {
        state.withLock { state in
            if state.sequence == range.sequence { state.synced = max(state.synced, range.end) }
        }
    }

    /// Clean shutdown, after every file is written: make them durable and
    /// delete the spools. If the log is stalled (no space), the spools stay
    /// for the next start to replay: they hold records no file holds yet.
    func close(logger: Logger) {
        let complete = materializer.drain(orGiveUpAfter: .seconds(5))
        let synced = Syscall.syncfs(directoryFD)
        guard complete, case .success = synced else {
            logger.error(
                "the LTX log is stalled at shutdown: spools kept, replayed at the next start",
                metadata: ["reason": "\(materializer.stall?.summary ?? "sync failed")"])
            return
        }
        state.withLock { state in
            if let prepared = state.prepared {
                Syscall.close(prepared.fd)
                state.prepared = nil
            }
            if state.fd >= 0 {
                Syscall.close(state.fd)
                state.fd = -1
            }
        }
        for sequence in existingSequences() { _ = Syscall.unlink(at: directoryFD, LTXSpool.name(sequence)) }
        _ = Syscall.fsync(directoryFD)
    }

    // MARK: - Recovery

    private func existingSequences() -> [UInt64] {
        guard case .success(let entries) = Syscall.directoryEntries(directoryFD) else { return [] }
        return entries.compactMap { UInt64($0.name, radix: 16) }.sorted()
    }

    /// What a crash left in the spool for one log: from `firstTXID` on,
    /// its segments must hold exactly `records` (in TXID order); with
    /// `reset`, the log started again from a snapshot ending at that TXID,
    /// and no earlier file of it counts.
    struct Replay {
        var key: String
        var reset: TXID?
        var firstTXID: TXID
        var records: [Record]
        /// Transactions that did not commit (a single file of one may remain).
        var abandoned: [TXID]
    }

    /// After a crash: hands what the spools hold, per log, to `restore`,
    /// then deletes the spools (the caller makes its files durable first).
    /// If `restore` fails for any (no space), the spools are kept, and the
    /// error says how many logs wait. Returns the number of records found.
    @discardableResult
    func replay(logger: Logger, restore: (Replay) -> Result<Void, Errno>) throws(StoreError) -> Int {
        let sequences = existingSequences()
        var plans: [String: (reset: TXID?, first: TXID?, files: [TXID: [UInt8]], abandoned: Set<TXID>)] = [:]
        var count = 0
        for sequence in sequences {
            for record in readRecords(LTXSpool.name(sequence)) {
                count += 1
                switch record {
                case .file(let key, let txid, let bytes):
                    plans[key, default: (nil, nil, [:], [])].files[txid] = bytes
                    plans[key]!.abandoned.remove(txid)
                    plans[key]!.first = min(plans[key]!.first ?? txid, txid)
                case .abandoned(let key, let txid):
                    plans[key, default: (nil, nil, [:], [])].files[txid] = nil
                    plans[key]!.abandoned.insert(txid)
                    plans[key]!.first = min(plans[key]!.first ?? txid, txid)
                case .reset(let key, let base):
                    plans[key] = (base, nil, [:], [])
                }
            }
        }
        var failed: (count: Int, error: Errno)?
        for (key, plan) in plans {
            let records = plan.files.keys.sorted().map { Record(key: key, txid: $0, bytes: plan.files[$0]!) }
            let replay = Replay(
                key: key, reset: plan.reset, firstTXID: plan.first ?? plan.reset?.next ?? TXID(1), records: records, abandoned: plan.abandoned.sorted())
            if case .failure(let error) = restore(replay) { failed = ((failed?.count ?? 0) + 1, error) }
        }
        let synced = Syscall.syncfs(directoryFD)
        if let failed {
            throw StoreError(
                .io, "cannot write the LTX records the spool holds for \(failed.count) databases (\(failed.error)); they stay in the spool: free space and start again",
                path: directory, errno: failed.error)
        }
        if case .failure(let error) = synced {
            throw StoreError(.io, "cannot make the replayed LTX records durable; they stay in the spool", path: directory, errno: error)
        }
        for sequence in sequences { _ = Syscall.unlink(at: directoryFD, LTXSpool.name(sequence)) }
        if count > 0 {
            logger.notice("replayed the LTX spool", metadata: ["records": "\(count)", "spools": "\(sequences.count)"])
        }
        return count
    }

    private enum ParsedRecord {
        case file(String, TXID, [UInt8])
        case abandoned(String, TXID)
        case reset(String, TXID)
    }

    /// The complete, valid records of a spool, up to the first torn one.
    private func readRecords(_ name: String) -> [ParsedRecord] {
        guard case .success(let bytes) = Syscall.readFile(at: directoryFD, name) else { return [] }
        var records: [ParsedRecord] = []
        var offset = 0
        while offset + 8 <= bytes.count {
            let (length, kindValue) = bytes.withUnsafeBytes { raw in
                (Int(BigEndian.load(UInt32.self, from: raw, at: offset)), BigEndian.load(UInt32.self, from: raw, at: offset + 4))
            }
            guard length >= 10, offset + 8 + length <= bytes.count, let kind = RecordKind(rawValue: kindValue) else { break }
            let body = offset + 8
            let (txid, keyLength) = bytes.withUnsafeBytes { raw in
                (TXID(BigEndian.load(UInt64.self, from: raw, at: body)), Int(BigEndian.load(UInt16.self, from: raw, at: body + 8)))
            }
            guard 10 + keyLength <= length else { break }
            let key = String(decoding: bytes[(body + 10)..<(body + 10 + keyLength)], as: UTF8.self)
            let payload = Array(bytes[(body + 10 + keyLength)..<(body + length)])
            switch kind {
            case .file:
                // A torn append fails the LTX file checksum: the record, and
                // everything after it, never reached SQLite as committed.
                var decoder = LTXDecoder(source: LTXMemorySource(payload))
                guard let header = try? decoder.decodeHeader(), header.maxTXID == txid, (try? decoder.finish()) != nil else { return records }
                records.append(.file(key, txid, payload))
            case .abandoned:
                records.append(.abandoned(key, txid))
            case .reset:
                records.append(.reset(key, txid))
            }
            offset = body + length
        }
        return records
    }
}
