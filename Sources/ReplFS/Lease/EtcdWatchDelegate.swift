import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Synchronization

/// Reads one `/v3/watch` response stream as it arrives and settles on the
/// first outcome: the first reply that carries events, an error, or the end
/// of the wait.
///
/// The gateway streams one JSON object per line, each wrapped in `result`
/// (or `error`): first the `created` confirmation, then replies with
/// `events`. Until `created` arrives the endpoint is not known to work, so
/// running out of time before it is a failure (the caller tries the next
/// endpoint); after it, running out of time just means nothing changed.
/// Callbacks come on the event loop and the timers from it too; the state is
/// behind a mutex, and the outcome is delivered once through `promise`.
final class EtcdWatchDelegate: HTTPClientResponseDelegate {
    typealias Response = Void

    private struct State {
        var status: Int?
        var pending: [UInt8] = []
        var created = false
        var settled = false
    }

    private let state = Mutex(State())
    private let promise: EventLoopPromise<Result<[EtcdEvent], EtcdError>>
    private let operation: String
    private let endpoint: String
    private let bodyLimit = 16 << 20

    init(promise: EventLoopPromise<Result<[EtcdEvent], EtcdError>>, operation: String, endpoint: String) {
        self.promise = promise
        self.operation = operation
        self.endpoint = endpoint
    }

    /// Delivers the outcome unless one was delivered already.
    func settle(_ outcome: Result<[EtcdEvent], EtcdError>) {
        let first = state.withLock { state in
            if state.settled { return false }
            state.settled = true
            return true
        }
        if first { promise.succeed(outcome) }
    }

    /// The wait is over: no events is a normal answer once the watch exists.
    func timeUp(after timeout: Duration) {
        let created = state.withLock { $0.created }
        settle(created ? .success([]) : .failure(notCreated(within: timeout)))
    }

    /// The per-request deadline passed: the watch must exist by now.
    func creationDeadline(_ timeout: Duration) {
        if !state.withLock({ $0.created }) { settle(.failure(notCreated(within: timeout))) }
    }

    private func notCreated(within timeout: Duration) -> EtcdError {
        EtcdError(.timedOut, operation: operation, endpoint: endpoint, "the watch was not created within \(timeout)")
    }

    func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        state.withLock { $0.status = Int(head.status.code) }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        // Split off complete lines under the lock, parse them outside it.
        let (lines, status, overflow) = state.withLock { state -> ([[UInt8]], Int?, Bool) in
            state.pending.append(contentsOf: buffer.readableBytesView)
            guard state.status == 200 else { return ([], state.status, state.pending.count > bodyLimit) }
            var lines: [[UInt8]] = []
            while let newline = state.pending.firstIndex(of: UInt8(ascii: "\n")) {
                lines.append(Array(state.pending[..<newline]))
                state.pending.removeSubrange(...newline)
            }
            return (lines, state.status, state.pending.count > bodyLimit)
        }
        if overflow {
            settle(.failure(EtcdError(.malformedReply, operation: operation, endpoint: endpoint, status: status, "a watch reply is larger than 16 MiB")))
        }
        for line in lines where line.contains(where: { $0 > 0x20 }) {
            handle(line)
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    private func handle(_ line: [UInt8]) {
        do throws(EtcdError) {
            let reply = try EtcdJSON(parsing: line, operation: operation, endpoint: endpoint)
            guard let result = try reply.object("result") else {
                settle(.failure(reply.inlineError(status: nil) ?? reply.malformed("a watch reply has neither result nor error")))
                return
            }
            if try result.bool("canceled") {
                let compactRevision = try result.int64("compact_revision", default: 0)
                if compactRevision > 0 {
                    settle(.failure(EtcdError(
                        .compacted, operation: operation, endpoint: endpoint,
                        "the start revision is compacted; the oldest kept is \(compactRevision)", compactRevision: compactRevision)))
                } else {
                    let reason = try result.string("cancel_reason") ?? "no reason given"
                    settle(.failure(EtcdError(.rejected, operation: operation, endpoint: endpoint, "etcd canceled the watch: \(reason)")))
                }
                return
            }
            if try result.bool("created") { state.withLock { $0.created = true } }
            let events = try result.objects("events")
            guard !events.isEmpty else { return }
            var decoded: [EtcdEvent] = []
            for event in events {
                // A PUT is enum value 0, so it has no "type" at all.
                guard let kv = try event.object("kv") else { throw event.malformed("an event has no kv") }
                let keyValue = try kv.keyValue()
                switch try event.string("type") ?? "PUT" {
                case "PUT": decoded.append(.put(keyValue))
                case "DELETE": decoded.append(.delete(key: keyValue.key, modRevision: keyValue.modRevision))
                case let other: throw event.malformed("unknown event type \(other)")
                }
            }
            state.withLock { $0.created = true }
            settle(.success(decoded))
        } catch {
            settle(.failure(error))
        }
    }

    func didReceiveError(task: HTTPClient.Task<Void>, _ error: any Error) {
        settle(.failure(EtcdClient.transportError(error, operation: operation, endpoint: endpoint)))
    }

    func didFinishRequest(task: HTTPClient.Task<Void>) throws {
        let (status, rest) = state.withLock { ($0.status, $0.pending) }
        guard status == 200 else {
            let reply = try? EtcdJSON(parsing: rest, operation: operation, endpoint: endpoint)
            let message = String(decoding: rest.prefix(200), as: UTF8.self)
            settle(.failure(reply?.inlineError(status: status)
                ?? EtcdError(.rejected, operation: operation, endpoint: endpoint, status: status, message)))
            return
        }
        if !rest.isEmpty { handle(rest) }
        settle(.failure(EtcdError(.unreachable, operation: operation, endpoint: endpoint, "the watch stream ended")))
    }
}
