import Storage
import Testing

/// The TraceQL subset: what Grafana's search builder writes parses to the expected conditions;
/// everything else is refused with the construct and its position named.
@Suite struct TraceQLTests {
    @Test func whatGrafanasSearchBuilderWrites() throws {
        #expect(try TraceQL.parse("{}") == .spanset(nil))
        #expect(try TraceQL.parse(#"{ resource.service.name = "feed-service" && status = error && duration > 1s }"#) == .spanset(
            .and(.and(.comparison(.resource("service.name"), .equal, .string("feed-service")),
                      .comparison(.status, .equal, .enumeration("error"))),
                 .comparison(.duration, .greater, .duration(1_000_000_000)))))
        #expect(try TraceQL.parse(#"{ span.http.route =~ "/dogs/.*" || .http.response.status_code >= 500 }"#) == .spanset(
            .or(.comparison(.span("http.route"), .matches, .string("/dogs/.*")),
                .comparison(.any("http.response.status_code"), .greaterOrEqual, .integer(500)))))
        #expect(try TraceQL.parse(#"{ kind = server } && { name != "GET /healthz" } || { traceDuration >= 2.5s }"#) == .or(
            .and(.spanset(.comparison(.kind, .equal, .enumeration("server"))),
                 .spanset(.comparison(.name, .notEqual, .string("GET /healthz")))),
            .spanset(.comparison(.traceDuration, .greaterOrEqual, .duration(2_500_000_000)))))
        #expect(try TraceQL.parse(#"({ rootServiceName = "frontend" }) && { .cache.hit = true && span.db.rows < 1.5 }"#) == .and(
            .spanset(.comparison(.rootServiceName, .equal, .string("frontend"))),
            .spanset(.and(.comparison(.any("cache.hit"), .equal, .bool(true)), .comparison(.span("db.rows"), .less, .float(1.5))))))
        #expect(try TraceQL.parse(#"{ rootName = "GET /feed" && (statusMessage = "boom" || duration <= 250ms) }"#).attributeKeys == [])
        #expect(try TraceQL.parse(#"{ .a = "x" } && { resource.b != 3 }"#).attributeKeys == ["a", "b"])
    }

    @Test(arguments: [
        (#"{ status = error } | count() > 2"#, 20, "pipelines"),
        (#"{ .a = 1 } >> { .b = 2 }"#, 12, ">>"),
        (#"{ .a = 1 } ~ { .b = 2 }"#, 12, "~"),
        (#"{ parent.name = "x" }"#, 3, "parent.name is not supported"),
        (#"{ event.name = "x" }"#, 3, "event.name is not supported"),
        (#"{ status = 2 }"#, 3, "status compares"),
        (#"{ duration > "slow" }"#, 3, "compares with a duration"),
        (#"{ .a = 1 "#, 10, "expected }"),
        (#"{ .a = "unterminated }"#, 8, "unterminated string"),
        (#"{ .a =~ "(" }"#, 3, "invalid regular expression"),
        (#"{ foo = 1 }"#, 3, "unknown field foo"),
        (#"{ .a = error }"#, 3, "quote strings"),
        ("count()", 1, "count() is not supported"),
        (#"{ .a = 1 } junk"#, 12, "unexpected junk"),
    ])
    func refusedWithThePosition(query: String, position: Int, message: String) {
        do {
            _ = try TraceQL.parse(query)
            Issue.record("\(query) parsed")
        } catch {
            #expect(error.position == position, "\(query): \(error)")
            #expect(error.message.contains(message), "\(query): \(error)")
        }
    }
}
