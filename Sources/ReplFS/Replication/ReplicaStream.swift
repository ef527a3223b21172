#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import Synchronization

/// The primary's side of one replica connection, after the handshake: brings
/// the replica up to date, then streams every change as it commits.
///
/// It runs on its own thread (reading LTX files and building snapshots is
/// blocking work) and writes to the channel with flow control: it waits for
/// the network when the channel is not writable, so a slow replica slows
/// only its own stream, and memory does not grow.
final class ReplicaStream: @unchecked Sendable {
    let replica: String
    /// The replica's node ID (its data directory's), which its name must
    /// stay bound to while it is connected.
    let replicaID: UInt64
    let peer: String
    /// The replica's advertised address, and whether it may take over.
    let address: String
    let candidate: Bool
    private let channel: any Channel
    private let store: Store
    private let feed: ChangeFeed
    private let epoch: Epoch
    private let logger: Logger
    private let counters: ReplicationCounters
    private let stopped = Atomic(false)
    /// Posted when the stream's thread has ended (its channel closed).
    private let ended = Semaphore()
    /// What the replica holds (from the handshake, then from what was sent).
    private var sent: [String: Position]
    /// The newest epoch of the history last sent per database: a
    /// transaction from another epoch is preceded by the history again.
    private var epochsSent: [String: Epoch] = [:]
    private var files: [String: UInt64]
    /// What the replica acknowledged (per database), and when it last did;
    /// and what it holds durably in its log (`logged`, applied or not).
    let acknowledged = Mutex<(txids: [String: TXID], at: ContinuousClock.Instant?, logged: [String: TXID])>(([:], nil, [:]))
    private var pending: [EventLoopFuture<Void>] = []
    /// Frames not yet handed to the channel (written in batches).
    private var outgoing: ByteBuffer

    init(
        replica: String, replicaID: UInt64, peer: String, address: String, candidate: Bool, channel: any Channel, store: Store, feed: ChangeFeed, epoch: Epoch,
        positions: [ReplicationMessage.DatabasePosition], files: [ReplicationMessage.FileDigest], counters: ReplicationCounters,
        logger: Logger
    ) {
        self.counters = counters
        self.replica = replica
        self.replicaID = replicaID
        self.peer = peer
        self.address = address
        self.candidate = candidate
        self.channel = channel
        self.store = store
        self.feed = feed
        self.epoch = epoch
        self.logger = logger
        sent = Dictionary(positions.map { ($0.database, $0.position) }, uniquingKeysWith: { a, _ in a })
        outgoing = channel.allocator.buffer(capacity: 64 << 10)
        self.files = Dictionary(files.map { ($0.path, $0.checksum) }, uniquingKeysWith: { a, _ in a })
    }

    func start() {
        DetachedThread { [self] in
            run()
            ended.post()
        }.start()
    }

    func stop() {
        stopped.store(true, ordering: .releasing)
        feed.wakeAll()
    }

    /// Closes the connection (pending writes fail, so the thread ends).
    func closeChannel() {
        channel.close(mode: .all, promise: nil)
    }

    /// Waits (at most `timeout`) until the stream's thread has ended: its
    /// last writes and the close of its channel must reach the event loop
    /// before that is shut down.
    func waitUntilEnded(timeout: Duration) -> Bool {
        guard ended.wait(timeout: timeout) else { return false }
        ended.post()
        return true
    }

    private var isRunning: Bool { !stopped.load(ordering: .acquiring) && channel.isActive }

    private func run() {
        // Replication yields to the commits it follows (two cores here: the
        // application's round trips through FUSE must not wait behind it).
        Syscall.setThreadNice(10)
        logger.info("replica connected", metadata: ["replica": "\(replica)", "peer": "\(peer)"])
        let (reader, first) = feed.join()
        defer { feed.leave(reader) }
        var sequence = first
        guard catchUp() else { return finish() }
        var lastSent = Date()
        while isRunning {
            switch feed.next(from: sequence, timeout: 1, reader: reader) {
            case .behind:
                // Fell further behind than the feed remembers: catch up from the logs.
                sequence = feed.restart(reader)
                guard catchUp() else { return finish() }
            case .entries(let entries):
                for entry in entries {
                    guard forward(entry.item) else {
                        // A gap: the change was covered neither by the feed nor by catch-up.
                        sequence = feed.restart(reader)
                        guard catchUp() else { return finish() }
                        break
                    }
                    sequence = entry.sequence + 1
                }
                if !entries.isEmpty {
                    lastSent = Date()
                    flushPending()
                    // Let a few more commits gather before waking again: one
                    // wakeup per commit would cost the primary's commit path
                    // (two cores) more than the fraction of a millisecond of lag.
                    if entries.count < 256 { usleep(500) }
                } else if Date().timeIntervalSince(lastSent) >= 1 {
                    send(.heartbeat(epoch: epoch))
                    flushPending()
                    lastSent = Date()
                }
            }
        }
        finish()
    }

    private func finish() {
        waitForWrites()
        logger.info("replica stream ended", metadata: ["replica": "\(replica)", "peer": "\(peer)"])
        _ = channel.close(mode: .all)
    }

    // MARK: - Live changes

    /// Sends one change; false if it does not follow what the replica holds.
    private func forward(_ item: ChangeFeed.Item) -> Bool {
        let change: StoreChange
        switch item {
        case .change(let value):
            change = value
        case .handoff(let handoff):
            send(.handoff(handoff))
            flushPending()
            return true
        }
        switch change {
        case .transaction(let database, let txid, let epoch, let ltx):
            let current = sent[database]?.txid.rawValue ?? 0
            if txid.rawValue <= current { return true }
            guard txid.rawValue == current + 1 else { return false }
            if epochsSent[database] != epoch { sendEpochs(database: database) }
            guard let position = sendLTX(database: database, ltx, divergent: false) else { return false }
            sent[database] = position
        case .file(let path, let mode, let content):
            send(.putFile(.init(path: path, mode: mode, content: content)))
            files[path] = PlainEntry.digest(kind: .file, mode: mode, bytes: content)
        case .removed(let path):
            send(.removePath(path))
            files[path] = nil
        case .directory(let path, let mode):
            send(.makeDirectory(path: path, mode: mode))
            files[path] = PlainEntry.digest(kind: .directory, mode: mode, bytes: [])
        case .symlink(let path, let target):
            send(.symlink(path: path, target: target))
            files[path] = PlainEntry.digest(kind: .symlink, mode: 0, bytes: Array(target.utf8))
        case .renamed(let from, let to):
            // Sent as what the destination now holds, and what went away.
            if let entry = store.plainEntry(to) { sendEntry(entry) }
            for (path, _) in files where path == from || path.hasPrefix(from + "/") { files[path] = nil }
            send(.removePath(from))
            if let entry = store.plainEntry(to), entry.kind == .directory { sendTree(under: to) }
        }
        return true
    }

    // MARK: - Catch-up

    private func catchUp() -> Bool {
        // Plain files first: a key file is in place before the database
        // transactions that came after it.
        let entries = store.plainEntries()
        let present = Set(entries.map(\.path))
        for entry in entries where files[entry.path] != entry.digest {
            sendEntry(entry)
        }
        for path in files.keys.sorted(by: >) where !present.contains(path) {
            send(.removePath(path))
            files[path] = nil
        }
        guard isRunning else { return false }

        let databases = Set(store.positions().map(\.database)).union(sent.keys)
        for database in databases.sorted() {
            guard isRunning else { return false }
            sendEpochs(database: database)
            switch store.catchUp(database: database, from: sent[database]) {
            case .upToDate:
                // The replica already holds this position (it said so in the
                // handshake, and it is ours): that is its acknowledgement, so
                // `status` shows its true lag before the next commit.
                if let txid = sent[database]?.txid { acknowledge(database: database, txid: txid) }
                continue
            case .records(let run, let rebase):
                var first = true
                while isRunning, var content = run.next() {
                    if first, let rebase {
                        guard let bytes = content.rebased(from: rebase) else { return false }
                        content = .bytes(bytes)
                    }
                    first = false
                    guard let position = sendLTX(database: database, content, divergent: false) else { return false }
                    sent[database] = position
                }
            case .snapshot(let divergent):
                guard let position = sendSnapshot(database: database, divergent: divergent) else { return false }
                sent[database] = position
            }
        }
        flushPending()
        return isRunning
    }

    /// Sends the database's epoch history, which the replica adopts with the
    /// files that follow.
    private func sendEpochs(database: String) {
        let history = store.epochHistory(of: database)
        send(.epochs(database: database, history: history))
        epochsSent[database] = history.lastEpoch ?? .unknown
    }

    private func sendEntry(_ entry: PlainEntry) {
        switch entry.kind {
        case .directory:
            send(.makeDirectory(path: entry.path, mode: entry.mode))
        case .symlink:
            guard case .success(let target) = store.readlink(entry.path) else { return }
            send(.symlink(path: entry.path, target: target))
        case .file:
            guard case .success(let content) = store.readPlainFile(entry.path) else { return }
            send(.putFile(.init(path: entry.path, mode: entry.mode, content: content)))
        }
        files[entry.path] = entry.digest
    }

    private func sendTree(under directory: String) {
        for entry in store.plainEntries() where entry.path.hasPrefix(directory + "/") { sendEntry(entry) }
    }

    /// Sends the database's current content as a snapshot LTX file (minimum
    /// TXID 1), encoded page by page from a consistent copy.
    private func sendSnapshot(database: String, divergent: Bool) -> Position? {
        let primaryPosition = store.position(of: database) ?? .empty
        guard case .success(let snapshot) = store.snapshot(database: database) else {
            // Nothing to copy: the database was deleted here. Send an empty snapshot.
            let txid = TXID(max(primaryPosition.txid.rawValue, 1))
            let header = LTXHeader(pageSize: 4096, commit: 0, minTXID: TXID(1), maxTXID: txid, timestamp: WallClock.milliseconds())
            guard var encoder = try? LTXEncoder(header: header), (try? encoder.finish(postApplyChecksum: .emptyDatabase)) != nil else { return nil }
            send(.ltx(database: database, part: divergent ? [.whole, .divergent] : .whole, bytes: encoder.takeBytes()))
            return Position(txid: txid, checksum: .emptyDatabase)
        }
        defer { _ = Syscall.unlink(at: AT_FDCWD, snapshot.path) }
        counters.snapshotsSent.add(1, ordering: .relaxed)
        logger.info("sending snapshot", metadata: ["replica": "\(replica)", "database": "\(database)", "position": "\(snapshot.position)", "pages": "\(snapshot.pageCount)"])
        var first = true
        let encoded = snapshot.encode(timestamp: WallClock.milliseconds(), chunk: ReplicationFrameCodec.ltxPartSize, continuing: { isRunning }) { bytes, last in
            var part: ReplicationMessage.LTXPart = []
            if first { part.insert(.first) }
            if first && divergent { part.insert(.divergent) }
            if last { part.insert(.last) }
            send(.ltx(database: database, part: part, bytes: bytes))
            first = false
            return true
        }
        return encoded ? snapshot.position : nil
    }

    /// Sends one LTX file (from memory or disk) in parts; returns the
    /// position it leads to. Files are read part by part: memory does not
    /// grow with the size of a transaction.
    private func sendLTX(database: String, _ ltx: LTXContent, divergent: Bool) -> Position? {
        switch ltx {
        case .bytes(let bytes):
            guard bytes.count >= LTXHeader.size + LTXTrailer.size else { return nil }
            return bytes.withUnsafeBytes { buffer in
                sendLTXParts(database: database, size: bytes.count, divergent: divergent) { offset, count in
                    Array(buffer[offset..<offset + count])
                }
            }
        case .file(let path):
            guard case .success(let fd) = Syscall.open(at: AT_FDCWD, path, flags: O_RDONLY),
                case .success(let info) = Syscall.fstat(fd)
            else { return nil }
            defer { Syscall.close(fd) }
            return sendLTXParts(database: database, size: Int(info.st_size), divergent: divergent) { offset, count in
                var chunk = [UInt8](repeating: 0, count: count)
                let read = chunk.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: Int64(offset)) }
                guard case .success(count) = read else { return nil }
                return chunk
            }
        }
    }

    /// Sends `size` bytes of an LTX file, as `read(offset, count)` yields
    /// them, and returns the position in its header and trailer.
    private func sendLTXParts(database: String, size: Int, divergent: Bool, read: (Int, Int) -> [UInt8]?) -> Position? {
        guard size >= LTXHeader.size + LTXTrailer.size, let header = read(0, LTXHeader.size), let trailer = read(size - LTXTrailer.size, LTXTrailer.size)
        else { return nil }
        let maxTXID = header.withUnsafeBytes { TXID(BigEndian.load(UInt64.self, from: $0, at: 24)) }
        let post = trailer.withUnsafeBytes { Checksum(BigEndian.load(UInt64.self, from: $0, at: 0)) }  // post-apply, then file checksum
        var offset = 0
        repeat {
            let end = min(offset + ReplicationFrameCodec.ltxPartSize, size)
            guard isRunning, let bytes = read(offset, end - offset) else { return nil }
            var part: ReplicationMessage.LTXPart = []
            if offset == 0 { part.insert(.first) }
            if end == size { part.insert(.last) }
            if offset == 0 && divergent { part.insert(.divergent) }
            send(.ltx(database: database, part: part, bytes: bytes))
            offset = end
        } while offset < size
        return Position(txid: maxTXID, checksum: post)
    }

    // MARK: - Writing with flow control

    private func send(_ message: ReplicationMessage) {
        guard channel.isActive else { return }
        ReplicationFrameCodec.encode(message, into: &outgoing)
        if outgoing.readableBytes >= 256 << 10 { writeOutgoing() }
    }

    /// Hands the buffered frames to the channel in one write.
    private func writeOutgoing() {
        guard outgoing.readableBytes > 0 else { return }
        pending.append(channel.writeAndFlush(outgoing))
        outgoing = channel.allocator.buffer(capacity: 64 << 10)
        if pending.count >= 16 || !channel.isWritable { waitForWrites() }
    }

    /// Sends what is buffered now (end of a batch: the replica should not wait).
    private func flushPending() {
        writeOutgoing()
        if pending.count >= 16 { waitForWrites() }
    }

    /// Flow control: waits until the network took what was written.
    private func waitForWrites() {
        if let last = pending.last { _ = try? last.wait() }
        pending.removeAll(keepingCapacity: true)
    }

    func acknowledge(database: String, txid: TXID) {
        acknowledged.withLock {
            $0.txids[database] = txid
            $0.at = .now
            // Applied is also logged; a snapshot may have moved it back.
            $0.logged[database] = txid
        }
    }

    func logged(database: String, txid: TXID) {
        acknowledged.withLock { $0.logged[database] = txid }
    }
}
