#if canImport(Glibc)
import Glibc
#endif
import Foundation

// replfs-fuzz: the parsers that read outside input, as fuzz targets
// (``FuzzTarget``).
//
// Built by `make fuzz` with `-sanitize=fuzzer,address -D FUZZING`, libFuzzer's
// driver is the program and calls the entry point below with generated inputs
// (the target from REPLFS_FUZZ_TARGET). Built normally, this program replays
// inputs instead: `replfs-fuzz TARGET FILE|DIR...` runs each file through
// the target once, so a crash that fuzzing found stays a regression test;
// `replfs-fuzz seeds DIR` writes the seed corpora (``SeedCorpus``).

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzTarget.selected.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// libFuzzer's driver (its `main`, as a function).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// SwiftPM links an executable's entry point under this name; here it is
/// libFuzzer's driver.
@_cdecl("replfs_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
}
#else
/// Replays inputs through a target, or writes the seed corpora.
@main
enum Replayer {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        if arguments.first == "seeds", arguments.count == 2 {
            do {
                try SeedCorpus.write(to: arguments.last!)
                exit(0)
            } catch {
                FileHandle.standardError.write(Data("replfs-fuzz: \(error)\n".utf8))
                exit(1)
            }
        }
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("usage: replfs-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE|DIR...\n".utf8))
            exit(2)
        }
        var inputs = 0
        for path in arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("replfs-fuzz: no such file \(path)\n".utf8))
                exit(2)
            }
            let files = isDirectory.boolValue ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                target.run(Array(data))
                inputs += 1
            }
        }
        print("replfs-fuzz \(name): \(inputs) inputs, no crash")
    }
}
#endif
