#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Turns spooled LTX records into LTX files, on its own thread, in order;
/// also prepares and retires spools (see ``LTXSpool``).
final class LTXMaterializer: Sendable {
    enum Job: Sendable {
        /// Write the spooled record at `source` as the file `name` in the
        /// directory `directoryFD`. The bytes are read back from the spool
        /// (still in the page cache) rather than held in memory, so a backlog
        /// costs disk, not RAM.
        case write(directoryFD: Int32, name: String, source: LTXSpool.Location, owner: LTXLog)
        /// Remove the file `name` (its transaction did not commit).
        case remove(directoryFD: Int32, name: String, owner: LTXLog)
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
    /// Reused inodes for new files (set once the data directory is known).
    let recycler = Mutex<LTXRecycler?>(nil)
    /// Open spools being read, by sequence (touched only by the thread).
    private let spools = Mutex<[UInt64: Int32]>([:])
    private let signal = Semaphore()
    private let stopped = Semaphore()

    init() {
        DetachedThread { [self] in loop() }.start()
    }

    func enqueue(_ job: Job) {
        queue.withLock { $0.jobs.append(job) }
        signal.post()
    }

    /// Waits until every job enqueued so far is done.
    func drain() {
        let done = Semaphore()
        enqueue(.barrier { done.post() })
        done.wait()
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

    private func loop() {
        // Lowest priority: writing the files is never more urgent than the
        // commits it follows; a backlog waits in the spool.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
        while true {
            signal.wait()
            let (jobs, running) = queue.withLock { queue -> ([Job], Bool) in
                defer { queue.jobs.removeAll(keepingCapacity: true) }
                return (queue.jobs, queue.running)
            }
            for job in jobs { perform(job) }
            if !running && jobs.isEmpty {
                stopped.post()
                return
            }
            if !running {
                // Drain what arrived meanwhile, then stop.
                signal.post()
            }
        }
    }

    private func perform(_ job: Job) {
        switch job {
        case .write(let directoryFD, let name, let source, _):
            guard let fd = spool(source) else { return }
            var bytes = [UInt8](repeating: 0, count: source.length)
            guard case .success(source.length) = bytes.withUnsafeMutableBytes({ Syscall.pread(fd, into: $0, at: source.offset) }) else { return }
            if let recycler = recycler.withLock({ $0 }) {
                _ = recycler.write(directoryFD: directoryFD, name: name, bytes: bytes)
            } else {
                _ = LTXMaterializer.writeFile(directoryFD: directoryFD, name: name, bytes: bytes)
            }
        case .remove(let directoryFD, let name, _):
            _ = Syscall.unlink(at: directoryFD, name)
        case .retire(let directoryFD, let sequence):
            // The files written from this spool must survive a power loss
            // before the spool that can rebuild them goes.
            if let fd = spools.withLock({ $0.removeValue(forKey: sequence) }) { Syscall.close(fd) }
            _ = Syscall.syncfs(directoryFD)
            _ = Syscall.fsync(directoryFD)
            _ = Syscall.unlink(at: directoryFD, LTXSpool.name(sequence))
        case .prepare(let body), .barrier(let body):
            body()
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

    /// Writes a whole file and then gives it its final name (no sync): a
    /// file under an LTX name is always complete, for catch-up, `verify`
    /// and anyone reading a live log.
    static func writeFile(directoryFD: Int32, name: String, bytes: [UInt8]) -> Result<Void, Errno> {
        let temporary = temporaryName(name)
        return Syscall.open(at: directoryFD, temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).flatMap { fd in
            defer { Syscall.close(fd) }
            return bytes.withUnsafeBytes { Syscall.write(fd, $0) }
        }.flatMap { _ in
            Syscall.rename(at: directoryFD, temporary, to: name)
        }
    }
}
