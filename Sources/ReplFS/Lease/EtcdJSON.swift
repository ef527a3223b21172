import Foundation

/// One JSON object from etcd's gateway, read by the rules of the proto3 JSON
/// mapping it uses: 64-bit integers are strings, `bytes` fields are base64,
/// and a field holding its zero value (false, 0, empty) is left out entirely,
/// so an absent field means zero, never an error.
///
/// A field that is present with the wrong type is an error, naming the
/// operation and endpoint, because it means this client misreads the API.
struct EtcdJSON {
    let object: [String: Any]
    let operation: String
    let endpoint: String

    init(object: [String: Any], operation: String, endpoint: String) {
        self.object = object
        self.operation = operation
        self.endpoint = endpoint
    }

    /// Parses a reply body that must be one JSON object.
    init(parsing bytes: some Collection<UInt8>, operation: String, endpoint: String) throws(EtcdError) {
        let parsed = try? JSONSerialization.jsonObject(with: Data(bytes), options: [])
        guard let object = parsed as? [String: Any] else {
            let text = String(decoding: bytes.prefix(200), as: UTF8.self)
            throw EtcdError(.malformedReply, operation: operation, endpoint: endpoint, "the reply is not a JSON object: \(text)")
        }
        self.init(object: object, operation: operation, endpoint: endpoint)
    }

    /// Encodes a request body. Int64 values must already be strings (the
    /// gateway accepts both, but a string never loses precision).
    static func encode(_ object: [String: Any]) -> [UInt8] {
        // Only strings, numbers, booleans, arrays and dictionaries are ever
        // passed here, which JSONSerialization always accepts.
        (try? [UInt8](JSONSerialization.data(withJSONObject: object, options: []))) ?? Array("{}".utf8)
    }

    /// Base64 as etcd expects `bytes` fields.
    static func base64(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
    }

    func malformed(_ reason: String) -> EtcdError {
        EtcdError(.malformedReply, operation: operation, endpoint: endpoint, reason)
    }

    func has(_ key: String) -> Bool { object[key] != nil }

    /// An int64 field (a string in the reply, a number tolerated); nil when absent.
    func int64(_ key: String) throws(EtcdError) -> Int64? {
        switch object[key] {
        case nil: return nil
        case let text as String:
            guard let value = Int64(text) else { throw malformed("\"\(key)\" is \"\(text)\", not an integer") }
            return value
        case let number as Int:
            return Int64(number)
        case let number as NSNumber:
            return number.int64Value
        case let other?:
            throw malformed("\"\(key)\" is \(other), not an integer")
        }
    }

    /// An int64 field that is zero when absent.
    func int64(_ key: String, default value: Int64) throws(EtcdError) -> Int64 {
        try int64(key) ?? value
    }

    /// A boolean field; absent means false.
    func bool(_ key: String) throws(EtcdError) -> Bool {
        switch object[key] {
        case nil: return false
        case let value as Bool: return value
        case let other?: throw malformed("\"\(key)\" is \(other), not a boolean")
        }
    }

    /// A string field; nil when absent.
    func string(_ key: String) throws(EtcdError) -> String? {
        switch object[key] {
        case nil: return nil
        case let value as String: return value
        case let other?: throw malformed("\"\(key)\" is \(other), not a string")
        }
    }

    /// A base64 `bytes` field; empty when absent.
    func bytes(_ key: String) throws(EtcdError) -> [UInt8] {
        guard let text = try string(key) else { return [] }
        guard let data = Data(base64Encoded: text) else { throw malformed("\"\(key)\" is not base64: \(text)") }
        return [UInt8](data)
    }

    /// A nested object; nil when absent.
    func object(_ key: String) throws(EtcdError) -> EtcdJSON? {
        switch object[key] {
        case nil: return nil
        case let value as [String: Any]: return EtcdJSON(object: value, operation: operation, endpoint: endpoint)
        case let other?: throw malformed("\"\(key)\" is \(other), not an object")
        }
    }

    /// An array of objects; empty when absent.
    func objects(_ key: String) throws(EtcdError) -> [EtcdJSON] {
        switch object[key] {
        case nil: return []
        case let values as [Any]:
            var result: [EtcdJSON] = []
            for value in values {
                guard let item = value as? [String: Any] else { throw malformed("an item of \"\(key)\" is \(value), not an object") }
                result.append(EtcdJSON(object: item, operation: operation, endpoint: endpoint))
            }
            return result
        case let other?: throw malformed("\"\(key)\" is \(other), not an array")
        }
    }

    /// The revision in the reply's `header`, which every reply carries.
    func headerRevision() throws(EtcdError) -> Int64 {
        guard let header = try object("header"), let revision = try header.int64("revision") else {
            throw malformed("the reply has no header revision")
        }
        return revision
    }

    /// A `mvccpb.KeyValue`.
    func keyValue() throws(EtcdError) -> EtcdKeyValue {
        EtcdKeyValue(
            key: String(decoding: try bytes("key"), as: UTF8.self),
            value: try bytes("value"),
            createRevision: try int64("create_revision", default: 0),
            modRevision: try int64("mod_revision", default: 0),
            version: try int64("version", default: 0),
            lease: try int64("lease", default: 0))
    }

    /// The error a gateway stream puts inline, `{"error": {"grpc_code", "http_code", "message"}}`,
    /// or the unary error body `{"error": "...", "message": "...", "code": N}`.
    func inlineError(status: Int?) -> EtcdError? {
        if let nested = object["error"] as? [String: Any] {
            let message = nested["message"] as? String ?? "\(nested)"
            let httpCode = (nested["http_code"] as? NSNumber)?.intValue
            return EtcdError(
                .rejected, operation: operation, endpoint: endpoint, status: httpCode ?? status,
                grpcCode: (nested["grpc_code"] as? NSNumber)?.intValue, message)
        }
        if let message = (object["message"] as? String) ?? (object["error"] as? String) {
            return EtcdError(.rejected, operation: operation, endpoint: endpoint, status: status, grpcCode: (object["code"] as? NSNumber)?.intValue, message)
        }
        return nil
    }
}
