import Foundation
import NIOCore
import Testing

@testable import ReplFS

/// The fuzz targets' seed corpora (`Tests/fuzz/`, see `make fuzz`) are
/// well-formed inputs, so fuzzing starts from the real formats rather than
/// from noise.
@Suite("Fuzz seed corpora")
struct FuzzCorpusTests {
    static let corpus = RepositoryTests.top + "/Tests/fuzz"

    /// The seeds of `target`; `regressions` selects the inputs fuzzing
    /// found (`regression-*`, kept so they stay fixed) instead of the
    /// well-formed ones.
    static func seeds(_ target: String, regressions: Bool = false) throws -> [[UInt8]] {
        let names = try FileManager.default.contentsOfDirectory(atPath: corpus + "/" + target).sorted()
            .filter { $0.hasPrefix("regression-") == regressions }
        return names.compactMap { FileManager.default.contents(atPath: corpus + "/" + target + "/" + $0).map(Array.init) }
    }

    @Test("every LTX seed decodes whole, checksums included")
    func ltx() throws {
        let seeds = try Self.seeds("ltx")
        #expect(seeds.count >= 3)
        for seed in seeds {
            var decoder = LTXDecoder(source: LTXMemorySource(seed))
            let header = try decoder.decodeHeader()
            var page = [UInt8](repeating: 0, count: Int(header.pageSize))
            while try decoder.nextPage(into: &page) != nil {}
            _ = try decoder.finish()
        }
    }

    @Test("every frame seed is a stream of valid frames")
    func frames() throws {
        let seeds = try Self.seeds("frames")
        #expect(seeds.count >= 2)
        for seed in seeds {
            var buffer = ByteBufferAllocator().buffer(bytes: seed)
            var count = 0
            while try ReplicationFrameCodec.decode(&buffer) != nil { count += 1 }
            #expect(count >= 4 && buffer.readableBytes == 0)
        }
    }

    @Test("every config seed loads; every HTTP seed is a request line and headers")
    func configAndHTTP() throws {
        for seed in try Self.seeds("config") {
            _ = try ConfigLoader.parse(String(decoding: seed, as: UTF8.self), hostname: "seed")
        }
        for seed in try Self.seeds("config", regressions: true) {
            #expect(throws: ConfigError.self) { _ = try ConfigLoader.parse(String(decoding: seed, as: UTF8.self), hostname: "seed") }
        }
        for seed in try Self.seeds("http") {
            let text = String(decoding: seed, as: UTF8.self)
            #expect(text.contains(" HTTP/1.1\r\n") && text.contains("\r\n\r\n"))
        }
    }
}
