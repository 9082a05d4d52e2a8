// libFuzzer target: the OTLP protobuf decoder must refuse bad input with an error, never crash,
// hang or read out of bounds. See Fuzz/README.md.
import OTLP

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var batch = SpanBatch(selection: AttributeSelection(keys: ["http.route", "http.response.status_code", "user.id", "db.system"]))
    if (try? SpanDecoder(encoding: .otlpProto).decode(bytes, into: &batch)) != nil {
        // What decoded must be readable: every range inside the batch, every trace buildable.
        for span in batch.spans {
            _ = batch.string(span.name)
            _ = batch.attributes(of: span).count
            var trace = TraceData(traceID: span.traceID)
            trace.append(span, from: batch, batchGeneration: 1)
            _ = trace.name(of: trace.spans[0])
            _ = trace.exportRequest()
        }
    }
    return 0
}

// SwiftPM links an executable's entry point as `<module>_main`; hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("FuzzOTLPProtobuf_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, { fuzz($0, $1) })
}
