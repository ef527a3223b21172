#if canImport(Glibc)
import Glibc
#endif

/// A detached thread running a closure (libfuse's loop must not run on a
/// Swift concurrency thread: the pool is two threads wide here).
final class DetachedThread: Sendable {
    private let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
    }

    func start() {
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        pthread_create(&thread, nil, { raw in
            let me = Unmanaged<DetachedThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, box.toOpaque())
        pthread_detach(thread)
    }
}
