/// A failed etcd request, with a stable code, the operation, the endpoint and
/// what etcd (or the network) said.
///
/// The lease keeper decides what to do from ``code`` alone: ``Code/unavailable``
/// means no endpoint could be asked (keep trying, and step down when the lease
/// runs out), ``Code/rejected`` means etcd answered and refused (a bug or a
/// misconfiguration worth logging loudly). The rest of the fields exist so one
/// log line says which endpoint, which call and why, e.g.
/// `etcd lease grant: no endpoint answered: http://10.0.0.1:2379: connection
/// refused; http://10.0.0.2:2379: no reply within 500 ms`.
public struct EtcdError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is; stable, for callers and metrics.
    public enum Code: String, Sendable {
        /// An endpoint string is not `http://host:port` (or `https://`); thrown at init.
        case invalidEndpoint = "invalid-endpoint"
        /// An argument etcd would reject anyway (a TTL below one second, an empty key).
        case invalidArgument = "invalid-argument"
        /// One endpoint could not be reached: connection refused, reset or closed.
        case unreachable
        /// One endpoint did not answer before the per-request deadline.
        case timedOut = "timed-out"
        /// Every endpoint failed; ``EtcdError/failures`` holds each one's error.
        case unavailable
        /// etcd answered with an error (a non-2xx status, or an error inside a stream).
        case rejected
        /// etcd's reply was not the JSON this client expects.
        case malformedReply = "malformed-reply"
        /// A watch started at a revision etcd has compacted away;
        /// ``EtcdError/compactRevision`` says the oldest revision still kept.
        case compacted
        /// The client was shut down before or during the call.
        case shutDown = "shut-down"
    }

    public var code: Code
    /// The call that failed, as etcd's API names it (`lease grant`, `kv txn`, `watch`).
    public var operation: String
    /// The endpoint the failure is about; nil when it is about all of them or none.
    public var endpoint: String?
    /// The HTTP status of etcd's reply, when there was a reply.
    public var status: Int?
    /// The gRPC status code etcd put in its error body (5 is NotFound, 14 Unavailable).
    public var grpcCode: Int?
    /// What went wrong, in etcd's words when etcd said it.
    public var message: String
    /// For ``Code/unavailable``: each endpoint's own failure, in the order tried.
    public var failures: [EtcdError]
    /// For ``Code/compacted``: the oldest revision etcd still has.
    public var compactRevision: Int64?

    /// Builds an error; only `code`, `operation` and `message` are always known.
    public init(
        _ code: Code, operation: String, endpoint: String? = nil, status: Int? = nil, grpcCode: Int? = nil,
        _ message: String, failures: [EtcdError] = [], compactRevision: Int64? = nil
    ) {
        self.code = code
        self.operation = operation
        self.endpoint = endpoint
        self.status = status
        self.grpcCode = grpcCode
        self.message = message
        self.failures = failures
        self.compactRevision = compactRevision
    }

    /// Whether the next endpoint should be tried: the network failed, or etcd
    /// answered that this member cannot serve now: gRPC Unavailable (HTTP
    /// 503, e.g. "no leader"), DeadlineExceeded (504, a proposal that timed
    /// out) or Canceled (408, "grpc: the client connection is closing", which
    /// a member's gateway says while it shuts down).
    var triesNextEndpoint: Bool {
        switch code {
        case .unreachable, .timedOut: true
        case .rejected: [408, 503, 504].contains(status) || [1, 4, 14].contains(grpcCode)
        default: false
        }
    }

    /// One line for logs: operation, endpoint, status, message, then each endpoint's failure.
    public var description: String {
        var text = "etcd \(operation)"
        if let endpoint { text += " at \(endpoint)" }
        text += ": "
        if let status { text += "HTTP \(status): " }
        text += message
        if !failures.isEmpty {
            text += ": " + failures.map { failure in
                var part = (failure.endpoint ?? "?") + ": "
                if let status = failure.status { part += "HTTP \(status): " }
                return part + failure.message
            }.joined(separator: "; ")
        }
        return text
    }
}
