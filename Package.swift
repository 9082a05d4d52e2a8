// swift-tools-version: 6.1
// tailgate — a stream-processing tail-sampling engine for distributed traces.
// Rooms (targets) and what each may import: see ARCHITECTURE in the README.
import PackageDescription
import class Foundation.ProcessInfo

/// Settings every Swift target shares: Swift 6 language mode (strict concurrency) is the tools default;
/// the upcoming features keep the code honest about existential and import visibility.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    // Release builds skip the runtime exclusivity checks (swift_beginAccess on every class property
    // access: ~1.5% of the engine's instructions); the compile-time checks and debug builds keep them.
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "tailgate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tailgate", targets: ["tailgate"]),
        .library(name: "OTLP", targets: ["OTLP"]),
        .library(name: "Sampling", targets: ["Sampling"]),
        .library(name: "SpanMetrics", targets: ["SpanMetrics"]),
        .library(name: "Kafka", targets: ["Kafka"]),
        .library(name: "Storage", targets: ["Storage"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "Traffic", targets: ["Traffic"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The rule file is the collector's YAML; Yams keeps line numbers for errors that name them.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // One HTTP listener (/metrics, health, reload, and Tempo's trace API): NIO's HTTP/1.1 codec
        // brings keep-alive, pipelining and request limits we would otherwise write ourselves.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // TLS for the OTLP/HTTP exporter (Grafana Cloud and other https receivers).
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // C libraries, found by pkg-config; Debian packages named for a helpful error.
        .systemLibrary(name: "Crdkafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        // The pure core.
        .target(name: "OTLP", swiftSettings: swiftSettings),
        .target(name: "Sampling", dependencies: ["OTLP", .product(name: "Yams", package: "Yams")], swiftSettings: swiftSettings),
        .target(name: "SpanMetrics", dependencies: ["OTLP"], swiftSettings: swiftSettings),

        // The edges.
        .target(
            name: "Kafka",
            dependencies: ["Crdkafka", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        // The embedded store of kept traces: segments, index, block summaries, search (TraceQL).
        .target(name: "Storage", dependencies: ["OTLP", "CZstd"], swiftSettings: swiftSettings),
        // The ingest front `run` and `route` share: poll, size the next poll, decode, count and refuse
        // bad input, dead-letter copies, and the rebalance epochs (lanes).
        .target(
            name: "Ingest",
            dependencies: ["OTLP", "Kafka", "SpanMetrics", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        // Where kept traces go: the embedded store's writer, the OTLP/HTTP exporter, the Kafka sink.
        .target(
            name: "Sinks",
            dependencies: [
                "OTLP", "Storage", "Kafka", "CZlib", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings),
        // The one HTTP listener: probes, /metrics, reload, and Tempo's API over a store.
        .target(
            name: "HTTP",
            dependencies: [
                "OTLP", "Sampling", "SpanMetrics", "Storage", .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        // `tailgate run`'s wiring: shards, backpressure, the delivery ledger's events, lifecycle.
        .target(
            name: "Engine",
            dependencies: [
                "OTLP", "Sampling", "SpanMetrics", "Kafka", "Storage", "Ingest", "Sinks", "HTTP",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        // `tailgate route`: re-keys any OTLP topic by trace id.
        .target(
            name: "Route",
            dependencies: ["OTLP", "Sampling", "Kafka", "Ingest", "HTTP", "SpanMetrics", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        // The traffic room: DogBook's generated traces and the producer that writes them to Kafka
        // (loadgen, the demo, the tests), not the engine's business.
        .target(
            name: "Traffic",
            dependencies: ["OTLP", "Kafka", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "tailgate",
            dependencies: [
                "Engine", "Route", "Ingest", "Traffic", "OTLP", "Sampling", "SpanMetrics", "Kafka", "Storage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),

        .testTarget(name: "OTLPTests", dependencies: ["OTLP", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "SamplingTests", dependencies: ["Sampling", "OTLP", "Ingest", "Kafka"], swiftSettings: swiftSettings),
        .testTarget(name: "SpanMetricsTests", dependencies: ["SpanMetrics", "OTLP", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "KafkaTests", dependencies: ["Kafka", "TestSupport"], swiftSettings: swiftSettings),
        // A local OTLP/HTTP receiver and other helpers the Storage and Engine tests share.
        .target(
            name: "TestSupport",
            dependencies: [
                "Sinks", "OTLP", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "OTLP", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SinksTests",
            dependencies: [
                "Sinks", "Storage", "OTLP", "TestSupport", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "EngineTests",
            dependencies: [
                "Engine", "Route", "Ingest", "Sinks", "HTTP", "Traffic", "OTLP", "Sampling", "SpanMetrics", "Kafka", "Storage",
                "tailgate", "TestSupport",
            ],
            swiftSettings: swiftSettings),
    ]
)

// Benchmarks stay out of the default build so `swift build` and CI stay fast:
// TAILGATE_BENCHMARKS=1 swift package benchmark
if ProcessInfo.processInfo.environment["TAILGATE_BENCHMARKS"] != nil {
    package.dependencies.append(
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]))
    package.targets.append(
        .executableTarget(
            name: "DecodeBenchmark",
            dependencies: ["OTLP", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/Decode",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]))
    package.targets.append(
        .executableTarget(
            name: "StoreBenchmark",
            dependencies: ["OTLP", "Storage", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/Store",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]))
    package.targets.append(
        .executableTarget(
            name: "SamplingBenchmark",
            dependencies: ["OTLP", "Sampling", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/Sampling",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]))
    package.targets.append(
        .executableTarget(
            name: "SpanMetricsBenchmark",
            dependencies: ["OTLP", "SpanMetrics", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/SpanMetrics",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]))
    package.targets.append(
        .executableTarget(
            name: "PipelineBenchmark",
            dependencies: ["OTLP", "Sampling", "SpanMetrics", "Storage", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/Pipeline",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]))
    package.targets.append(
        .executableTarget(
            name: "SearchBenchmark",
            dependencies: ["OTLP", "Storage", "Traffic", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/Search",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]))
}

// libFuzzer targets (Fuzz/README.md): TAILGATE_FUZZ=1 swift build -c release -Xswiftc -sanitize=fuzzer,address --product …
if ProcessInfo.processInfo.environment["TAILGATE_FUZZ"] != nil {
    for (name, dependency) in [("FuzzOTLPProtobuf", "OTLP"), ("FuzzOTLPJSON", "OTLP"), ("FuzzRuleFile", "Sampling")] {
        package.products.append(.executable(name: name, targets: [name]))
        package.targets.append(
            .executableTarget(
                name: name, dependencies: [.target(name: dependency)], path: "Fuzz/\(name.dropFirst(4))",
                swiftSettings: swiftSettings + [.unsafeFlags(["-parse-as-library"])]))
    }
}

