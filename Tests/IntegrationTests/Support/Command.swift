import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where the binaries under test and the helper tools are.
enum TestEnvironment {
    /// The build's bin directory (REPLFS_BIN_DIR, or the directory of the
    /// test bundle, which SwiftPM puts next to the products).
    static let binDirectory: String = {
        if let value = ProcessInfo.processInfo.environment["REPLFS_BIN_DIR"], !value.isEmpty { return value }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("replfsd").path) { return url.path }
            url.deleteLastPathComponent()
        }
        return packageRoot + "/.build/debug"
    }()

    static let packageRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static let toolsDirectory: String = ProcessInfo.processInfo.environment["REPLFS_TOOLS"] ?? packageRoot + "/.tools"

    static var replfsd: String { binDirectory + "/replfsd" }
    static var testkit: String { binDirectory + "/replfs-testkit" }
    static var dbhash: String { toolsDirectory + "/dbhash" }
    static var mptest: String { toolsDirectory + "/mptest" }
    static var mptestScripts: String { toolsDirectory + "/mptest-scripts" }
    static let referenceChecker = packageRoot + "/Tests/tools/ltx_reference.py"

    static var hasFUSE: Bool { FileManager.default.fileExists(atPath: "/dev/fuse") && getuid() == 0 }
}

/// The result of running a program to completion.
struct CommandResult: CustomStringConvertible {
    var status: Int32
    var output: String
    var error: String
    var description: String { "exit \(status)\nstdout: \(output)\nstderr: \(error)" }
}

/// Runs programs as separate processes, capturing their output in files
/// (pipes can fill up and block a chatty child).
enum Command {
    struct Timeout: Error, CustomStringConvertible {
        var command: String
        var description: String { "timed out: \(command)" }
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String], timeout: Double = 300, environment: [String: String]? = nil) throws -> CommandResult {
        let started = try start(executable, arguments, environment: environment)
        let deadline = Date().addingTimeInterval(timeout)
        while started.process.isRunning {
            if Date() > deadline {
                started.process.terminate()
                kill(started.process.processIdentifier, SIGKILL)
                throw Timeout(command: ([executable] + arguments).joined(separator: " "))
            }
            usleep(2000)
        }
        return started.finish()
    }

    /// A running child with captured output.
    final class Started: @unchecked Sendable {
        let process: Process
        let outputPath: String
        let errorPath: String

        init(process: Process, outputPath: String, errorPath: String) {
            self.process = process
            self.outputPath = outputPath
            self.errorPath = errorPath
        }

        var pid: Int32 { process.processIdentifier }

        /// Waits for exit and collects the output.
        func finish() -> CommandResult {
            process.waitUntilExit()
            let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            let error = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(atPath: outputPath)
            try? FileManager.default.removeItem(atPath: errorPath)
            return CommandResult(status: process.terminationStatus, output: output, error: error)
        }

        /// Output so far (the process may still run).
        var errorSoFar: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }
    }

    static func start(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> Started {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let base = NSTemporaryDirectory() + "replfs-cmd-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: base + ".out", contents: nil)
        FileManager.default.createFile(atPath: base + ".err", contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: base + ".out")
        process.standardError = FileHandle(forWritingAtPath: base + ".err")
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return Started(process: process, outputPath: base + ".out", errorPath: base + ".err")
    }

    /// Runs `sqlite3 DB SQL` and returns its trimmed output; throws on failure.
    static func sqlite(_ db: String, _ sql: String) throws -> String {
        let result = try run("/usr/bin/sqlite3", ["-bail", db, sql], timeout: 60)
        guard result.status == 0 else { throw Failure("sqlite3 \(db) \(sql): \(result)") }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// SQLite's dbhash of a database (SHA1 of its logical content).
    static func dbhash(_ db: String) throws -> String {
        let result = try run(TestEnvironment.dbhash, [db], timeout: 120)
        guard result.status == 0, let hash = result.output.split(separator: " ").first else { throw Failure("dbhash \(db): \(result)") }
        return String(hash)
    }
}

struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds or `timeout` passes: the way tests wait
/// for something to happen, instead of sleeping.
func waitUntil(timeout: Double = 10, interval: Double = 0.01, _ what: String, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if try condition() { return }
        if Date() > deadline { throw Failure("timed out after \(timeout)s waiting until \(what)") }
        usleep(useconds_t(interval * 1_000_000))
    }
}
