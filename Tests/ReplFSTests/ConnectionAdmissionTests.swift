import Synchronization
import Testing

@testable import ReplFS

@Suite("Connection admission and refusal log")
struct ConnectionAdmissionTests {
    @Test("strangers fill only the unauthenticated slots; a peer that proves the token frees its slot")
    func caps() {
        let admission = ConnectionAdmission(maximumUnauthenticated: 2, maximumConnections: 3)
        #expect(admission.admit())
        #expect(admission.admit())
        #expect(!admission.admit(), "both handshake slots are taken")
        admission.authenticated()
        #expect(admission.admit(), "the authenticated peer no longer holds a handshake slot")
        #expect(!admission.admit(), "all three connections are taken")
        admission.closed(authenticated: true)
        admission.closed(authenticated: false)
        #expect(admission.current == (total: 1, unauthenticated: 1))
        #expect(admission.admit())
    }

    @Test("one line per address per interval, carrying the count of refusals in between")
    func rateLimited() {
        let clock = Atomic<UInt64>(1_000_000_000)
        let log = RefusalLog(interval: .seconds(60), capacity: 2, now: { clock.load(ordering: .relaxed) })
        let recorder = RecordingLogHandler()
        for _ in 0..<100 { log.refused("10.0.0.9", reason: "wrong token", logger: recorder.logger) }
        log.refused("10.0.0.8", reason: "frame too large", logger: recorder.logger)
        #expect(recorder.messages.value.count == 2, "\(recorder.messages.value)")
        clock.add(61_000_000_000, ordering: .relaxed)
        log.refused("10.0.0.9", reason: "wrong token", logger: recorder.logger)
        let lines = recorder.messages.value
        #expect(lines.count == 3)
        #expect(lines.last?.contains("refused-since-last-line=99") == true, "\(lines)")
        #expect(lines.last?.contains("peer=10.0.0.9") == true, "\(lines)")
        // A third address evicts the oldest: memory stays bounded.
        log.refused("10.0.0.7", reason: "x", logger: recorder.logger)
        log.refused("10.0.0.8", reason: "x", logger: recorder.logger)
        #expect(recorder.messages.value.count == 5, "the evicted address is logged again")
    }
}

@Suite("Log throttle")
struct LogThrottleTests {
    @Test("due at first, then once per interval")
    func paced() {
        let throttle = LogThrottle(interval: .seconds(60))
        #expect(throttle.isDue(now: 5_000_000_000))
        #expect(!throttle.isDue(now: 6_000_000_000))
        #expect(!throttle.isDue(now: 64_000_000_000))
        #expect(throttle.isDue(now: 65_000_000_000))
        #expect(!throttle.isDue(now: 65_000_000_001))
    }
}

@Suite("Connection rate")
struct ConnectionRateTests {
    @Test("one address gets its burst, then its rate; others are not held back by it; the overall bucket caps everyone")
    func buckets() {
        let clock = Atomic<UInt64>(1_000_000_000)
        let rate = ConnectionRate(perAddress: (10, 5), overall: (100, 8), capacity: 4, now: { clock.load(ordering: .relaxed) })
        for _ in 0..<5 { #expect(rate.allow("10.0.0.9")) }
        #expect(!rate.allow("10.0.0.9"), "its burst is spent")
        #expect(rate.allow("10.0.0.1"), "another address is not held back")
        clock.add(100_000_000, ordering: .relaxed)  // 0.1 s: one more for 10.0.0.9
        #expect(rate.allow("10.0.0.9"))
        #expect(!rate.allow("10.0.0.9"))
        // The overall bucket (8, refilled to full by the 0.1 s, one taken since)
        // holds 7: a flood from many addresses meets it.
        var admitted = 0
        for index in 0..<50 where rate.allow("10.1.0.\(index)") { admitted += 1 }
        #expect(admitted == 7, "\(admitted)")
    }
}
