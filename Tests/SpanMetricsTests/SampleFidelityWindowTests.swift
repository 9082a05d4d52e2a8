import SpanMetrics
import Testing

@Suite struct SampleFidelityWindowTests {
    /// The window: a base at least five minutes old, the start before that; quantiles as Prometheus'
    /// histogram_quantile interpolates them.
    @Test func theWindowSlidesAndQuantilesInterpolate() {
        var sample = ServiceSample()
        sample.calls = 100
        sample.latency = [50, 50, 0]
        sample.estimatedLatency = [0, 0, 0]
        var window = SampleFidelityWindow(start: 0, length: 300, step: 10, minimumKeptTraces: 30)
        window.observe(["a": sample], at: 100)
        var later = sample
        later.calls = 250
        later.latency = [50, 150, 0]
        #expect(window.report(current: ["a": later], at: 200, bounds: [0.1, 1])[0].calls == 250, "before five minutes: since the start")
        window.observe(["a": later], at: 200)
        #expect(window.report(current: ["a": later], at: 400, bounds: [0.1, 1])[0].calls == 150, "at 400 the base is the sample taken at 100")
        #expect(window.coverage(at: 400) == 300e-9)
        // 50 spans ≤ 0.1 s, 50 in (0.1, 1]: the median is 0.1, the 75th percentile half way into the second bucket.
        #expect(SampleFidelity.quantile(0.5, counts: [50, 50, 0], bounds: [0.1, 1]) == 0.1)
        #expect(SampleFidelity.quantile(0.75, counts: [50, 50, 0], bounds: [0.1, 1]) == 0.55)
        #expect(SampleFidelity.quantile(0.99, counts: [0, 0, 10], bounds: [0.1, 1]) == 1, "the unbounded bucket answers its lower bound")
        #expect(SampleFidelity.quantile(0.5, counts: [0, 0, 0], bounds: [0.1, 1]) == nil)
    }
}
