#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// Appends spooled LTX records to their logs' segments, on its own thread,
/// in order;
/// also prepares and retires spools (see ``LTXSpool``).
///
/// A job that fails (no space, an I/O error) is not dropped: it and every
/// job after it are held back, in order, and retried every second until
/// they succeed. A spool's retirement comes after the writes of its
/// records, so a spool is never deleted while it holds a record whose file
/// is not durable (design.md, invariant 2). While held back, the log is
/// *stalled*: ``stall`` says why, for `status`, the log (once a minute)
/// and a metric; commits go on into the spool's preallocated space and
/// fail back to SQLite (SQLITE_FULL) only when a new spool cannot be made.
final class LTXMaterializer: Sendable {
    enum Job: Sendable {
        /// Append the spooled record at `source` (`minTXID...maxTXID`) to
        /// `log`'s segment. The bytes are read back from the spool (still in
        /// the page cache) rather than held in memory, so a backlog costs
        /// disk, not RAM.
        case write(source: LTXSpool.Location, minTXID: TXID, maxTXID: TXID, log: LTXLog)
        /// Remove the newest record of `log`, `txid` (it did not commit).
        case remove(txid: TXID, log: LTXLog)
        /// Every file written from spool `sequence` is done: make them
        /// durable, then delete the spool.
        case retire(directoryFD: Int32, sequence: UInt64)
        /// Prepare the next spool (fill it with zeros).
        case prepare(@Sendable () -> Void)
        /// Run `body` once every earlier job is done.
        case barrier(@Sendable () -> Void)
    }

    private struct Queue: ~Copyable {
        var jobs: [Job] = []
        var running = true
    }

    private let queue = Mutex(Queue())
    /// Why files are held back now, if they are.
    private let stalled = Mutex<Stall?>(nil)
    /// Where stalls are reported (set once the store has a logger).
    let logger = Mutex<Logger?>(nil)
    /// Open spools being read, by sequence (touched only by the thread).
    private let spools = Mutex<[UInt64: Int32]>([:])
    private let signal = Semaphore()
    private let stopped = Semaphore()
    /// Jobs enqueued and not yet done.
    private let outstanding = Atomic<Int>(0)

    /// Outstanding jobs at which a commit waits for the files to catch up,
    /// and the count it waits for: the backlog, and the memory it holds,
    /// stays bounded however fast transactions commit. (Their records are
    /// in the spool already; the wait is for memory, not durability.)
    static let highWater = 16_384
    static let lowWater = 8_192

    init() {
        DetachedThread { [self] in loop() }.start()
    }

    func enqueue(_ job: Job) {
        outstanding.wrappingAdd(1, ordering: .relaxed)
        queue.withLock { $0.jobs.append(job) }
        signal.post()
    }

    /// Waits, if the backlog is at ``highWater``, until it is down to
    /// ``lowWater``. Never while the log is stalled (the spool's space is
    /// the bound then, and commits fail with SQLITE_FULL when it runs out),
    /// and never holding a lock the thread needs: call it after enqueueing.
    func waitForRoom() {
        guard outstanding.load(ordering: .relaxed) > Self.highWater else { return }
        while outstanding.load(ordering: .relaxed) > Self.lowWater, stalled.withLock({ $0 == nil }), queue.withLock({ $0.running }) {
            usleep(200)
        }
    }

    /// Why the log is held back: the first failing job's error, since when,
    /// and how many jobs wait behind it.
    struct Stall: Sendable, Equatable {
        var error: Errno
        var since: ContinuousClock.Instant
        var waiting: Int
        /// When the last log line about it was written.
        var logged: ContinuousClock.Instant

        /// One line for `status`: "log stalled: no space on DATA (12 files waiting)".
        var summary: String {
            let reason = error == Errno(rawValue: ENOSPC) ? "no space on DATA" : "\(error) on DATA"
            return "log stalled: \(reason) (\(waiting) LTX jobs waiting, held in the spool)"
        }
    }

    /// Why files are held back now, or nil.
    var stall: Stall? { stalled.withLock { $0 } }

    /// Waits until every job enqueued so far is done.
    func drain() {
        let done = Semaphore()
        enqueue(.barrier { done.post() })
        done.wait()
    }

    /// Waits until every job enqueued so far is done, or `timeout` passes
    /// while the log is stalled. Returns whether everything was done.
    func drain(orGiveUpAfter timeout: Duration) -> Bool {
        let done = Semaphore()
        enqueue(.barrier { done.post() })
        while !done.wait(timeout: timeout) {
            if stall != nil { return false }
        }
        return true
    }

    /// Finishes the queue and ends the thread.
    func stop() {
        let wasRunning = queue.withLock { queue -> Bool in
            defer { queue.running = false }
            return queue.running
        }
        guard wasRunning else { return }
        signal.post()
        stopped.wait()
    }

    /// Queued jobs above which the thread competes with the commits at
    /// normal priority (each job costs memory until it is done), and below
    /// which it yields again.
    static let urgentBacklog = 8_192
    static let relaxedBacklog = 512

    private func loop() {
        // Lowest priority: writing the files is never more urgent than the
        // commits it follows, until the backlog grows (see urgentBacklog).
        Syscall.setThreadNice(19)
        var urgent = false
        var largest = 0
        // Jobs held back behind one that failed, in order.
        var backlog: [Job] = []
        while true {
            if backlog.isEmpty {
                signal.wait()
            } else {
                _ = signal.wait(timeout: .seconds(1))
            }
            let (jobs, running) = queue.withLock { queue -> ([Job], Bool) in
                defer { queue.jobs.removeAll(keepingCapacity: true) }
                return (queue.jobs, queue.running)
            }
            backlog += jobs
            largest = max(largest, backlog.count)
            if !urgent && backlog.count > Self.urgentBacklog {
                urgent = true
                Syscall.setThreadNice(0)
            } else if urgent && backlog.count < Self.relaxedBacklog {
                urgent = false
                Syscall.setThreadNice(19)
            }
            var done = 0
            var failure: Errno?
            while done < backlog.count {
                if case .failure(let error) = perform(backlog[done]) {
                    if Self.isWorthRetrying(error) {
                        failure = error
                        break
                    }
                    // Nothing a retry can mend (the spool or directory is
                    // gone): say so and go on.
                    logger.withLock { $0 }?.error("cannot write an LTX file", metadata: ["job": "\(backlog[done])", "error": "\(error)"])
                }
                done += 1
                outstanding.wrappingSubtract(1, ordering: .relaxed)
            }
            backlog.removeFirst(done)
            report(failure, waiting: backlog.count)
            if backlog.isEmpty && largest > Self.urgentBacklog {
                // A large backlog is over: its memory goes back.
                backlog = []
                largest = 0
                Syscall.releaseFreeMemory()
            }
            if !running {
                // Stopping: what is held back stays in the spools, which the
                // next start replays.
                if backlog.isEmpty || failure != nil {
                    stopped.post()
                    return
                }
                signal.post()
            }
        }
    }

    /// Errors that space or a device coming back can mend.
    static func isWorthRetrying(_ error: Errno) -> Bool {
        [ENOSPC, EDQUOT, EIO, ENOMEM, EAGAIN, EROFS, EFBIG, EMFILE, ENFILE].contains(error.rawValue)
    }

    /// Records the stall (or its end) and logs it at most once a minute.
    private func report(_ failure: Errno?, waiting: Int) {
        let now = ContinuousClock.now
        let (line, ended): (String?, Stall?) = stalled.withLock { stall in
            guard let failure else {
                defer { stall = nil }
                return (nil, stall)
            }
            if var current = stall {
                current.error = failure
                current.waiting = waiting
                let due = current.logged.duration(to: now) >= .seconds(60)
                if due { current.logged = now }
                stall = current
                return (due ? current.summary : nil, nil)
            }
            let started = Stall(error: failure, since: now, waiting: waiting, logged: now)
            stall = started
            return (started.summary, nil)
        }
        let logger = self.logger.withLock { $0 }
        if let line { logger?.error("\(line); retrying every second") }
        if let ended { logger?.notice("log resumed: the held-back LTX files are written", metadata: ["stalled-for": "\(ended.since.duration(to: now))"]) }
    }

    private func perform(_ job: Job) -> Result<Void, Errno> {
        switch job {
        case .write(let source, let minTXID, let maxTXID, let log):
            guard let fd = spool(source) else { return .failure(.io) }
            var bytes = [UInt8](repeating: 0, count: source.length)
            switch bytes.withUnsafeMutableBytes({ Syscall.pread(fd, into: $0, at: source.offset) }) {
            case .success(source.length): break
            case .success: return .failure(.io)
            case .failure(let error): return .failure(error)
            }
            return log.writeRecord(bytes, minTXID: minTXID, maxTXID: maxTXID)
        case .remove(let txid, let log):
            log.removeRecord(txid)
            return .success(())
        case .retire(let directoryFD, let sequence):
            // The files written from this spool must survive a power loss
            // before the spool that can rebuild them goes: if they cannot be
            // made durable, the spool stays.
            let durable = Syscall.syncfs(directoryFD).flatMap { Syscall.fsync(directoryFD) }
            if case .failure(let error) = durable { return .failure(error) }
            if let fd = spools.withLock({ $0.removeValue(forKey: sequence) }) { Syscall.close(fd) }
            _ = Syscall.unlink(at: directoryFD, LTXSpool.name(sequence))
            return .success(())
        case .prepare(let body), .barrier(let body):
            body()
            return .success(())
        }
    }

    private func spool(_ location: LTXSpool.Location) -> Int32? {
        if let fd = spools.withLock({ $0[location.sequence] }) { return fd }
        guard case .success(let fd) = Syscall.open(at: location.directoryFD, LTXSpool.name(location.sequence), flags: O_RDONLY) else { return nil }
        spools.withLock { $0[location.sequence] = fd }
        return fd
    }

    /// The name a file is written under before it is renamed into place.
    static func temporaryName(_ name: String) -> String { name + temporarySuffix }
    /// Ends every temporary name: a leftover is a write a crash cut short.
    static let temporarySuffix = ".tmp"
}
