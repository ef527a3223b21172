#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore

/// Applies the primary's stream on a replica, in order, on its own thread.
///
/// LTX files arrive in parts and are reassembled (in memory, or in a file
/// under `DATA/tmp` past 8 MiB, so a snapshot of any size costs bounded
/// memory); each complete file is applied through the store, which verifies
/// it first, and acknowledged. A refused file closes the connection: the
/// replica reconnects and reports its position again, and a database whose
/// content disagreed with its position is reported with an unknown checksum
/// so that the primary sends a snapshot.
final class ReplicaApplier: @unchecked Sendable {
    private let store: Store
    private let logger: Logger
    private let condition = NSCondition()
    private var queue: [(ReplicationMessage, any Channel)] = []
    /// When each queued message arrived (same indices as `queue`).
    private var arrivals: [ContinuousClock.Instant] = []
    /// When the batch being applied arrived (its first message).
    private var applyingSince: ContinuousClock.Instant?
    private var head = 0
    private var queuedBytes = 0
    private var busy = false
    private var running = true
    /// Stopping: what is queued is applied although its connection closed.
    private var draining = false
    private var paused: (any Channel)?
    private var assemblies: [String: Assembly] = [:]
    private var distrusted = Set<String>()
    private var epoch: Epoch = .unknown
    /// The connection's primary takes `logged` messages (protocol 5).
    private var sendsLogged = false
    private let done = Semaphore()
    /// Called, on the apply thread, when a handoff marker is reached.
    var handoffHandler: (@Sendable (ReplicationMessage.Handoff, any Channel) -> Void)?

    /// Queue size above which the connection stops reading.
    static let highWater = 32 << 20

    private final class Assembly {
        var bytes: [UInt8] = []
        var file: (fd: Int32, path: String)?
        var divergent = false

        deinit {
            if let file {
                Syscall.close(file.fd)
                _ = Syscall.unlink(at: AT_FDCWD, file.path)
            }
        }
    }

    init(store: Store, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func start() {
        DetachedThread { [self] in loop() }.start()
    }

    /// Stops after applying what is queued (bounded by `drainTimeout`): what
    /// this replica received is kept, whatever it does next (stop, or lead).
    func stop(drainTimeout: Duration = .seconds(5)) {
        condition.lock()
        let deadline = Date().addingTimeInterval(Double(drainTimeout.milliseconds) / 1000)
        draining = true
        while (busy || head < queue.count) && Date() < deadline { _ = condition.wait(until: deadline) }
        running = false
        condition.broadcast()
        condition.unlock()
        done.wait()
    }

    var highestEpoch: Epoch {
        condition.lock()
        defer { condition.unlock() }
        return epoch
    }

    func noteEpoch(_ value: Epoch) {
        condition.lock()
        epoch = max(epoch, value)
        condition.unlock()
    }

    /// Set by the handshake, before the stream starts.
    func noteProtocol(_ version: UInt16) {
        condition.lock()
        sendsLogged = version >= ReplicationMessage.loggedVersion
        condition.unlock()
    }

    /// How long the oldest change received and not yet applied has waited
    /// (zero when nothing waits): the replica's lag behind what it received.
    var backlogAge: Duration {
        condition.lock()
        defer { condition.unlock() }
        guard let oldest = applyingSince ?? (head < arrivals.count ? arrivals[head] : nil) else { return .zero }
        return ContinuousClock.now - oldest
    }

    func isDistrusted(_ database: String) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return distrusted.contains(database)
    }

    /// Queues a message; returns true when the connection should stop
    /// reading until the applier catches up.
    func enqueue(_ message: ReplicationMessage, channel: any Channel) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        queue.append((message, channel))
        arrivals.append(.now)
        queuedBytes += Self.size(of: message)
        condition.broadcast()
        if queuedBytes > Self.highWater && paused == nil {
            paused = channel
            return true
        }
        return false
    }

    /// Waits until everything queued is applied, and forgets half-received
    /// files (a new connection starts them again).
    func waitUntilIdle() {
        condition.lock()
        while busy || head < queue.count { condition.wait() }
        let cut = assemblies
        assemblies.removeAll()
        condition.unlock()
        for (database, assembly) in cut.sorted(by: { $0.key < $1.key }) {
            var received = assembly.bytes.count
            if let file = assembly.file {
                if case .success(let info) = Syscall.fstat(file.fd) { received += Int(info.st_size) }
                Syscall.close(file.fd)
                _ = Syscall.unlink(at: AT_FDCWD, file.path)
            }
            logger.warning(
                "the link to the primary closed in the middle of an LTX file (a snapshot, or a large transaction); it is sent again on the next connection",
                metadata: ["database": "\(database)", "received-bytes": "\(received)"])
        }
    }

    private static func size(of message: ReplicationMessage) -> Int {
        switch message {
        case .ltx(_, _, let bytes): return bytes.count
        case .putFile(let file): return file.content.count
        default: return 64
        }
    }

    private func loop() {
        store.registerDaemonThread()
        Syscall.setThreadNice(10)
        while true {
            condition.lock()
            while running && head == queue.count { condition.wait() }
            if !running {
                condition.unlock()
                done.post()
                return
            }
            // Consecutive whole LTX files of one database are applied as one
            // batch: one lock round with the readers, one cache invalidation.
            var batch = [queue[head]]
            applyingSince = arrivals[head]
            head += 1
            if case .ltx(let database, let part, _) = batch[0].0, part.contains(.whole), !part.contains(.divergent) {
                var bytes = 0
                while head < queue.count, batch.count < 1024, bytes < 16 << 20,
                    case .ltx(let next, let nextPart, let payload) = queue[head].0, next == database, nextPart.contains(.whole),
                    !nextPart.contains(.divergent), queue[head].1 === batch[0].1
                {
                    batch.append(queue[head])
                    bytes += payload.count
                    head += 1
                }
            }
            // Release the payloads of taken slots now; the slots go with the
            // next compaction.
            for index in (head - batch.count)..<head { queue[index].0 = .heartbeat(epoch: .unknown) }
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                arrivals.removeFirst(head)
                head = 0
            }
            for (message, _) in batch { queuedBytes -= Self.size(of: message) }
            busy = true
            var resume: (any Channel)?
            if let paused, queuedBytes < Self.highWater / 2 {
                resume = paused
                self.paused = nil
            }
            condition.unlock()
            if let resume { _ = resume.setOption(ChannelOptions.autoRead, value: true) }

            let channel = batch[0].1
            let isData: Bool
            if case .handoff = batch[0].0 { isData = false } else { isData = true }
            condition.lock()
            let keep = draining && isData
            condition.unlock()
            if channel.isActive || keep {
                if batch.count > 1, case .ltx(let database, _, _) = batch[0].0 {
                    applyBatch(database: database, batch.map { message, _ in
                        if case .ltx(_, _, let bytes) = message { return LTXContent.bytes(bytes) }
                        return LTXContent.bytes([])
                    }, divergent: false, channel: channel)
                } else {
                    apply(batch[0].0, channel: channel)
                }
            }

            condition.lock()
            busy = false
            applyingSince = nil
            condition.broadcast()
            condition.unlock()
        }
    }

    private func apply(_ message: ReplicationMessage, channel: any Channel) {
        switch message {
        case .ltx(let database, let part, let bytes):
            receivePart(database: database, part: part, bytes: bytes, channel: channel)
        case .epochs(let database, let history):
            store.notePrimaryEpochs(database: database, history)
        case .putFile(let file):
            report(store.applyFile(path: file.path, mode: file.mode, content: file.content), file.path)
        case .removePath(let path):
            report(store.applyRemove(path: path), path)
        case .makeDirectory(let path, let mode):
            report(store.applyDirectory(path: path, mode: mode), path)
        case .symlink(let path, let target):
            report(store.applySymlink(path: path, target: target), path)
        case .handoff(let handoff):
            handoffHandler?(handoff, channel)
        default:
            break
        }
    }

    private func report(_ result: Result<Void, Errno>, _ path: String) {
        if case .failure(let error) = result {
            logger.error("cannot apply a plain-file change from the primary", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    private func receivePart(database: String, part: ReplicationMessage.LTXPart, bytes: [UInt8], channel: any Channel) {
        if part.contains(.first) { assemblies[database] = Assembly() }
        guard let assembly = assemblies[database] else {
            logger.warning("LTX part without its start; reconnecting", metadata: ["database": "\(database)"])
            channel.close(promise: nil)
            return
        }
        if part.contains(.divergent) { assembly.divergent = true }
        if let file = assembly.file {
            _ = bytes.withUnsafeBytes { Syscall.write(file.fd, $0) }
        } else {
            assembly.bytes += bytes
            if assembly.bytes.count > 8 << 20 {
                // A large file (a snapshot): continue on disk.
                let directory = store.directory.root + "/tmp"
                _ = Syscall.mkdir(at: AT_FDCWD, directory, mode: 0o700)
                let path = directory + "/receive-\(UUID().uuidString).ltx"
                if case .success(let fd) = Syscall.open(at: AT_FDCWD, path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600) {
                    _ = assembly.bytes.withUnsafeBytes { Syscall.write(fd, $0) }
                    assembly.bytes = []
                    assembly.file = (fd, path)
                }
            }
        }
        guard part.contains(.last) else { return }
        assemblies[database] = nil
        let content: LTXContent = assembly.file.map { .file($0.path) } ?? .bytes(assembly.bytes)
        applyBatch(database: database, [content], divergent: assembly.divergent, channel: channel)
    }

    /// Applies one batch and acknowledges the position it reaches. A batch
    /// this node cannot record or write (a full disk) is tried again here,
    /// with backoff, while the connection lasts: the stream waits behind it
    /// (reading stops at ``highWater``) and nothing after it is applied out
    /// of order. Once it is logged, only the write is retried.
    private func applyBatch(database: String, _ files: [LTXContent], divergent: Bool, channel: any Channel) {
        var files = files
        var delay = Duration.milliseconds(100)
        condition.lock()
        let sendsLogged = self.sendsLogged
        condition.unlock()
        let logged: (TXID) -> Void = { txid in
            guard sendsLogged else { return }
            channel.writeAndFlush(ReplicationFrameCodec.frame(.logged(database: database, txid: txid), allocator: channel.allocator), promise: nil)
        }
        while true {
            let (position, refusal) = store.applyTransactions(database: database, files, divergent: divergent, logged: logged)
            if let position {
                condition.lock()
                distrusted.remove(database)
                condition.unlock()
                channel.writeAndFlush(ReplicationFrameCodec.frame(.acknowledge(database: database, txid: position.txid), allocator: channel.allocator), promise: nil)
            }
            guard let refusal else { return }
            guard refusal.isRetryable else {
                logger.error("refused an LTX file from the primary; reconnecting", metadata: ["reason": "\(refusal)"])
                if case .postApplyMismatch = refusal {
                    condition.lock()
                    distrusted.insert(database)
                    condition.unlock()
                }
                channel.close(promise: nil)
                return
            }
            if case .stalled = refusal { files = [] }
            guard waitToRetry(delay, channel: channel) else { return }
            delay = min(delay * 2, .seconds(2))
        }
    }

    /// Waits `delay` before a retry; false when the applier stops or the
    /// connection is gone (the next one starts from the position reached).
    private func waitToRetry(_ delay: Duration, channel: any Channel) -> Bool {
        let deadline = Date().addingTimeInterval(Double(delay.milliseconds) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while running && Date() < deadline {
            _ = condition.wait(until: deadline)
        }
        return running && channel.isActive
    }
}

