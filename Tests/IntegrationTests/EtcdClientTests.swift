import Foundation
import ReplFS
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// The etcd client against a real single-node etcd 3.4 started per test.
    @Suite("EtcdClient", .enabled(if: EtcdServer.isInstalled, "needs /usr/bin/etcd (Debian etcd-server)"))
    struct EtcdClientTests {
        /// A fresh etcd and a client for it, both gone afterwards.
        func withEtcd(requestTimeout: Duration = .milliseconds(500), _ body: (EtcdServer, EtcdClient) throws -> Void) throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let client = try EtcdClient(endpoints: [etcd.endpoint], requestTimeout: requestTimeout)
            defer { client.shutdown() }
            try body(etcd, client)
        }

        func uniqueKey() -> String { "/replfs/test-\(UUID().uuidString.prefix(8))" }

        /// Runs `body` on another thread after `delay`, while the test blocks in a call.
        func after(_ delay: Duration, _ body: @escaping @Sendable () -> Void) {
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
                body()
            }
        }

        func elapsed(_ body: () throws -> Void) rethrows -> Duration {
            let start = ContinuousClock.now
            try body()
            return ContinuousClock.now - start
        }

        /// The error `body` throws, or a recorded issue when it throws none.
        func etcdError(_ body: () throws -> Void) -> EtcdError? {
            do {
                try body()
                Issue.record("expected an EtcdError, the call succeeded")
                return nil
            } catch let error as EtcdError {
                return error
            } catch {
                Issue.record("expected an EtcdError, got \(error)")
                return nil
            }
        }

        @Test("the first createIfAbsent wins; its revision is the key's create revision, as get reports it")
        func createWins() throws {
            try withEtcd { _, client in
                let key = uniqueKey()
                let grant = try client.grant(ttl: .seconds(10))
                #expect(grant.id != 0)
                #expect(grant.ttl == .seconds(10))
                let result = try client.createIfAbsent(key, value: Array("node-a 127.0.0.1:1".utf8), lease: grant.id)
                guard case .created(let revision) = result else {
                    Issue.record("expected .created, got \(result)")
                    return
                }
                #expect(revision > 1)
                let stored = try #require(try client.get(key))
                #expect(stored.key == key)
                #expect(stored.value == Array("node-a 127.0.0.1:1".utf8))
                #expect(stored.createRevision == revision)
                #expect(stored.modRevision == revision)
                #expect(stored.version == 1)
                #expect(stored.lease == grant.id)
                #expect(try client.get(key + "-other") == nil)
            }
        }

        @Test("handOver replaces the key by a notice only for the holding lease; the notice ends with that lease")
        func handOverLeavesNotice() throws {
            try withEtcd { _, client in
                let key = uniqueKey()
                let holder = try client.grant(ttl: .seconds(10))
                let other = try client.grant(ttl: .seconds(10))
                guard case .created = try client.createIfAbsent(key, value: Array("a".utf8), lease: holder.id) else {
                    Issue.record("the first create must win")
                    return
                }
                #expect(try client.handOver(key, lease: other.id, noticeKey: key + ".handoff", notice: Array("b".utf8)) == false)
                #expect(try client.get(key)?.lease == holder.id, "another lease cannot hand the key over")
                #expect(try client.get(key + ".handoff") == nil)

                #expect(try client.handOver(key, lease: holder.id, noticeKey: key + ".handoff", notice: Array("b".utf8)))
                #expect(try client.get(key) == nil)
                let notice = try #require(try client.get(key + ".handoff"))
                #expect(notice.value == Array("b".utf8))
                #expect(notice.lease == holder.id)
                guard case .created = try client.createIfAbsent(key, value: Array("b".utf8), lease: other.id) else {
                    Issue.record("the target creates the key")
                    return
                }
                try client.revoke(holder.id)
                #expect(try client.get(key + ".handoff") == nil, "the notice ends with the old lease")
                #expect(try client.get(key)?.lease == other.id)
            }
        }

        @Test("a second createIfAbsent with another lease gets .exists with the first holder")
        func secondCreateFindsHolder() throws {
            try withEtcd { _, client in
                let key = uniqueKey()
                let first = try client.grant(ttl: .seconds(10))
                let second = try client.grant(ttl: .seconds(10))
                #expect(first.id != second.id)
                guard case .created(let revision) = try client.createIfAbsent(key, value: Array("node-a".utf8), lease: first.id) else {
                    Issue.record("the first create must win")
                    return
                }
                let result = try client.createIfAbsent(key, value: Array("node-b".utf8), lease: second.id)
                let holder = EtcdKeyValue(
                    key: key, value: Array("node-a".utf8), createRevision: revision, modRevision: revision, version: 1, lease: first.id)
                #expect(result == .exists(holder))
                #expect(try client.get(key) == holder, "the losing create wrote nothing")
            }
        }

        @Test("keepAlive returns the TTL; revoke deletes the key, and the lease is then unknown")
        func keepAliveAndRevoke() throws {
            try withEtcd { _, client in
                let key = uniqueKey()
                let grant = try client.grant(ttl: .seconds(5))
                _ = try client.createIfAbsent(key, value: [1, 2, 3], lease: grant.id)
                #expect(try client.keepAlive(grant.id) == .seconds(5))
                try client.revoke(grant.id)
                #expect(try client.get(key) == nil)
                #expect(try client.keepAlive(grant.id) == nil)
                try client.revoke(grant.id)  // an unknown lease is not an error
                // etcd raises a TTL below its minimum to 2 s; the grant reports that.
                #expect(try client.grant(ttl: .milliseconds(100)).ttl == .seconds(2))
            }
        }

        @Test("without keepalive the key disappears after the 2 s TTL, and keepAlive then returns nil")
        func expiry() throws {
            try withEtcd { _, client in
                let key = uniqueKey()
                let grant = try client.grant(ttl: .seconds(2))
                let started = ContinuousClock.now
                guard case .created = try client.createIfAbsent(key, value: [42], lease: grant.id) else {
                    Issue.record("create failed")
                    return
                }
                try waitUntil(timeout: 10, interval: 0.05, "the key expires with its lease") { try client.get(key) == nil }
                let lived = ContinuousClock.now - started
                #expect(lived >= .milliseconds(1500), "the key lived \(lived), not about the 2 s TTL")
                #expect(lived < .seconds(5), "the key lived \(lived)")
                #expect(try client.keepAlive(grant.id) == nil)
            }
        }

        @Test("a watch reports the delete as soon as the holder's lease is revoked")
        func watchSeesRevoke() throws {
            try withEtcd { _, client in
                let key = uniqueKey()
                let grant = try client.grant(ttl: .seconds(30))
                guard case .created(let revision) = try client.createIfAbsent(key, value: [1], lease: grant.id) else {
                    Issue.record("create failed")
                    return
                }
                after(.milliseconds(300)) { try? client.revoke(grant.id) }
                var events: [EtcdEvent] = []
                let waited = try elapsed { events = try client.watch(key, fromRevision: revision + 1, timeout: .seconds(10)) }
                #expect(events.count == 1)
                guard case .delete(let deleted, let modRevision) = events.first else {
                    Issue.record("expected a delete event, got \(events)")
                    return
                }
                #expect(deleted == key)
                #expect(modRevision > revision)
                #expect(waited >= .milliseconds(250), "the watch waited for the revoke (\(waited))")
                #expect(waited < .seconds(2), "the delete arrived promptly (\(waited))")
            }
        }

        @Test("a watch on a quiet key returns no events after its timeout")
        func watchTimesOut() throws {
            try withEtcd { _, client in
                var events: [EtcdEvent] = [.delete(key: "sentinel", modRevision: 0)]
                let waited = try elapsed { events = try client.watch(uniqueKey(), fromRevision: 0, timeout: .milliseconds(400)) }
                #expect(events.isEmpty)
                #expect(waited >= .milliseconds(400))
                #expect(waited < .seconds(2))
            }
        }

        @Test("a watch from an older revision replays the put and the delete")
        func watchReplaysHistory() throws {
            try withEtcd { _, client in
                let key = uniqueKey()
                let grant = try client.grant(ttl: .seconds(30))
                guard case .created(let revision) = try client.createIfAbsent(key, value: Array("v".utf8), lease: grant.id) else {
                    Issue.record("create failed")
                    return
                }
                #expect(try client.deleteIf(key, createRevision: revision))
                let events = try client.watch(key, fromRevision: revision, timeout: .seconds(5))
                #expect(events == [
                    .put(EtcdKeyValue(key: key, value: Array("v".utf8), createRevision: revision, modRevision: revision, version: 1, lease: grant.id)),
                    .delete(key: key, modRevision: revision + 1),
                ])
            }
        }

        @Test("a watch from a compacted revision fails, naming the oldest revision kept")
        func watchCompacted() throws {
            try withEtcd { etcd, client in
                let key = uniqueKey()
                let grant = try client.grant(ttl: .seconds(30))
                var last: Int64 = 0
                for _ in 0..<3 {
                    guard case .created(let revision) = try client.createIfAbsent(key, value: [0], lease: grant.id) else {
                        Issue.record("create failed")
                        return
                    }
                    #expect(try client.deleteIf(key, createRevision: revision))
                    last = revision + 1
                }
                try etcd.compact(last)
                let error = etcdError { _ = try client.watch(key, fromRevision: 1, timeout: .seconds(5)) }
                #expect(error?.code == .compacted, "\(String(describing: error))")
                #expect(error?.compactRevision == last)
                // Watching from the compaction point on still works.
                guard case .created(let again) = try client.createIfAbsent(key, value: [1], lease: grant.id) else {
                    Issue.record("create failed")
                    return
                }
                let events = try client.watch(key, fromRevision: last, timeout: .seconds(5))
                #expect(events == [.put(EtcdKeyValue(key: key, value: [1], createRevision: again, modRevision: again, version: 1, lease: grant.id))])
            }
        }

        @Test("deleteIf with another create revision leaves the key; with its own it deletes it")
        func deleteIf() throws {
            try withEtcd { _, client in
                let key = uniqueKey()
                let grant = try client.grant(ttl: .seconds(30))
                guard case .created(let revision) = try client.createIfAbsent(key, value: [7], lease: grant.id) else {
                    Issue.record("create failed")
                    return
                }
                #expect(try client.deleteIf(key, createRevision: revision + 1) == false)
                #expect(try client.deleteIf(key, createRevision: revision - 1) == false)
                #expect(try client.get(key)?.createRevision == revision)
                #expect(try client.deleteIf(key, createRevision: revision) == true)
                #expect(try client.get(key) == nil)
                #expect(try client.deleteIf(key, createRevision: revision) == false, "an absent key is not deleted twice")
            }
        }

        @Test("a dead first endpoint is skipped and the live one answers")
        func deadFirstEndpoint() throws {
            let etcd = try EtcdServer()
            defer { etcd.stop() }
            let dead = "http://127.0.0.1:\(Cluster.freePorts(1)[0])"
            let client = try EtcdClient(endpoints: [dead, etcd.endpoint])
            defer { client.shutdown() }
            let key = uniqueKey()
            let waited = try elapsed {
                let grant = try client.grant(ttl: .seconds(10))
                guard case .created(let revision) = try client.createIfAbsent(key, value: [1], lease: grant.id) else {
                    Issue.record("create failed")
                    return
                }
                #expect(try client.get(key)?.createRevision == revision)
                after(.milliseconds(200)) { try? client.revoke(grant.id) }
                #expect(try client.watch(key, fromRevision: revision + 1, timeout: .seconds(5)).count == 1)
            }
            #expect(waited < .seconds(3), "the dead endpoint cost \(waited)")
        }

        @Test("a hung first endpoint costs the request timeout once; later calls start from the endpoint that answered")
        func hungFirstEndpoint() throws {
            let hung = try EtcdServer()
            defer { hung.stop() }
            let live = try EtcdServer()
            defer { live.stop() }
            hung.pause()
            let client = try EtcdClient(endpoints: [hung.endpoint, live.endpoint], requestTimeout: .milliseconds(500))
            defer { client.shutdown() }
            let key = uniqueKey()
            var found: EtcdKeyValue? = EtcdKeyValue(key: "sentinel", value: [], createRevision: 0, modRevision: 0, version: 0, lease: 0)
            let first = try elapsed { found = try client.get(key) }
            #expect(found == nil)
            #expect(first >= .milliseconds(450), "the first call waited for the hung endpoint (\(first))")
            let later = try elapsed {
                let grant = try client.grant(ttl: .seconds(10))
                _ = try client.createIfAbsent(key, value: [1], lease: grant.id)
                #expect(try client.keepAlive(grant.id) == .seconds(10))
                #expect(try client.get(key)?.lease == grant.id)
            }
            #expect(later < .milliseconds(400), "later calls went straight to the live endpoint (\(later))")
        }

        @Test("all endpoints dead: one error naming each endpoint and its failure, within the request timeout")
        func allEndpointsDead() throws {
            let ports = Cluster.freePorts(2)
            let endpoints = ports.map { "http://127.0.0.1:\($0)" }
            let client = try EtcdClient(endpoints: endpoints, requestTimeout: .milliseconds(500))
            defer { client.shutdown() }
            var error: EtcdError?
            let waited = elapsed { error = etcdError { _ = try client.get("/replfs/primary") } }
            #expect(waited < .seconds(1), "refused connections fail at once (\(waited))")
            let failure = try #require(error)
            #expect(failure.code == .unavailable)
            #expect(failure.operation == "kv range")
            #expect(failure.failures.map(\.endpoint) == endpoints)
            #expect(failure.failures.allSatisfy { $0.code == .unreachable }, "\(failure)")
            for endpoint in endpoints { #expect(failure.description.contains(endpoint), "\(failure)") }
            #expect(etcdError { _ = try client.watch("/replfs/primary", fromRevision: 0, timeout: .seconds(5)) }?.code == .unavailable)
        }

        @Test("a paused (hung) etcd makes calls fail after the request timeout, and they work again once it resumes")
        func pausedEtcd() throws {
            try withEtcd(requestTimeout: .milliseconds(500)) { etcd, client in
                let key = uniqueKey()
                #expect(try client.get(key) == nil)
                etcd.pause()
                var error: EtcdError?
                let waited = elapsed { error = etcdError { _ = try client.get(key) } }
                #expect(error?.code == .unavailable)
                #expect(error?.failures.first?.code == .timedOut, "\(String(describing: error))")
                #expect(waited >= .milliseconds(450) && waited < .seconds(2), "failed after \(waited)")
                let watchWaited = elapsed {
                    #expect(etcdError { _ = try client.watch(key, fromRevision: 0, timeout: .seconds(10)) }?.failures.first?.code == .timedOut)
                }
                #expect(watchWaited < .seconds(2), "a watch on a hung etcd gave up after \(watchWaited)")
                etcd.resume()
                try waitUntil(timeout: 10, interval: 0.05, "etcd answers again") {
                    do {
                        _ = try client.get(key)
                        return true
                    } catch {
                        return false
                    }
                }
                #expect(try client.grant(ttl: .seconds(5)).id != 0)
            }
        }

        @Test("etcd stopped mid-way: a watch in progress and later calls fail with an error, not a hang")
        func stoppedMidway() throws {
            try withEtcd { etcd, client in
                let key = uniqueKey()
                let grant = try client.grant(ttl: .seconds(30))
                _ = try client.createIfAbsent(key, value: [1], lease: grant.id)
                let halted = DispatchSemaphore(value: 0)
                after(.milliseconds(300)) {
                    etcd.halt()
                    halted.signal()
                }
                var error: EtcdError?
                let waited = elapsed { error = etcdError { _ = try client.watch(key, fromRevision: 0, timeout: .seconds(20)) } }
                #expect(error?.code == .unavailable, "\(String(describing: error))")
                #expect(waited < .seconds(5), "the watch noticed the stop after \(waited)")
                // While it shuts down, etcd's gateway may still answer (HTTP 408,
                // "the client connection is closing"): that too is unavailable.
                #expect(etcdError { _ = try client.keepAlive(grant.id) }?.code == .unavailable)
                #expect(halted.wait(timeout: .now() + 15) == .success)
                let callWaited = elapsed { error = etcdError { _ = try client.keepAlive(grant.id) } }
                #expect(error?.code == .unavailable, "\(String(describing: error))")
                #expect(error?.failures.first?.code == .unreachable, "\(String(describing: error))")
                #expect(callWaited < .seconds(1))
            }
        }

        @Test("after etcd restarts the client reconnects, and the lease and key survived")
        func restart() throws {
            try withEtcd { etcd, client in
                let key = uniqueKey()
                let grant = try client.grant(ttl: .seconds(30))
                guard case .created(let revision) = try client.createIfAbsent(key, value: [9], lease: grant.id) else {
                    Issue.record("create failed")
                    return
                }
                etcd.halt()
                try etcd.start()
                #expect(try client.get(key)?.createRevision == revision)
                #expect(try client.keepAlive(grant.id) == .seconds(30))
            }
        }

        @Test("etcd's refusal carries the HTTP status, gRPC code and etcd's message")
        func rejected() throws {
            try withEtcd { etcd, client in
                let error = etcdError { _ = try client.grant(ttl: .seconds(10_000_000_000)) }
                #expect(error?.code == .rejected)
                #expect(error?.status == 400)
                #expect(error?.grpcCode == 11)
                #expect(error?.message == "etcdserver: too large lease TTL")
                #expect(error?.endpoint == etcd.endpoint)
                #expect(error?.description.contains("lease grant") == true)
                // A put attached to an unknown lease is refused too.
                let unknown = etcdError { _ = try client.createIfAbsent(uniqueKey(), value: [1], lease: 12345) }
                #expect(unknown?.code == .rejected)
                #expect(unknown?.message.contains("lease not found") == true, "\(String(describing: unknown))")
            }
        }

        @Test("a shut-down client refuses calls")
        func shutDown() throws {
            try withEtcd { _, client in
                let found = try client.get(uniqueKey())
                #expect(found == nil)
                client.shutdown()
                client.shutdown()
                #expect(etcdError { _ = try client.get("/x") }?.code == .shutDown)
            }
        }

        @Test("endpoints that are not http(s)://host:port are refused at init", arguments: [
            "127.0.0.1:2379", "http://127.0.0.1", "http://127.0.0.1:99999", "http://:2379", "ftp://127.0.0.1:2379",
            "http://127.0.0.1:2379/v3", "http://user@127.0.0.1:2379", "http://127.0.0.1:port", "",
        ])
        func invalidEndpoint(endpoint: String) {
            let error = etcdError { _ = try EtcdClient(endpoints: ["http://127.0.0.1:2379", endpoint]) }
            #expect(error?.code == .invalidEndpoint)
            #expect(error?.endpoint == endpoint)
            #expect(error?.description.contains("\"\(endpoint)\"") == true, "\(String(describing: error))")
        }

        @Test("valid endpoints, and an empty list, at init")
        func validEndpoints() throws {
            let client = try EtcdClient(endpoints: ["http://127.0.0.1:2379", "https://etcd-1.example:2379/", "http://[::1]:2379"])
            #expect(client.endpoints == ["http://127.0.0.1:2379", "https://etcd-1.example:2379", "http://[::1]:2379"])
            client.shutdown()
            #expect(etcdError { _ = try EtcdClient(endpoints: []) }?.code == .invalidEndpoint)
        }
    }
}
