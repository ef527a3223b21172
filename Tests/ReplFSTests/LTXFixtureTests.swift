import Foundation
import Testing

@testable import ReplFS

/// Shared helpers for the LTX test suites: deterministic page content, a
/// tiny in-memory database model that produces LTX chains, and temp files.
enum LTXFixture {
    /// Deterministic pseudo-random bytes (SplitMix64), incompressible.
    static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        var bytes = [UInt8]()
        bytes.reserveCapacity(count + 8)
        while bytes.count < count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            withUnsafeBytes(of: z) { bytes.append(contentsOf: $0) }
        }
        return Array(bytes.prefix(count))
    }

    /// A page that looks like a SQLite page: a random head and a zero tail,
    /// so it compresses but is distinct per `seed`.
    static func page(size: Int, seed: UInt64) -> [UInt8] {
        var bytes = randomBytes(size / 4, seed: seed)
        bytes.append(contentsOf: repeatElement(0, count: size - bytes.count))
        return bytes
    }

    /// Encodes a whole file in one go.
    static func encode(
        _ header: LTXHeader, pages: [(UInt32, [UInt8])], post: Checksum
    ) throws(LTXError) -> [UInt8] {
        var encoder = try LTXEncoder(header: header)
        for (pgno, data) in pages {
            try encoder.append(PageNumber(pgno), page: data)
        }
        try encoder.finish(postApplyChecksum: post)
        return encoder.takeBytes()
    }

    /// A decoded file.
    struct Decoded {
        var header: LTXHeader
        var pages: [(PageNumber, [UInt8])]
        var trailer: LTXTrailer
    }

    /// Decodes and verifies a whole in-memory file.
    static func decode(_ bytes: [UInt8]) throws(LTXError) -> Decoded {
        var decoder = LTXDecoder(source: LTXMemorySource(bytes))
        let header = try decoder.decodeHeader()
        var pages: [(PageNumber, [UInt8])] = []
        var buffer = [UInt8]()
        while let pgno = try decoder.nextPage(into: &buffer) {
            pages.append((pgno, buffer))
        }
        let trailer = try decoder.finish()
        return Decoded(header: header, pages: pages, trailer: trailer)
    }

    /// The database checksum of `pages` (page 1 first), computed the slow way.
    static func databaseChecksum(_ pages: [[UInt8]], pageSize: Int) -> Checksum {
        let lock = PageNumber.lockPage(pageSize: pageSize)
        var value = Checksum.emptyDatabase.rawValue
        for (index, page) in pages.enumerated() {
            let pgno = PageNumber(UInt32(index + 1))
            if pgno == lock { continue }
            value ^= page.withUnsafeBytes { Checksum.page(pgno, $0) }.rawValue
        }
        return Checksum(Checksum.flag.rawValue | value)
    }

    /// A database held in memory that emits one LTX file per transaction,
    /// used to build realistic chains.
    struct Database {
        let pageSize: Int
        var pages: [[UInt8]] = []
        var txid: UInt64 = 0

        init(pageSize: Int) {
            self.pageSize = pageSize
        }

        var checksum: Checksum { LTXFixture.databaseChecksum(pages, pageSize: pageSize) }
        var bytes: [UInt8] { pages.flatMap { $0 } }

        /// Sets the content to `pageCount` fresh pages and returns a snapshot
        /// file for TXID 1.
        mutating func snapshot(pageCount: Int, seed: UInt64) throws(LTXError) -> [UInt8] {
            pages = (0..<pageCount).map { LTXFixture.page(size: pageSize, seed: seed &+ UInt64($0)) }
            txid = 1
            let header = LTXHeader(pageSize: UInt32(pageSize), commit: UInt32(pageCount),
                                   minTXID: TXID(1), maxTXID: TXID(1), timestamp: 1_700_000_000_000)
            return try LTXFixture.encode(header, pages: pages.enumerated().map { (UInt32($0 + 1), $1) }, post: checksum)
        }

        /// Applies `changes` and a new size as the next transaction and
        /// returns its LTX file.
        mutating func commit(_ changes: [UInt32: [UInt8]], size: Int? = nil) throws(LTXError) -> [UInt8] {
            let pre = checksum
            let newSize = size ?? max(pages.count, Int(changes.keys.max() ?? 0))
            while pages.count < newSize { pages.append([UInt8](repeating: 0, count: pageSize)) }
            for (pgno, data) in changes { pages[Int(pgno) - 1] = data }
            pages.removeLast(pages.count - newSize)
            txid += 1
            let header = LTXHeader(pageSize: UInt32(pageSize), commit: UInt32(newSize),
                                   minTXID: TXID(txid), maxTXID: TXID(txid), preApplyChecksum: pre)
            let sorted = changes.filter { Int($0.key) <= newSize }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            return try LTXFixture.encode(header, pages: sorted, post: checksum)
        }
    }

    /// A fresh empty directory under the system temp directory.
    static func temporaryDirectory() -> String {
        var template = Array((NSTemporaryDirectory() + "ltx-tests-XXXXXX").utf8CString)
        let path = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: path!)
    }

    /// Writes `bytes` to `path`, replacing it.
    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// Reads a whole file.
    static func read(_ path: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Writes each file of a chain under its canonical name and returns the paths.
    static func writeChain(_ files: [[UInt8]], in directory: String) throws -> [String] {
        try files.map { bytes in
            let header = try bytes.withUnsafeBytes { try LTXHeader(decoding: $0) }
            let path = directory + "/" + LTXFileName(minTXID: header.minTXID, maxTXID: header.maxTXID).description
            try write(bytes, to: path)
            return path
        }
    }

    /// Runs `body` and returns the `LTXError` it throws, or records an issue.
    /// (Untyped `throws` because closures infer `any Error` without the
    /// full typed-throws feature.)
    static func error(
        sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) -> LTXError? {
        do {
            try body()
            Issue.record("expected an LTXError", sourceLocation: sourceLocation)
            return nil
        } catch let error as LTXError {
            return error
        } catch {
            Issue.record("expected an LTXError, got \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    /// Expects `body` to throw an `LTXError` whose message contains `fragment`.
    static func expectError(
        _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        guard let error = error(sourceLocation: sourceLocation, body) else { return }
        #expect(error.description.contains(fragment), "got: \(error)", sourceLocation: sourceLocation)
    }

    /// Tests/tools/ltx_reference.py, found relative to this source file.
    static let referenceScript = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("tools/ltx_reference.py").path

    /// Runs python3 with `arguments`; returns the exit status and output.
    static func python(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Whether python3 and its lz4 module can run the reference checker.
    static let referenceCheckerAvailable: Bool = {
        (try? python(["-c", "import lz4.block"]).status == 0) ?? false
    }()
}
