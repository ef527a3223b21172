import Logging
import ServiceLifecycle

/// A part of the daemon that runs on threads of its own (a lease's loop,
/// retention, the metrics sampler, a listener), as a swift-service-lifecycle
/// `Service`: started when the group runs, stopped at graceful shutdown.
/// Its start and stop run on a thread of their own, so that their blocking
/// calls (asking peers, waiting for a loop to end) never hold a thread of
/// the concurrency pool.
struct BlockingService: Service, CustomStringConvertible {
    let description: String
    private let start: @Sendable () -> Void
    private let stop: @Sendable () -> Void

    init(_ name: String, start: @escaping @Sendable () -> Void = {}, stop: @escaping @Sendable () -> Void) {
        self.description = name
        self.start = start
        self.stop = stop
    }

    func run() async throws {
        await onThread(start)
        // Returns at graceful shutdown; throws if the group is cancelled
        // instead: stopping is the same either way.
        try? await gracefulShutdown()
        await onThread(stop)
    }
}

/// The FUSE session: serves, once the lease has decided this node's first
/// role (an application that writes as soon as the mount answers must find
/// a primary writable), until graceful shutdown stops its loop; then
/// unmounts. If the loop ends by itself (the mount was taken away), the
/// service returns and the group shuts the rest down in order.
struct MountService: Service, CustomStringConvertible {
    let session: FUSESession
    /// Posted when the lease has made its first decision.
    let roleDecided: Semaphore
    let logger: Logger
    var description: String { "mount" }

    func run() async throws {
        let (session, roleDecided) = (self.session, self.roleDecided)
        let result = await withGracefulShutdownHandler {
            await onThread {
                roleDecided.wait()
                return session.run()
            }
        } onGracefulShutdown: {
            session.stop()
        }
        session.unmount()
        logger.info("unmounted", metadata: ["loop": "\(result)"])
    }
}

/// Runs `body` on a new thread and returns its result.
func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DetachedThread { continuation.resume(returning: body()) }.start()
    }
}
