import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A small, blocking etcd v3 client over etcd's JSON gateway, with just the
/// calls a lease needs: grant, keep alive and revoke a lease, create a key
/// only if absent, delete it only if it is still ours, read it, and wait for
/// it to change.
///
/// It is synchronous on purpose: the lease keeper runs on its own thread and
/// must know, within a deadline, whether each step happened, so every call
/// blocks the calling thread for at most ``requestTimeout`` per endpoint
/// tried. Never call it on an event loop (it would wait on itself).
///
/// Endpoints are tried in order, starting from the last one that answered;
/// one that cannot be reached, does not answer in time, or answers that it
/// cannot serve now (HTTP 503/504, or 408 while it shuts down) moves the call
/// on to the next. When all fail,
/// the error lists each endpoint's failure. A reply etcd gives is final.
/// A call that timed out may still have happened on the server; the
/// transactions here are written so a retry is harmless (see
/// ``EtcdCreateResult/exists(_:)``).
///
/// The HTTP client and its one event-loop thread belong to this instance
/// (connections are reused between calls); call ``shutdown()`` when done.
public final class EtcdClient: Sendable {
    /// The configured endpoints, in the order given.
    public var endpoints: [String] { targets.map(\.url) }
    /// How long one request to one endpoint may take, connecting included.
    public let requestTimeout: Duration

    private let targets: [EtcdEndpoint]
    private let group: MultiThreadedEventLoopGroup
    private let client: HTTPClient
    private let preferred = Atomic<Int>(0)
    private let isShutDown = Atomic<Bool>(false)

    /// Checks every endpoint (`http://host:port` or `https://host:port`) and
    /// sets up the HTTP client; nothing is sent until the first call.
    /// `tls` is presented to an etcd that requires client certificates
    /// (`lease.etcd.tls`), whose own certificate must then chain to its CA.
    public init(endpoints: [String], requestTimeout: Duration = .milliseconds(500), tls: TLSIdentity? = nil) throws(EtcdError) {
        guard !endpoints.isEmpty else {
            throw EtcdError(.invalidEndpoint, operation: "init", "no etcd endpoint given")
        }
        guard requestTimeout > .zero else {
            throw EtcdError(.invalidArgument, operation: "init", "the request timeout must be positive, not \(requestTimeout)")
        }
        var targets: [EtcdEndpoint] = []
        for endpoint in endpoints { targets.append(try EtcdEndpoint(endpoint)) }
        self.targets = targets
        self.requestTimeout = requestTimeout
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: TimeAmount(requestTimeout), read: nil)
        configuration.redirectConfiguration = .disallow
        configuration.httpVersion = .http1Only
        // Fail a refused connection at once so the next endpoint is tried,
        // instead of retrying with backoff until the deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
        if let tls {
            // The version is etcd's to choose (its default still allows 1.2).
            var client = TLSCredentials.clientConfiguration(tls)
            client.minimumTLSVersion = .tlsv12
            configuration.tlsConfiguration = client
        }
        client = HTTPClient(eventLoopGroup: group, configuration: configuration)
    }

    deinit { shutdown() }

    /// Closes the connections and stops the event-loop thread. Idempotent;
    /// calls made afterwards fail with ``EtcdError/Code/shutDown``.
    public func shutdown() {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        try? client.syncShutdown()
        try? group.syncShutdownGracefully()
    }

    // MARK: - Leases

    /// Grants a lease of `ttl` (rounded up to whole seconds; etcd raises it to
    /// its minimum, 2 s by default). The returned TTL is the one granted.
    public func grant(ttl: Duration) throws(EtcdError) -> EtcdLeaseGrant {
        let operation = "lease grant"
        let seconds = ttl.components.seconds + (ttl.components.attoseconds > 0 ? 1 : 0)
        guard seconds > 0 else { throw EtcdError(.invalidArgument, operation: operation, "a lease TTL must be positive, not \(ttl)") }
        let reply = try call(operation, "/v3/lease/grant", ["TTL": String(seconds)])
        if let error = try reply.string("error"), !error.isEmpty {
            throw EtcdError(.rejected, operation: operation, endpoint: reply.endpoint, error)
        }
        guard let id = try reply.int64("ID"), id != 0 else { throw reply.malformed("the grant has no lease ID") }
        return EtcdLeaseGrant(id: id, ttl: .seconds(try reply.int64("TTL", default: 0)))
    }

    /// Renews `lease` once and returns its TTL from now, or nil when etcd no
    /// longer knows it (it expired or was revoked): then whatever was attached
    /// to it is gone, and a primary must step down at once.
    public func keepAlive(_ lease: Int64) throws(EtcdError) -> Duration? {
        let operation = "lease keepalive"
        // A stream endpoint: the reply is wrapped in "result" (or "error").
        let reply = try call(operation, "/v3/lease/keepalive", ["ID": String(lease)])
        guard let result = try reply.object("result") else {
            throw reply.inlineError(status: nil) ?? reply.malformed("the keepalive reply has no result")
        }
        let ttl = try result.int64("TTL", default: 0)
        return ttl > 0 ? .seconds(ttl) : nil
    }

    /// Revokes `lease`, deleting every key attached to it, so a stepping-down
    /// primary hands over at once instead of after the TTL. A lease etcd does
    /// not know (already expired or revoked) counts as revoked.
    public func revoke(_ lease: Int64) throws(EtcdError) {
        do {
            _ = try call("lease revoke", "/v3/lease/revoke", ["ID": String(lease)])
        } catch where error.code == .rejected && error.grpcCode == 5 {
            // gRPC NotFound: "etcdserver: requested lease not found".
        }
    }

    // MARK: - Keys

    /// The key's current value and revisions, or nil when it does not exist.
    public func get(_ key: String) throws(EtcdError) -> EtcdKeyValue? {
        let operation = "kv range"
        try check(key, operation)
        let reply = try call(operation, "/v3/kv/range", ["key": EtcdJSON.base64(key.utf8)])
        return try reply.objects("kvs").first?.keyValue()
    }

    /// Every key that starts with `prefix`, in key order.
    public func list(prefix: String) throws(EtcdError) -> [EtcdKeyValue] {
        let operation = "kv range (prefix)"
        try check(prefix, operation)
        var end = Array(prefix.utf8)
        // The range end of a prefix: its last byte plus one (etcd's clientv3.GetPrefixRangeEnd).
        while let last = end.last, last == 0xFF { end.removeLast() }
        if !end.isEmpty { end[end.count - 1] += 1 }
        let reply = try call(operation, "/v3/kv/range", ["key": EtcdJSON.base64(prefix.utf8), "range_end": EtcdJSON.base64(end.isEmpty ? [0] : end)])
        return try reply.objects("kvs").map { object throws(EtcdError) in try object.keyValue() }
    }

    /// Puts `value` at `key`, attached to `lease` (0: none).
    public func put(_ key: String, value: [UInt8], lease: Int64) throws(EtcdError) {
        let operation = "kv put"
        try check(key, operation)
        _ = try call(operation, "/v3/kv/put", ["key": EtcdJSON.base64(key.utf8), "value": EtcdJSON.base64(value), "lease": String(lease)])
    }

    /// Creates `key` with `value`, attached to `lease`, only if no such key
    /// exists, in one transaction: compare the key's create revision with 0
    /// (0 means absent); on success put, on failure read the holder.
    ///
    /// This is the election: of several nodes racing, exactly one gets
    /// ``EtcdCreateResult/created(revision:)``, and the others learn who won.
    public func createIfAbsent(_ key: String, value: [UInt8], lease: Int64) throws(EtcdError) -> EtcdCreateResult {
        let operation = "kv txn (create if absent)"
        try check(key, operation)
        let encodedKey = EtcdJSON.base64(key.utf8)
        let reply = try call(operation, "/v3/kv/txn", [
            "compare": [["target": "CREATE", "result": "EQUAL", "key": encodedKey, "create_revision": "0"]],
            "success": [["request_put": ["key": encodedKey, "value": EtcdJSON.base64(value), "lease": String(lease)]]],
            "failure": [["request_range": ["key": encodedKey]]],
        ])
        if try reply.bool("succeeded") {
            // The put is the transaction's only write, so the transaction's
            // revision is the revision that created the key.
            return .created(revision: try reply.headerRevision())
        }
        let responses = try reply.objects("responses")
        guard let range = try responses.first?.object("response_range") else {
            throw reply.malformed("a failed create has no range response")
        }
        guard let holder = try range.objects("kvs").first?.keyValue() else {
            // The compare said the key exists, and the range in the same
            // transaction reads the same revision: this cannot happen.
            throw reply.malformed("the create failed but the key is absent")
        }
        return .exists(holder)
    }

    /// Deletes `key` only if it is still the incarnation created at
    /// `createRevision`; returns whether it was deleted. A node that lost its
    /// lease and stepped down can call this without ever removing the key of
    /// the primary elected after it.
    public func deleteIf(_ key: String, createRevision: Int64) throws(EtcdError) -> Bool {
        let operation = "kv txn (delete if)"
        try check(key, operation)
        let encodedKey = EtcdJSON.base64(key.utf8)
        let reply = try call(operation, "/v3/kv/txn", [
            "compare": [["target": "CREATE", "result": "EQUAL", "key": encodedKey, "create_revision": String(createRevision)]],
            "success": [["request_delete_range": ["key": encodedKey]]],
        ])
        return try reply.bool("succeeded")
    }

    /// Puts `value` at `key` (attached to no lease: it outlives its writer)
    /// only while `lease` holds `holderKey`, in one transaction; returns
    /// whether it happened. A primary that lost its lease cannot overwrite
    /// what its successor wrote.
    public func putWhileHeld(_ key: String, value: [UInt8], holderKey: String, lease: Int64) throws(EtcdError) -> Bool {
        let operation = "kv txn (put while held)"
        try check(key, operation)
        try check(holderKey, operation)
        let reply = try call(operation, "/v3/kv/txn", [
            "compare": [["target": "LEASE", "result": "EQUAL", "key": EtcdJSON.base64(holderKey.utf8), "lease": String(lease)]],
            "success": [["request_put": ["key": EtcdJSON.base64(key.utf8), "value": EtcdJSON.base64(value)]]],
        ])
        return try reply.bool("succeeded")
    }

    /// Hands `key` over in one transaction, only while `lease` still holds
    /// it: deletes the key and puts `notice` (naming the new holder) at
    /// `noticeKey`, attached to the same lease. Returns whether it happened.
    ///
    /// The key never looks simply free: until the target creates it, others
    /// see the notice and hold back. The old holder stops renewing, so the
    /// lease, and the notice with it, ends within a TTL even if the target
    /// never takes over.
    public func handOver(_ key: String, lease: Int64, noticeKey: String, notice: [UInt8]) throws(EtcdError) -> Bool {
        let operation = "kv txn (hand over)"
        try check(key, operation)
        try check(noticeKey, operation)
        let encodedKey = EtcdJSON.base64(key.utf8)
        let reply = try call(operation, "/v3/kv/txn", [
            "compare": [["target": "LEASE", "result": "EQUAL", "key": encodedKey, "lease": String(lease)]],
            "success": [
                ["request_delete_range": ["key": encodedKey]],
                ["request_put": ["key": EtcdJSON.base64(noticeKey.utf8), "value": EtcdJSON.base64(notice), "lease": String(lease)]],
            ],
        ])
        return try reply.bool("succeeded")
    }

    /// Waits up to `timeout` for changes to `key` at or after `fromRevision`
    /// (0: from now) and returns the first batch, or `[]` when nothing
    /// changed in time. Events already in the history since `fromRevision`
    /// come at once, so watching from a `get`'s revision + 1 misses nothing.
    ///
    /// This is how a replica learns at once that the primary's key was
    /// deleted (its lease expired or was revoked) instead of polling. The
    /// watch must be created within ``requestTimeout`` or the endpoint counts
    /// as failed. Throws ``EtcdError/Code/compacted`` when `fromRevision` is
    /// older than etcd keeps: re-read the key with ``get(_:)`` and watch from there.
    public func watch(_ key: String, fromRevision: Int64, timeout: Duration) throws(EtcdError) -> [EtcdEvent] {
        let operation = "watch"
        try check(key, operation)
        guard timeout > .zero else { throw EtcdError(.invalidArgument, operation: operation, "the watch timeout must be positive, not \(timeout)") }
        var create: [String: Any] = ["key": EtcdJSON.base64(key.utf8)]
        if fromRevision > 0 { create["start_revision"] = String(fromRevision) }
        let body = EtcdJSON.encode(["create_request": create])
        return try onEndpoints(operation) { endpoint throws(EtcdError) in
            try watchOnce(endpoint, operation: operation, body: body, timeout: timeout)
        }
    }

    // MARK: - Transport

    private func check(_ key: String, _ operation: String) throws(EtcdError) {
        guard !key.isEmpty else { throw EtcdError(.invalidArgument, operation: operation, "the key is empty") }
    }

    /// One unary call (POST `path` with a JSON body), on the endpoints in turn.
    private func call(_ operation: String, _ path: String, _ body: [String: Any]) throws(EtcdError) -> EtcdJSON {
        let bytes = EtcdJSON.encode(body)
        return try onEndpoints(operation) { endpoint throws(EtcdError) in
            try post(endpoint, path: path, body: bytes, operation: operation)
        }
    }

    /// Runs `attempt` on each endpoint, from the one that last answered,
    /// until one answers; collects the failures that move on.
    private func onEndpoints<T>(_ operation: String, _ attempt: (EtcdEndpoint) throws(EtcdError) -> T) throws(EtcdError) -> T {
        precondition(
            MultiThreadedEventLoopGroup.currentEventLoop == nil,
            "EtcdClient blocks its caller: never call it on an event loop")
        guard !isShutDown.load(ordering: .acquiring) else {
            throw EtcdError(.shutDown, operation: operation, "the etcd client is shut down")
        }
        let first = preferred.load(ordering: .relaxed)
        var failures: [EtcdError] = []
        for offset in 0..<targets.count {
            let index = (first + offset) % targets.count
            do {
                let result = try attempt(targets[index])
                preferred.store(index, ordering: .relaxed)
                return result
            } catch where error.triesNextEndpoint {
                failures.append(error)
            } catch {
                if error.code == .rejected || error.code == .malformedReply { preferred.store(index, ordering: .relaxed) }
                throw error
            }
        }
        throw EtcdError(.unavailable, operation: operation, "no endpoint answered", failures: failures)
    }

    private func post(_ endpoint: EtcdEndpoint, path: String, body: [UInt8], operation: String) throws(EtcdError) -> EtcdJSON {
        let response: HTTPClient.Response
        do {
            let request = try request(endpoint, path: path, body: body)
            response = try client.execute(request: request, deadline: .now() + TimeAmount(requestTimeout)).wait()
        } catch {
            throw EtcdClient.transportError(error, operation: operation, endpoint: endpoint.url, timeout: requestTimeout)
        }
        let status = Int(response.status.code)
        let bytes = response.body.map { Array($0.readableBytesView) } ?? []
        guard (200..<300).contains(status) else {
            let reply = try? EtcdJSON(parsing: bytes, operation: operation, endpoint: endpoint.url)
            throw reply?.inlineError(status: status)
                ?? EtcdError(.rejected, operation: operation, endpoint: endpoint.url, status: status, String(decoding: bytes.prefix(200), as: UTF8.self))
        }
        // Stream endpoints (keepalive) end each message with a newline.
        let line = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true).first ?? []
        return try EtcdJSON(parsing: line, operation: operation, endpoint: endpoint.url)
    }

    private func request(_ endpoint: EtcdEndpoint, path: String, body: [UInt8]) throws -> HTTPClient.Request {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        return try HTTPClient.Request(url: endpoint.url + path, method: .POST, headers: headers, body: .bytes(body))
    }

    /// Opens a watch on one endpoint and waits for its first outcome, then
    /// cancels the request (closing its connection, which ends the watch).
    private func watchOnce(_ endpoint: EtcdEndpoint, operation: String, body: [UInt8], timeout: Duration) throws(EtcdError) -> [EtcdEvent] {
        let request: HTTPClient.Request
        do { request = try self.request(endpoint, path: "/v3/watch", body: body) } catch {
            throw EtcdClient.transportError(error, operation: operation, endpoint: endpoint.url)
        }
        let loop = group.next()
        let promise = loop.makePromise(of: Result<[EtcdEvent], EtcdError>.self)
        let delegate = EtcdWatchDelegate(promise: promise, operation: operation, endpoint: endpoint.url)
        let task = client.execute(request: request, delegate: delegate, eventLoop: .delegateAndChannel(on: loop), logger: nil)
        task.futureResult.whenFailure { delegate.settle(.failure(EtcdClient.transportError($0, operation: operation, endpoint: endpoint.url))) }
        let creationTimeout = requestTimeout
        let creation = loop.scheduleTask(in: TimeAmount(creationTimeout)) { delegate.creationDeadline(creationTimeout) }
        let end = loop.scheduleTask(in: TimeAmount(timeout)) { delegate.timeUp(after: timeout) }
        let outcome: Result<[EtcdEvent], EtcdError>
        do {
            outcome = try promise.futureResult.wait()
        } catch {
            outcome = .failure(EtcdClient.transportError(error, operation: operation, endpoint: endpoint.url))
        }
        creation.cancel()
        end.cancel()
        task.cancel()
        return try outcome.get()
    }

    /// Names a failure to talk to an endpoint: a deadline is `timedOut`, a
    /// shut-down client `shutDown`, anything else (refused, reset, closed)
    /// `unreachable`.
    static func transportError(_ error: any Error, operation: String, endpoint: String, timeout: Duration? = nil) -> EtcdError {
        if let error = error as? EtcdError { return error }
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .connectTimeout, .readTimeout, .writeTimeout:
                let within = timeout.map { " within \($0)" } ?? " in time"
                return EtcdError(.timedOut, operation: operation, endpoint: endpoint, "no reply\(within)")
            case .alreadyShutdown:
                return EtcdError(.shutDown, operation: operation, endpoint: endpoint, "the etcd client is shut down")
            default:
                break
            }
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return EtcdError(.timedOut, operation: operation, endpoint: endpoint, "connecting timed out")
        }
        return EtcdError(.unreachable, operation: operation, endpoint: endpoint, "\(error)")
    }
}
