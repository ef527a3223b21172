import Logging

@testable import ReplFS

/// A log handler that keeps every message, so a test can check what a
/// component reported (for example why a command could not run).
struct RecordingLogHandler: LogHandler {
    let messages = Locked<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        messages.withLock { $0.append("\(event.level): \(event.message)" + fields) }
    }

    /// A logger that records into this handler.
    var logger: Logger { Logger(label: "test") { _ in self } }
}
