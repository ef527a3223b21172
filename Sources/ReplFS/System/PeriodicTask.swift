/// Runs a short piece of background work every `interval` on a thread of
/// its own until stopped: the one loop behind the daemon's periodic work
/// (log retention, the metrics sampler), so that none of them keeps its own
/// running flag, wake-up and sleep ticks.
///
/// A thread rather than a task of the concurrency pool: the work blocks
/// (it takes database locks, unlinks files) and the pool is two threads
/// wide on the machines this runs on. ``stop()`` wakes the thread at once
/// and returns only after the pass in progress, if any, has ended, so
/// nothing runs after it returns.
final class PeriodicTask: Sendable {
    private enum State: Equatable, Sendable {
        case idle, running, stopping, stopped
    }

    private let interval: Duration
    private let body: @Sendable () -> Void
    private let state = Monitor(State.idle)

    /// - Parameters:
    ///   - interval: the time from the end of one pass to the start of the next.
    ///   - body: one pass (the first runs as soon as the task starts).
    init(every interval: Duration, _ body: @escaping @Sendable () -> Void) {
        self.interval = interval
        self.body = body
    }

    /// Starts the thread. Does nothing if already started or stopped.
    func start() {
        let starting = state.withLock { state -> Bool in
            guard state == .idle else { return false }
            state = .running
            return true
        }
        if starting { DetachedThread { [self] in loop() }.start() }
    }

    /// Stops the loop and waits for its pass in progress. Idempotent.
    func stop() {
        state.wait { state -> Monitor<State>.Step<Void> in
            switch state {
            case .idle, .stopped:
                state = .stopped
                return .done(())
            case .running:
                state = .stopping
                return .wait(until: nil)
            case .stopping:
                return .wait(until: nil)
            }
        }
    }

    private func loop() {
        while true {
            body()
            let deadline = ContinuousClock.now + interval
            let goOn = state.wait { state -> Monitor<State>.Step<Bool> in
                if state == .stopping {
                    state = .stopped
                    return .done(false)
                }
                return ContinuousClock.now >= deadline ? .done(true) : .wait(until: deadline)
            }
            guard goOn else { return }
        }
    }
}
