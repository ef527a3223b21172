// swift-tools-version:6.0
import PackageDescription

/// Settings every Swift target shares: Swift 6 language mode plus the upcoming
/// features that keep imports and existentials explicit.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The library sees `struct stat` through both Glibc and CFuse (libfuse's
/// headers include <sys/stat.h>), which MemberImportVisibility reports as a
/// missing import of CFuse everywhere; the library keeps the other settings.
let librarySettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "replfs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "replfsd", targets: ["replfsd"]),
        .executable(name: "replfs-testkit", targets: ["replfs-testkit"]),
        .library(name: "ReplFS", targets: ["ReplFS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
    ],
    targets: [
        // libfuse3 low-level API plus the few shims Swift cannot call directly.
        .target(
            name: "CFuse",
            linkerSettings: [.linkedLibrary("fuse3")]
        ),
        // Linux system calls glibc hides behind _GNU_SOURCE.
        .target(name: "CLinux"),
        // liblz4 block API (LTX page compression).
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        // The system SQLite, used for recovery and by the test workloads.
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .target(
            name: "ReplFS",
            dependencies: [
                "CFuse", "CLZ4", "CSQLite", "CLinux",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: librarySettings
        ),
        .executableTarget(
            name: "replfsd",
            dependencies: [
                "ReplFS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // Real SQLite workloads in their own processes, for tests, benchmarks and the demo.
        .executableTarget(
            name: "replfs-testkit",
            dependencies: [
                "CSQLite",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        // The parsers of outside input as libFuzzer targets (`make fuzz`);
        // built normally, a replayer of their corpora (Tests/fuzz/).
        .executableTarget(
            name: "replfs-fuzz",
            dependencies: [
                "ReplFS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: librarySettings
        ),
        // A bare HTTP client the test targets share.
        .target(name: "TestHTTP", path: "Tests/TestHTTP", swiftSettings: strictSettings),
        .testTarget(
            name: "ReplFSTests",
            dependencies: [
                "ReplFS", "CSQLite", "TestHTTP", .product(name: "X509", package: "swift-certificates"), .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "ReplFS", "TestHTTP", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: librarySettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
