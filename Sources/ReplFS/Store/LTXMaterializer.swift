#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Turns spooled LTX records into LTX files, on its own thread, in order;
/// also prepares and retires spools (see ``LTXSpool``).
final class LTXMaterializer: Sendable {
    enum Job: Sendable {
        /// Write `bytes` as the file `name` in the directory `directoryFD`.
        case write(directoryFD: Int32, name: String, bytes: [UInt8], owner: LTXLog)
        /// Remove the file `name` (its transaction did not commit).
        case remove(directoryFD: Int32, name: String, owner: LTXLog)
        /// Every file written from the spool `name` is done: make them
        /// durable, then delete the spool.
        case retire(directoryFD: Int32, name: String)
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
        case .write(let directoryFD, let name, let bytes, _):
            _ = LTXMaterializer.writeFile(directoryFD: directoryFD, name: name, bytes: bytes)
        case .remove(let directoryFD, let name, _):
            _ = Syscall.unlink(at: directoryFD, name)
        case .retire(let directoryFD, let name):
            // The files written from this spool must survive a power loss
            // before the spool that can rebuild them goes.
            _ = Syscall.syncfs(directoryFD)
            _ = Syscall.fsync(directoryFD)
            _ = Syscall.unlink(at: directoryFD, name)
        case .prepare(let body), .barrier(let body):
            body()
        }
    }

    /// Writes a whole file under its final name (no sync).
    static func writeFile(directoryFD: Int32, name: String, bytes: [UInt8]) -> Result<Void, Errno> {
        Syscall.open(at: directoryFD, name, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).flatMap { fd in
            defer { Syscall.close(fd) }
            return bytes.withUnsafeBytes { Syscall.write(fd, $0) }
        }
    }
}
