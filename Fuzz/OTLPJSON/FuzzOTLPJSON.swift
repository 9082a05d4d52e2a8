// libFuzzer target: OTLP/JSON transcoding and decoding must refuse bad input with an error, never
// crash. See Fuzz/README.md.
import OTLP

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var batch = SpanBatch(selection: AttributeSelection(keys: ["http.route", "user.id"]))
    if (try? SpanDecoder(encoding: .otlpJSON).decode(bytes, into: &batch)) != nil {
        for span in batch.spans { _ = batch.string(span.name) }
    }
    return 0
}

// SwiftPM links an executable's entry point as `<module>_main`; hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("FuzzOTLPJSON_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, { fuzz($0, $1) })
}
