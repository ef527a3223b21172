#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization
import Testing

@testable import ReplFS

/// Replicas as the replication server would report them, changed by the test.
private final class FakeReplicas: Sendable {
    let replicas = Mutex<[ConnectedReplica]>([])
    let primary = Atomic(true)

    func set(_ name: String, candidate: Bool = true, _ txid: UInt64) {
        replicas.withLock { list in
            list.removeAll { $0.name == name }
            list.append(
                ConnectedReplica(
                    name: name, nodeID: 1, peer: "", address: "", candidate: candidate, acknowledged: ["db": TXID(txid)], lastAcknowledgement: nil))
        }
    }
}

/// Where a primary publishes its synchronous replicas, kept in memory.
private final class FakeMembership: SynchronousMembership {
    let published = Mutex<[SynchronousMembers]>([])
    var term: (node: String, epoch: Epoch)? { ("node-a", Epoch(5)) }
    func publishedMembers() -> SynchronousMembers? { published.withLock { $0.last } }
    func publish(_ members: SynchronousMembers) -> Bool {
        published.withLock { $0.append(members) }
        return true
    }
}

extension Result {
    var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }
}

@Suite("Synchronous replication")
struct SynchronousReplicationTests {
    private func make(_ fake: FakeReplicas, replicas: Int = 1, timeout: Duration = .seconds(30), degrade: Bool = false) -> SynchronousReplication {
        SynchronousReplication(
            settings: .init(replicas: replicas, timeout: timeout, degrade: degrade), replicas: { fake.replicas.withLock { $0 } },
            isPrimary: { fake.primary.load(ordering: .relaxed) }, logger: Logger(label: "sync-test"))
    }

    @Test("a commit returns once enough candidates confirmed it; a non-candidate does not count")
    func waitsForConfirmation() async throws {
        let fake = FakeReplicas()
        let sync = make(fake, replicas: 2)
        fake.set("b", 4)
        fake.set("c", candidate: false, 9)
        let returned = Atomic(false)
        let waiter = Task.detached {
            let result = try await blocking { sync.committed(database: "db", txid: TXID(5)) }
            returned.store(true, ordering: .releasing)
            return result
        }
        try await Task.sleep(for: .milliseconds(200))
        let early = returned.load(ordering: .acquiring)
        #expect(!early, "one candidate of two confirmed")
        fake.set("b", 5)
        sync.acknowledged()
        try await Task.sleep(for: .milliseconds(200))
        let stillWaiting = returned.load(ordering: .acquiring)
        #expect(!stillWaiting, "the non-candidate does not count")
        fake.set("d", 7)
        sync.acknowledged()
        #expect(try await waiter.value.isSuccess)
    }

    @Test("with sync-degrade, the timeout makes the node asynchronous until the replicas confirm everything")
    func degrades() async throws {
        let fake = FakeReplicas()
        let sync = make(fake, timeout: .seconds(2), degrade: true)
        let started = ContinuousClock.now
        let first = try await blocking { sync.committed(database: "db", txid: TXID(3)) }
        #expect(first.isSuccess)
        #expect(sync.isDegraded)
        #expect(ContinuousClock.now - started >= .seconds(2), "the first commit waited out sync-timeout")
        // Asynchronous now: the next commit does not wait out the timeout again.
        let next = ContinuousClock.now
        #expect(try await blocking { sync.committed(database: "db", txid: TXID(4)) }.isSuccess)
        #expect(ContinuousClock.now - next < .seconds(2), "the second commit waited out sync-timeout again")
        fake.set("b", 3)
        sync.acknowledged()
        #expect(sync.isDegraded, "behind the newest commit (4)")
        fake.set("b", 4)
        sync.acknowledged()
        #expect(!sync.isDegraded)
    }

    @Test("without sync-degrade a commit waits past the timeout, and fails only when the node stops being primary")
    func failsWhenNoLongerPrimary() async throws {
        let fake = FakeReplicas()
        let sync = make(fake, timeout: .milliseconds(50))
        let waiter = Task.detached { try await blocking { sync.committed(database: "db", txid: TXID(1)) } }
        try await Task.sleep(for: .milliseconds(300))
        #expect(!sync.isDegraded)
        fake.primary.store(false, ordering: .relaxed)
        let result = try await waiter.value
        guard case .failure(let error) = result else {
            Issue.record("the commit returned without a confirmation")
            return
        }
        #expect(error.code == .notReplicated)
        #expect(error.errno == .io)
    }

    @Test("with a published membership: the first set holds everything this node holds, only members count, a lagging member leaves while the rest hold every acknowledged commit")
    func membership() async throws {
        let fake = FakeReplicas()
        let membership = FakeMembership()
        let held = Mutex(["db": TXID(3)])
        let sync = SynchronousReplication(
            settings: .init(replicas: 1, timeout: .seconds(30), degrade: false), replicas: { fake.replicas.withLock { $0 } },
            positions: { held.withLock { $0 } }, membership: membership, isPrimary: { true }, logger: Logger(label: "sync-test"))
        fake.set("b", 3)
        fake.set("c", 2)
        #expect(try await blocking { sync.committed(database: "db", txid: TXID(3)) }.isSuccess)
        #expect(membership.publishedMembers()?.members == ["b"], "c did not hold everything")
        #expect(membership.publishedMembers()?.epoch == Epoch(5))

        // c catches up and joins; c alone confirming then counts.
        held.withLock { $0["db"] = TXID(4) }
        fake.set("c", 4)
        #expect(try await blocking { sync.committed(database: "db", txid: TXID(4)) }.isSuccess)
        #expect(membership.publishedMembers()?.members == ["b", "c"])

        // b stops confirming: once a commit it lacks is a second old, it
        // leaves (c holds every acknowledged commit).
        for txid in 5...6 {
            held.withLock { $0["db"] = TXID(UInt64(txid)) }
            fake.set("c", UInt64(txid))
            #expect(try await blocking { sync.committed(database: "db", txid: TXID(UInt64(txid))) }.isSuccess)
            #expect(membership.publishedMembers()?.members == ["b", "c"], "not lagging a second yet")
        }
        try await Task.sleep(for: .milliseconds(1100))
        held.withLock { $0["db"] = TXID(7) }
        fake.set("c", 7)
        #expect(try await blocking { sync.committed(database: "db", txid: TXID(7)) }.isSuccess)
        sync.maintain()
        #expect(membership.publishedMembers()?.members == ["c"])

        // b catches up (c lags behind it now): b rejoins, and then counts.
        held.withLock { $0["db"] = TXID(8) }
        fake.set("b", 8)
        fake.set("c", 7)
        #expect(try await blocking { sync.committed(database: "db", txid: TXID(8)) }.isSuccess)
        #expect(membership.publishedMembers()?.members == ["b", "c"])
        #expect(membership.published.withLock { $0.count } == 4)
    }

    @Test("lease.max-lag: a candidate's lag is read off the primary's published progress")
    func progressLag() {
        typealias Sample = EtcdLease.Progress.Sample
        let progress = EtcdLease.Progress(
            node: "node-a", epoch: Epoch(9), samples: [Sample(transactions: 10, at: 1_000), Sample(transactions: 20, at: 2_000), Sample(transactions: 30, at: 6_000)])
        #expect(progress.lag(of: 30) == .caughtUp)
        #expect(progress.lag(of: 40) == .caughtUp, "ahead of what was published")
        #expect(progress.lag(of: 25) == .behind(.milliseconds(4_000)), "the primary was past 20 at 2 s, and at 30 by 6 s")
        #expect(progress.lag(of: 20) == .behind(.milliseconds(4_000)))
        #expect(progress.lag(of: 15) == .behind(.milliseconds(5_000)))
        #expect(progress.lag(of: 5) == .beyondRecord, "behind every sample: more than the record shows")

        // Recording: unchanged renewals add nothing; the renewal before a
        // change after a quiet hour is kept, so the quiet is not lag.
        var samples = [Sample(transactions: 10, at: 0)]
        #expect(EtcdLease.Progress.record(Sample(transactions: 10, at: 700), after: samples, lastRenewal: samples[0]) == nil)
        samples = EtcdLease.Progress.record(Sample(transactions: 12, at: 3_600_700), after: samples, lastRenewal: Sample(transactions: 10, at: 3_600_000))!
        #expect(samples.last == Sample(transactions: 12, at: 3_600_700))
        let after = EtcdLease.Progress(node: "node-a", epoch: Epoch(9), samples: samples)
        #expect(after.lag(of: 10) == .behind(.milliseconds(700)))
        #expect(after.lag(of: 9) == .beyondRecord)
    }

    @Test("a standing is ahead of another if it holds a transaction the other lacks in any database")
    func standingsPerDatabase() {
        typealias Standing = EtcdLease.Standing
        let caughtUpOnOne = Standing(node: "node-c", epoch: Epoch(4), transactions: 180, after: 7, databases: ["a.db": 80, "b.db": 100])
        let holderOfOther = Standing(node: "node-b", epoch: Epoch(4), transactions: 130, after: 7, databases: ["a.db": 75, "b.db": 55])
        let prefix = Standing(node: "node-d", epoch: Epoch(4), transactions: 120, after: 7, databases: ["a.db": 70, "b.db": 50])
        #expect(caughtUpOnOne.isAhead(ofAny: holderOfOther))
        #expect(!prefix.isAhead(ofAny: holderOfOther), "a prefix of the same history lacks, holds nothing more")
        #expect(holderOfOther.isAhead(ofAny: prefix))
        let diverged = Standing(node: "node-e", epoch: Epoch(4), transactions: 110, after: 7, databases: ["a.db": 50, "b.db": 60])
        #expect(diverged.isAhead(ofAny: holderOfOther) && holderOfOther.isAhead(ofAny: diverged), "neither proves it holds all the other holds")
        let older = Standing(node: "node-f", epoch: Epoch(4), transactions: 300, after: 7)
        #expect(older.isAhead(ofAny: holderOfOther), "without per-database TXIDs, the rank decides")
    }
}
