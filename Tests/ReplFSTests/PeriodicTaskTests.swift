#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing

@testable import ReplFS

@Suite("PeriodicTask")
struct PeriodicTaskTests {
    @Test("the first pass runs at start, later ones every interval, and none after stop returns")
    func runsUntilStopped() async throws {
        let passes = Atomic(0)
        let task = PeriodicTask(every: .milliseconds(20)) { passes.add(1, ordering: .relaxed) }
        task.start()
        let deadline = ContinuousClock.now + .seconds(10)
        while passes.load(ordering: .relaxed) < 3 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(passes.load(ordering: .relaxed) >= 3)
        try await blocking { task.stop() }
        let after = passes.load(ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(100))
        #expect(passes.load(ordering: .relaxed) == after)
        try await blocking { task.stop() }  // idempotent
    }

    @Test("stop waits for the pass in progress and wakes a long interval at once")
    func stopWaitsForThePass() async throws {
        let inPass = Semaphore()
        let finished = Atomic(false)
        let task = PeriodicTask(every: .seconds(3600)) {
            inPass.post()
            usleep(100_000)
            finished.store(true, ordering: .releasing)
        }
        task.start()
        try await blocking { inPass.wait() }
        let started = ContinuousClock.now
        try await blocking { task.stop() }
        let done = finished.load(ordering: .acquiring)
        #expect(done)
        #expect(ContinuousClock.now - started < .seconds(60))
    }

    @Test("stop before start never runs the body")
    func stopBeforeStart() async throws {
        let passes = Atomic(0)
        let task = PeriodicTask(every: .milliseconds(1)) { passes.add(1, ordering: .relaxed) }
        try await blocking { task.stop() }
        task.start()
        try await Task.sleep(for: .milliseconds(20))
        #expect(passes.load(ordering: .relaxed) == 0)
    }
}
