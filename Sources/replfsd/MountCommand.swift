#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Logging
import ReplFS

/// `replfsd mount --config FILE`: the foreground daemon.
struct MountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount", abstract: "Mount the replicated directory and serve it until SIGTERM or SIGINT.")

    @Option(name: .long, help: "Path of the YAML configuration.")
    var config: String

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let configuration: Config
        do {
            configuration = try ConfigLoader.load(path: config)
            do {
                try configuration.requireImplemented()
                try configuration.checkThisMachine()
            } catch var error {
                error.file = config
                throw error
            }
        } catch {
            printError("replfsd: \(error)")
            throw ExitCode(2)
        }
        var logger = Logger(label: "replfsd")
        logger[metadataKey: "node"] = "\(configuration.node)"

        let daemon: Daemon
        do {
            daemon = try await Daemon(config: configuration, logger: logger)
        } catch {
            printError("replfsd: \(error)")
            throw ExitCode(2)
        }

        // SIGTERM and SIGINT shut the daemon down in order (Daemon.run).
        try await daemon.run()
    }
}

func printError(_ message: String) {
    var stream = StandardErrorStream()
    print(message, to: &stream)
}

struct StandardErrorStream: TextOutputStream {
    mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
