// The console's page, style, script and icon, compiled into the binary (no toolchain, no CDN).
// The script builds the document with createElement and text nodes only: every value that came
// from a span (service, span and attribute names and values, rule text) is text, never markup.
// Styles are set through the CSSOM (element.style), which the Content-Security-Policy allows
// without 'unsafe-inline'.

enum ConsoleAssets {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>tailgate console</title>
        <link rel="icon" href="/console/icon.svg" type="image/svg+xml">
        <link rel="stylesheet" href="/console/app.css">
        <script src="/console/app.js" defer></script>
        </head>
        <body>
        <header class="top">
          <a class="brand" href="#/overview"><img src="/console/icon.svg" alt="" width="22" height="22"> tailgate</a>
          <nav>
            <a href="#/overview" data-tab="overview">Overview</a>
            <a href="#/rules" data-tab="rules">Rules</a>
            <a href="#/traces" data-tab="traces">Traces</a>
            <a href="#/graph" data-tab="graph">Service graph</a>
          </nav>
          <span id="live" class="live">connecting…</span>
        </header>
        <main id="main"><p class="muted">Loading…</p></main>
        <noscript><p class="notice">The console needs JavaScript. /metrics and Tempo's API (/api/search, /api/v2/traces/&lt;id&gt;) work without it.</p></noscript>
        </body>
        </html>
        """#

    static let icon = #"""
        <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#1f2a44"/><path d="M6 9h20M9 16h14M13 23h6" stroke="#7dd3c0" stroke-width="3.2" stroke-linecap="round"/></svg>
        """#

    static let style = #"""
        :root {
          --bg: #f5f6f8; --card: #fff; --ink: #1c2333; --muted: #667085; --line: #e3e6ec;
          --accent: #2f6fde; --ok: #198754; --bad: #c6283a; --warn: #b26b00; --top: #1f2a44;
          font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
          font-size: 14px; color: var(--ink); background: var(--bg);
        }
        * { box-sizing: border-box; }
        body { margin: 0; }
        a { color: var(--accent); text-decoration: none; }
        a:hover { text-decoration: underline; }
        .top { display: flex; align-items: center; gap: 24px; background: var(--top); color: #fff; padding: 0 20px; height: 48px; position: sticky; top: 0; z-index: 5; }
        .brand { color: #fff; font-weight: 650; font-size: 16px; display: flex; align-items: center; gap: 8px; }
        .brand:hover { text-decoration: none; }
        nav { display: flex; gap: 4px; }
        nav a { color: #c9d3e8; padding: 14px 12px; border-bottom: 3px solid transparent; }
        nav a:hover { color: #fff; text-decoration: none; }
        nav a[aria-current="page"] { color: #fff; border-bottom-color: #7dd3c0; }
        .live { margin-left: auto; font-size: 12px; color: #c9d3e8; }
        .live.down { color: #ffb4bc; }
        .live::before { content: "●"; margin-right: 6px; color: #7dd3c0; }
        .live.down::before { color: #ff6b7d; }
        main { padding: 20px; max-width: 1400px; margin: 0 auto; }
        h1 { font-size: 20px; margin: 0 0 4px; }
        h2 { font-size: 15px; margin: 24px 0 8px; }
        .muted { color: var(--muted); }
        .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
        .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
        .card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
        .card .value { font-size: 24px; font-weight: 650; margin: 4px 0 2px; font-variant-numeric: tabular-nums; }
        .card .sub { color: var(--muted); font-size: 12px; }
        .card svg.spark { display: block; margin-top: 6px; width: 100%; }
        .card .sub { overflow-wrap: anywhere; }
        .panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 4px 0; overflow-x: auto; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: 6px 12px; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { color: var(--muted); font-weight: 600; font-size: 12px; }
        tr:last-child td { border-bottom: 0; }
        td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
        .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
        .pill { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; background: #e8ecf4; }
        .pill.ok { background: #dcf3e5; color: var(--ok); }
        .pill.bad { background: #fbe0e3; color: var(--bad); }
        .pill.warn { background: #fdf0d9; color: var(--warn); }
        .meter { height: 8px; background: #e8ecf4; border-radius: 4px; overflow: hidden; margin-top: 8px; }
        .meter > div { height: 100%; background: var(--accent); }
        .meter.hot > div { background: var(--bad); }
        .error-text { color: var(--bad); white-space: pre-wrap; }
        .notice { background: #fff8e6; border: 1px solid #f2d48b; border-radius: 8px; padding: 12px 14px; }
        pre.source { background: #0f172a; color: #e2e8f0; padding: 14px; border-radius: 8px; overflow: auto; max-height: 480px; font-size: 12px; }
        form.search { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 10px; align-items: end; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
        form.search label { display: flex; flex-direction: column; gap: 4px; font-size: 12px; color: var(--muted); }
        form.search label.wide { grid-column: 1 / -1; }
        input, select, button { font: inherit; padding: 6px 8px; border: 1px solid #c9cfdb; border-radius: 6px; background: #fff; color: var(--ink); }
        button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
        .trace-head { display: flex; flex-wrap: wrap; gap: 8px 20px; align-items: baseline; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
        .trace-head .fact .k { color: var(--muted); font-size: 12px; margin-right: 6px; }
        .waterfall { background: var(--card); border: 1px solid var(--line); border-radius: 8px; margin-top: 12px; }
        .wf-axis, .wf-row { display: grid; grid-template-columns: minmax(260px, 34%) 1fr; }
        .wf-axis { border-bottom: 1px solid var(--line); font-size: 11px; color: var(--muted); }
        .wf-axis .ticks { position: relative; height: 22px; }
        .wf-axis .ticks span { position: absolute; top: 4px; transform: translateX(-50%); white-space: nowrap; }
        .wf-axis .ticks span:first-child { transform: none; }
        .wf-axis .ticks span:last-child { transform: translateX(-100%); }
        .wf-row { border-bottom: 1px solid #f0f2f6; cursor: pointer; }
        .wf-row:hover { background: #f7f9fc; }
        .wf-row.open { background: #eef3fd; }
        .wf-label { padding: 4px 8px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; display: flex; gap: 6px; align-items: center; }
        .wf-label .svc { font-size: 11px; padding: 0 6px; border-radius: 8px; color: #fff; flex: none; max-width: 140px; overflow: hidden; text-overflow: ellipsis; }
        .wf-label .name { overflow: hidden; text-overflow: ellipsis; }
        .wf-label .err { color: var(--bad); font-weight: 700; }
        .wf-label .orphan { color: var(--warn); font-size: 11px; }
        .wf-track { position: relative; height: 26px; border-left: 1px solid var(--line); }
        .wf-bar { position: absolute; top: 7px; height: 12px; border-radius: 3px; min-width: 2px; }
        .wf-bar.error { outline: 2px solid var(--bad); outline-offset: 1px; }
        .wf-dur { position: absolute; top: 6px; font-size: 11px; color: var(--muted); white-space: nowrap; }
        .wf-detail { padding: 8px 14px 12px 22px; background: #fbfcfe; border-bottom: 1px solid var(--line); }
        .wf-detail table td:first-child { color: var(--muted); width: 28%; }
        .wf-detail td { word-break: break-all; }
        .graph { background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: auto; padding: 8px; }
        .graph svg { max-width: 100%; height: auto; display: block; margin: 0 auto; }
        .graph .node text.sub { font-size: 11px; fill: var(--muted); }
        .graph .node.failing text.sub { fill: var(--bad); }
        .graph svg text { font-size: 12px; fill: var(--ink); }
        .graph .edge { fill: none; stroke: #8fa3c7; }
        .graph .edge.failing { stroke: var(--bad); }
        .graph .node rect { fill: #fff; stroke: #5b7bb8; stroke-width: 1.5; }
        .graph .node.failing rect { stroke: var(--bad); stroke-width: 2.5; }
        .graph .edge-label { font-size: 11px; fill: var(--muted); }
        .graph .edge-label.failing { fill: var(--bad); }
        .row { display: flex; gap: 16px; flex-wrap: wrap; }
        .row > * { flex: 1 1 420px; min-width: 0; }
        """#

    static let script = #"""
        'use strict';
        (() => {
          const SVG = 'http://www.w3.org/2000/svg';
          const HISTORY = 300; // one point a second: five minutes
          const history = [];  // {time, samples}
          let latest = null;   // the newest /api/console/state answer
          let view = null;     // what renders on each poll
          let serviceValues = null;

          // ---- building the document: text only ------------------------------------------------
          function el(tag, props, ...children) {
            const node = document.createElement(tag);
            for (const [key, value] of Object.entries(props || {})) {
              if (value == null || value === false) continue;
              if (key === 'class') node.className = value;
              else if (key === 'text') node.textContent = value;
              else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
              else node.setAttribute(key, String(value));
            }
            append(node, children);
            return node;
          }
          function svg(tag, attributes, ...children) {
            const node = document.createElementNS(SVG, tag);
            for (const [key, value] of Object.entries(attributes || {})) {
              if (value == null) continue;
              if (key === 'class') node.setAttribute('class', value);
              else node.setAttribute(key, String(value));
            }
            append(node, children);
            return node;
          }
          function append(node, children) {
            for (const child of children.flat(Infinity)) {
              if (child == null || child === false) continue;
              node.append(child instanceof Node ? child : document.createTextNode(String(child)));
            }
          }
          function link(href, ...children) { return el('a', { href }, ...children); }
          const traceLink = (id, ...children) => /^[0-9a-f]{1,32}$/.test(id) ? link('#/trace/' + id, ...children) : el('span', {}, ...children);

          // ---- numbers ------------------------------------------------------------------------
          function count(n) {
            if (n == null || !isFinite(n)) return '—';
            const a = Math.abs(n);
            if (a >= 1e9) return (n / 1e9).toFixed(a >= 1e10 ? 1 : 2) + ' G';
            if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e7 ? 1 : 2) + ' M';
            if (a >= 1e4) return (n / 1e3).toFixed(1) + ' k';
            if (Number.isInteger(n)) return String(n);
            return a >= 100 ? n.toFixed(0) : a >= 10 ? n.toFixed(1) : n.toFixed(2);
          }
          function bytes(n) {
            if (n == null || !isFinite(n)) return '—';
            const units = ['B', 'kB', 'MB', 'GB', 'TB'];
            let i = 0;
            while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
            return (i === 0 ? String(Math.round(n)) : n.toFixed(Math.abs(n) >= 100 ? 0 : 1)) + ' ' + units[i];
          }
          function millis(ms) {
            if (ms == null || !isFinite(ms)) return '—';
            if (ms >= 60000) return (ms / 60000).toFixed(1) + ' min';
            if (ms >= 1000) return (ms / 1000).toFixed(ms >= 10000 ? 1 : 2) + ' s';
            if (ms >= 1) return ms.toFixed(ms >= 100 ? 0 : 1) + ' ms';
            return (ms * 1000).toFixed(0) + ' µs';
          }
          function ago(seconds) {
            if (seconds == null || !isFinite(seconds)) return '—';
            if (seconds < 90) return Math.max(0, Math.round(seconds)) + ' s ago';
            if (seconds < 5400) return Math.round(seconds / 60) + ' min ago';
            return Math.round(seconds / 3600) + ' h ago';
          }
          const perSecond = (n) => n == null ? '—' : count(n) + '/s';
          function clock(unixSeconds) {
            const d = new Date(unixSeconds * 1000);
            return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
          }

          // ---- metrics from the snapshots -------------------------------------------------------
          function matches(sample, name, labels) {
            if (sample.name !== name) return false;
            for (const [k, v] of Object.entries(labels || {})) if (sample.labels[k] !== v) return false;
            return true;
          }
          function total(samples, name, labels) {
            let sum = 0, found = false;
            for (const s of samples) if (matches(s, name, labels)) { sum += s.value; found = true; }
            return found ? sum : null;
          }
          const now = (name, labels) => latest ? total(latest.samples, name, labels) : null;
          function labelValues(name, label) {
            const values = new Set();
            if (latest) for (const s of latest.samples) if (s.name === name && s.labels[label] != null) values.add(s.labels[label]);
            return [...values].sort();
          }
          /** Per-second rate over the last `window` seconds of the history (null before two points). */
          function rate(name, labels, window = 10) {
            if (history.length < 2) return null;
            const last = history[history.length - 1];
            let first = history[0];
            for (const point of history) if (last.time - point.time <= window) { first = point; break; }
            if (first === last) first = history[history.length - 2];
            const a = total(first.samples, name, labels), b = total(last.samples, name, labels);
            const dt = last.time - first.time;
            if (dt <= 0) return null;
            return b == null ? 0 : Math.max(0, (b - (a || 0)) / dt);
          }
          /** Per-second rates between consecutive points: the sparkline's values. */
          function series(name, labels) {
            const values = [];
            for (let i = 1; i < history.length; i++) {
              const a = total(history[i - 1].samples, name, labels), b = total(history[i].samples, name, labels);
              const dt = history[i].time - history[i - 1].time;
              values.push(b != null && dt > 0 ? Math.max(0, (b - (a || 0)) / dt) : 0);
            }
            return values;
          }
          function sumSeries(list) {
            const length = Math.max(0, ...list.map(s => s.length));
            return Array.from({ length }, (_, i) => list.reduce((acc, s) => acc + (s[i] || 0), 0));
          }
          function sparkline(values, width = 200, height = 30, colour = '#2f6fde') {
            const box = svg('svg', { class: 'spark', width, height, viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'last minutes' });
            if (values.length < 2) return box;
            const max = Math.max(...values, 1e-9);
            const step = width / (Math.max(30, values.length) - 1);
            const start = width - (values.length - 1) * step;
            const points = values.map((v, i) => `${(start + i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
            box.append(svg('polyline', { points: points.join(' '), fill: 'none', stroke: colour, 'stroke-width': 1.5 }));
            return box;
          }

          // ---- colours ------------------------------------------------------------------------
          function hue(text) {
            let h = 2166136261;
            for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 16777619); }
            return (h >>> 0) % 360;
          }
          const serviceColour = (service) => `hsl(${hue(service)}, 58%, 48%)`;

          // ---- polling ------------------------------------------------------------------------
          async function poll() {
            if (!document.hidden) {
              try {
                const response = await fetch('/api/console/state', { cache: 'no-store' });
                if (!response.ok) throw new Error('HTTP ' + response.status);
                latest = await response.json();
                history.push({ time: latest.time, samples: latest.samples });
                while (history.length > HISTORY) history.shift();
                setLive(true, 'live · ' + (latest.state.role || 'run') + ' · ' + latest.version);
                // Live pages redraw; the others only if they were drawn before the first answer.
                if (view && (view.live || view.waiting)) render();
              } catch (error) {
                setLive(false, 'no answer from tailgate (' + error.message + ')');
              }
            }
            setTimeout(poll, 1000);
          }
          function setLive(ok, text) {
            const live = document.getElementById('live');
            live.textContent = text;
            live.classList.toggle('down', !ok);
          }
          document.addEventListener('visibilitychange', () => { if (!document.hidden && view && view.live) render(); });

          // ---- routing ------------------------------------------------------------------------
          function route() {
            const hash = location.hash.replace(/^#\/?/, '');
            const [path, query] = hash.split('?');
            const parameters = new URLSearchParams(query || '');
            const parts = path.split('/');
            if (parts[0] === 'rules') return { tab: 'rules', live: true, draw: drawRules };
            if (parts[0] === 'graph') return { tab: 'graph', live: true, draw: drawGraph };
            if (parts[0] === 'traces') return { tab: 'traces', live: false, draw: (main) => drawTraces(main, parameters) };
            if (parts[0] === 'trace' && parts[1]) return { tab: 'traces', live: false, draw: (main) => drawTrace(main, decodeURIComponent(parts[1])) };
            return { tab: 'overview', live: true, draw: drawOverview };
          }
          function navigate() {
            view = route();
            for (const a of document.querySelectorAll('nav a')) {
              if (a.dataset.tab === view.tab) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
            }
            render();
          }
          function render() {
            const main = document.getElementById('main');
            view.waiting = !latest;
            if (!latest && view.live) { main.replaceChildren(el('p', { class: 'muted', text: 'Waiting for the first answer from tailgate…' })); return; }
            const scroll = window.scrollY;
            const fresh = el('div', { id: 'view-' + view.tab });
            view.draw(fresh);
            main.replaceChildren(fresh);
            if (view.live) window.scrollTo(0, scroll);
          }
          window.addEventListener('hashchange', navigate);

          // ---- overview -----------------------------------------------------------------------
          function card(label, value, sub, extra, id, raw) {
            return el('div', { class: 'card', id },
              el('div', { class: 'label', text: label }),
              el('div', { class: 'value', 'data-value': raw, text: value }),
              sub != null ? el('div', { class: 'sub' }, sub) : null,
              extra);
          }
          function policies() {
            const names = new Set(labelValues('tailgate_traces_kept_total', 'policy'));
            for (const name of (latest.state.rules ? latest.state.rules.policies : [])) names.add(name);
            return [...names];
          }
          function drawOverview(main) {
            const state = latest.state;
            const spans = now('tailgate_spans_received_total');
            const kept = now('tailgate_traces_kept_total') || 0, dropped = now('tailgate_traces_dropped_total') || 0;
            const keptRate = rate('tailgate_traces_kept_total'), droppedRate = rate('tailgate_traces_dropped_total');
            const decidedRate = keptRate == null ? null : keptRate + (droppedRate || 0);
            const bytesIn = now('tailgate_bytes_received_total') || 0, bytesKept = now('tailgate_kept_bytes_total') || 0;
            const buffer = now('tailgate_buffer_bytes') || 0, limit = now('tailgate_buffer_limit_bytes');
            const cards = el('div', { class: 'cards' },
              card('Spans in', perSecond(rate('tailgate_spans_received_total')), [count(spans), ' spans since start'],
                sparkline(series('tailgate_spans_received_total')), 'spans-in', spans),
              card('Traces decided', perSecond(decidedRate), ['kept ', perSecond(keptRate), ' · dropped ', perSecond(droppedRate)],
                sparkline(sumSeries([series('tailgate_traces_kept_total'), series('tailgate_traces_dropped_total')])), 'decided', kept + dropped),
              card('Kept', count(kept) + ' traces', [count(dropped), ' dropped · ', kept + dropped > 0 ? (100 * kept / (kept + dropped)).toFixed(1) + ' % kept' : '—'],
                sparkline(series('tailgate_traces_kept_total'), 200, 30, '#198754'), 'kept', kept),
              card('Storage saved', bytesIn > 0 ? (100 * (1 - bytesKept / bytesIn)).toFixed(1) + ' %' : '—',
                [bytes(bytesKept), ' kept of ', bytes(bytesIn), ' in', bytesKept > 0 ? ' (' + (bytesIn / bytesKept).toFixed(0) + '× less)' : ''],
                sparkline(series('tailgate_kept_bytes_total'), 200, 30, '#198754'), 'saving', bytesIn > 0 ? 1 - bytesKept / bytesIn : null),
              card('Buffer', bytes(buffer), [count(now('tailgate_buffer_traces')), ' traces · ', count(now('tailgate_buffer_spans')), ' spans',
                limit ? ' · limit ' + bytes(limit) : ''],
                limit ? el('div', { class: 'meter' + (buffer / limit > 0.8 ? ' hot' : '') }, meterBar(buffer / limit)) : null, 'buffer', buffer),
              rulesCard(state),
              labelValues('tailgate_budget_goal_bytes_per_second', 'policy').map(budgetCard));
            main.append(el('h1', { text: 'Overview' }),
              el('p', { class: 'muted' }, 'RED and service-graph metrics count every span before sampling; kept and dropped are whole-trace decisions.',
                state.dryRun ? el('span', { class: 'pill warn', text: ' dry run: everything goes to the sinks, tagged with its decision ' }) : null),
              cards);

            const rows = policies().map(policy => {
              const labels = { policy };
              return el('tr', { 'data-policy': policy },
                el('td', { text: policy }),
                el('td', { class: 'num', text: perSecond(rate('tailgate_traces_kept_total', labels)) }),
                el('td', { class: 'num', text: count(now('tailgate_traces_kept_total', labels) || 0) }),
                el('td', { class: 'num', text: bytes(now('tailgate_kept_bytes_total', labels) || 0) }),
                el('td', {}, sparkline(series('tailgate_traces_kept_total', labels), 200, 24, '#198754')));
            });
            rows.push(el('tr', { 'data-policy': '' },
              el('td', { class: 'muted', text: 'dropped' }),
              el('td', { class: 'num', text: perSecond(droppedRate) }),
              el('td', { class: 'num', text: count(dropped) }),
              el('td', { class: 'num', text: bytes(now('tailgate_dropped_bytes_total') || 0) }),
              el('td', {}, sparkline(series('tailgate_traces_dropped_total'), 200, 24, '#98a2b3'))));
            main.append(el('h2', { text: 'Kept and dropped, by policy' }),
              el('div', { class: 'panel' }, el('table', { id: 'policies' },
                el('thead', {}, el('tr', {}, el('th', { text: 'policy' }), el('th', { class: 'num', text: 'traces/s' }), el('th', { class: 'num', text: 'traces' }),
                  el('th', { class: 'num', text: 'bytes' }), el('th', { text: 'last 5 minutes' }))),
                el('tbody', {}, rows))));

            const lower = el('div', { class: 'row' });
            lower.append(el('div', {}, el('h2', { text: 'Sinks' }), sinksTable(state)));
            lower.append(el('div', {}, el('h2', { text: 'Kafka' }), lagTable()));
            main.append(lower);
            main.append(el('h2', { text: 'Recently kept traces (RED exemplars)' }), exemplarTable(state));
            const fidelity = fidelityTable();
            if (fidelity) main.append(el('h2', { text: 'How representative the kept traces are' }), fidelity);
          }
          function fidelityTable() {
            const services = labelValues('tailgate_sample_fidelity_kept_traces', 'service');
            if (!services.length) return null;
            const ratio = (value) => value == null ? el('span', { class: 'muted', text: '—' })
              : el('span', { class: Math.abs(value - 1) <= 0.1 ? 'pill ok' : 'pill warn', text: (value * 100).toFixed(0) + ' %' });
            const seconds = now('tailgate_sample_fidelity_window_seconds');
            return el('div', {},
              el('p', { class: 'muted', text: 'Per service over the last ' + (seconds ? Math.round(seconds) + ' s' : 'minutes') +
                ': what a backend holding only the kept traces would estimate (each weighted by its adjusted count: 1 for a must-keep, 1/p for a chance keep), as a share of what tailgate counted from every span. 100 % is exact.' }),
              el('div', { class: 'panel' }, el('table', { id: 'fidelity' },
                el('thead', {}, el('tr', {}, ['service', 'calls', 'errors', 'p50', 'p99', 'kept traces'].map((t, i) => el('th', { class: i > 0 ? 'num' : null, text: t })))),
                el('tbody', {}, services.map(service => {
                  const labels = { service };
                  const small = now('tailgate_sample_fidelity_sample_too_small', labels) === 1;
                  return el('tr', { 'data-service': service },
                    el('td', { text: service }),
                    el('td', { class: 'num' }, ratio(now('tailgate_sample_fidelity_calls_ratio', labels))),
                    el('td', { class: 'num' }, ratio(now('tailgate_sample_fidelity_errors_ratio', labels))),
                    el('td', { class: 'num' }, ratio(now('tailgate_sample_fidelity_latency_p50_ratio', labels))),
                    el('td', { class: 'num' }, ratio(now('tailgate_sample_fidelity_latency_p99_ratio', labels))),
                    el('td', { class: 'num' }, count(now('tailgate_sample_fidelity_kept_traces', labels)),
                      small ? [' ', el('span', { class: 'pill bad', text: 'too few' })] : null));
                })))));
          }
          function budgetCard(policy) {
            const labels = { policy };
            const goal = now('tailgate_budget_goal_bytes_per_second', labels) || 0;
            const kept = now('tailgate_budget_kept_bytes_per_second', labels) || 0;
            const exceeded = now('tailgate_budget_exceeded_bytes_per_second', labels) || 0;
            return el('div', { class: 'card', 'data-budget': policy },
              el('div', { class: 'label', text: 'Budget · ' + policy }),
              el('div', { class: 'value', 'data-value': kept, text: bytes(kept) + '/s' }),
              el('div', { class: 'sub' }, 'of ', bytes(goal), '/s · ', bytes(now('tailgate_budget_forecast_bytes_per_day', labels)), ' a day at this pace'),
              el('div', { class: 'sub' }, 'must-keeps ', bytes(now('tailgate_budget_must_keep_bytes_per_second', labels)), '/s · sampler ',
                bytes(now('tailgate_budget_sampler_bytes_per_second', labels)), '/s of its ', bytes(now('tailgate_budget_sampler_share_bytes_per_second', labels)), '/s'),
              exceeded > 0 ? el('div', { class: 'sub' }, el('span', { class: 'pill bad', text: 'must-keeps over the budget by ' + bytes(exceeded) + '/s' })) : null,
              goal > 0 ? el('div', { class: 'meter' + (kept > goal * 1.1 ? ' hot' : '') }, meterBar(kept / goal)) : null);
          }
          function meterBar(fraction) {
            const bar = el('div');
            bar.style.width = Math.min(100, Math.max(0, fraction * 100)).toFixed(1) + '%';
            return bar;
          }
          function rulesCard(state) {
            const rules = state.rules;
            const failures = now('tailgate_rules_reload_failures_total') || 0;
            const reloaded = now('tailgate_rules_last_reload_success_timestamp_seconds');
            return el('div', { class: 'card', id: 'rules-card' },
              el('div', { class: 'label', text: 'Rules' }),
              el('div', { class: 'value mono', text: rules ? (rules.hash || '—') : '—' }),
              el('div', { class: 'sub' }, rules && rules.path ? rules.path : 'built-in rules'),
              el('div', { class: 'sub' }, 'loaded ', reloaded ? ago(latest.time - reloaded) : '—', ' · ', count(failures), ' failed reloads'),
              rules && rules.lastError ? el('div', { class: 'sub error-text', text: 'last reload failed: ' + rules.lastError }) : null,
              el('div', { class: 'sub' }, state.dryRun ? el('span', { class: 'pill warn', text: 'dry run on' }) : el('span', { class: 'pill', text: 'dry run off' })));
          }
          function sinksTable(state) {
            if (!state.sinks.length) return el('p', { class: 'muted', text: 'No sink: kept traces are counted, not sent.' });
            return el('div', { class: 'panel' }, el('table', { id: 'sinks' },
              el('thead', {}, el('tr', {}, ['sink', 'state', 'delivered', 'errors', 'pending'].map((t, i) => el('th', { class: i > 1 ? 'num' : null, text: t })))),
              el('tbody', {}, state.sinks.map(sink => {
                const labels = { sink: sink.name };
                return el('tr', { 'data-sink': sink.name },
                  el('td', { text: sink.name }),
                  el('td', {}, sink.failing ? [el('span', { class: 'pill bad', text: 'failing' }), ' ', el('span', { class: 'error-text', text: sink.failing })]
                    : el('span', { class: 'pill ok', text: 'ok' })),
                  el('td', { class: 'num', text: count(now('tailgate_sink_traces_total', labels)) }),
                  el('td', { class: 'num', text: count(now('tailgate_sink_errors_total', labels)) }),
                  el('td', { class: 'num', text: count(now('tailgate_sink_pending_traces', labels)) }));
              }))));
          }
          function lagTable() {
            const lags = latest.samples.filter(s => s.name === 'tailgate_kafka_consumer_lag')
              .sort((a, b) => a.labels.topic.localeCompare(b.labels.topic) || Number(a.labels.partition) - Number(b.labels.partition));
            const assigned = now('tailgate_kafka_partitions_assigned'), paused = now('tailgate_kafka_partitions_paused');
            const head = el('p', { class: 'muted' }, count(assigned), ' partitions assigned · ', count(paused), ' paused (backpressure) · lag in messages');
            if (!lags.length) return el('div', {}, head);
            const max = Math.max(1, ...lags.map(s => s.value));
            return el('div', {}, head, el('div', { class: 'panel' }, el('table', { id: 'lag' },
              el('thead', {}, el('tr', {}, el('th', { text: 'topic' }), el('th', { class: 'num', text: 'partition' }), el('th', { class: 'num', text: 'lag' }), el('th', { text: '' }))),
              el('tbody', {}, lags.map(s => el('tr', {},
                el('td', { text: s.labels.topic }), el('td', { class: 'num', text: s.labels.partition }), el('td', { class: 'num', text: count(s.value) }),
                el('td', {}, el('div', { class: 'meter' }, meterBar(s.value / max)))))))));
          }
          function exemplarTable(state) {
            if (!latest.exemplars.length) return el('p', { class: 'muted', text: 'None yet: exemplars come with kept traces.' });
            return el('div', { class: 'panel' }, el('table', { id: 'exemplars' },
              el('thead', {}, el('tr', {}, ['time', 'service', 'span', 'status', 'duration', 'trace'].map((t, i) => el('th', { class: i === 4 ? 'num' : null, text: t })))),
              el('tbody', {}, latest.exemplars.map(x => el('tr', {},
                el('td', { class: 'mono', text: clock(x.time) }),
                el('td', {}, el('span', { class: 'pill', text: x.service })),
                el('td', { text: x.spanName }),
                el('td', {}, x.statusCode === 'STATUS_CODE_ERROR' ? el('span', { class: 'pill bad', text: 'error' }) : el('span', { class: 'muted', text: x.statusCode.replace('STATUS_CODE_', '').toLowerCase() })),
                el('td', { class: 'num', text: millis(x.seconds * 1000) }),
                el('td', { class: 'mono' }, state.store ? traceLink(x.traceID, x.traceID) : x.traceID))))));
          }

          // ---- rules --------------------------------------------------------------------------
          function drawRules(main) {
            const state = latest.state, rules = state.rules;
            main.append(el('h1', { text: 'Rules' }));
            if (!rules) { main.append(el('p', { class: 'muted', text: 'This process has no sampling rules.' })); return; }
            main.append(el('p', { class: 'muted' }, rules.path ? ['file ', el('span', { class: 'mono', text: rules.path })] : 'built-in rules',
              ' · hash ', el('span', { class: 'mono', text: rules.hash || '—' }), state.dryRun ? ' · dry run' : ''));
            if (rules.lastError) main.append(el('p', { class: 'notice error-text', text: 'The last reload failed; the rules below still apply. ' + rules.lastError }));
            const columns = ['sampled', 'not_sampled', 'dropped', 'inverted_sampled', 'inverted_not_sampled'];
            main.append(el('h2', { text: 'Each policy\'s own decisions' }),
              el('p', { class: 'muted', text: 'Per trace evaluated, before precedence combines them (drop policies first, then any sampled). Kept is what the policy was credited with.' }),
              el('div', { class: 'panel' }, el('table', { id: 'policy-decisions' },
                el('thead', {}, el('tr', {}, el('th', { text: 'policy' }), el('th', { class: 'num', text: 'evaluated' }),
                  columns.map(c => el('th', { class: 'num', text: c.replace(/_/g, ' ') })),
                  el('th', { class: 'num', text: 'kept traces' }), el('th', { class: 'num', text: 'kept bytes' }))),
                el('tbody', {}, policies().map(policy => {
                  const values = columns.map(decision => now('tailgate_policy_decisions_total', { policy, decision }) || 0);
                  return el('tr', { 'data-policy': policy },
                    el('td', { text: policy }),
                    el('td', { class: 'num', text: count(values.reduce((a, b) => a + b, 0)) }),
                    values.map(v => el('td', { class: 'num', text: count(v) })),
                    el('td', { class: 'num', text: count(now('tailgate_traces_kept_total', { policy }) || 0) }),
                    el('td', { class: 'num', text: bytes(now('tailgate_kept_bytes_total', { policy }) || 0) }));
                })))));
            if (state.samplers.length) {
              main.append(el('h2', { text: 'Adaptive samplers' }));
              const grid = el('div', { class: 'row' });
              for (const sampler of state.samplers) {
                grid.append(el('div', { class: 'panel' },
                  el('table', { 'data-sampler': sampler.policy },
                    el('thead', {}, el('tr', {}, el('th', { text: sampler.policy + ' — ' + count(sampler.keys) + ' keys' }), el('th', { class: 'num', text: 'keeps 1 in' }))),
                    el('tbody', {}, sampler.rates.length ? sampler.rates.map(r => el('tr', {}, el('td', { class: 'mono', text: r.key }), el('td', { class: 'num', text: count(r.rate) })))
                      : el('tr', {}, el('td', { class: 'muted', text: 'no keys seen yet' }), el('td'))))));
              }
              main.append(grid);
            }
            main.append(el('h2', { text: 'The rule file' }), el('pre', { class: 'source', id: 'rule-source', text: rules.source || '(built in)' }));
          }

          // ---- traces: search -----------------------------------------------------------------
          function needsStore(main) {
            main.append(el('p', { class: 'notice' }, 'Search needs the embedded store: start tailgate with ', el('span', { class: 'mono', text: '--data DIR' }),
              '. Kept traces go to ', latest && latest.state.sinks.length ? latest.state.sinks.map(s => s.name).join(', ') : 'no sink',
              '; open them in Grafana from there.'));
          }
          function quote(text) { return '"' + text.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"'; }
          function drawTraces(main, parameters) {
            main.append(el('h1', { text: 'Traces' }));
            if (!latest) { main.append(el('p', { class: 'muted', text: 'Waiting for tailgate…' })); return; }
            if (!latest.state.store) { needsStore(main); return; }
            const service = el('select', { name: 'service', id: 'f-service' }, el('option', { value: '', text: 'any service' }));
            const name = el('input', { name: 'name', id: 'f-name', placeholder: 'span name', list: 'f-names', value: parameters.get('name') || '' });
            const names = el('datalist', { id: 'f-names' });
            const status = el('select', { name: 'status', id: 'f-status' }, ['', 'error', 'ok', 'unset'].map(v => el('option', { value: v, text: v || 'any status' })));
            status.value = parameters.get('status') || '';
            const min = el('input', { name: 'min', id: 'f-min', placeholder: 'e.g. 250ms, 2s', value: parameters.get('min') || '' });
            const limit = el('select', { name: 'limit', id: 'f-limit' }, ['20', '100', '500'].map(v => el('option', { value: v, text: v + ' traces' })));
            limit.value = parameters.get('limit') || '100';
            const traceql = el('input', { name: 'q', id: 'f-q', placeholder: '{ span.http.route = "/feed" && duration > 200ms }', value: parameters.get('q') || '', class: 'mono' });
            const form = el('form', { class: 'search', id: 'search-form' },
              el('label', {}, 'Service', service), el('label', {}, 'Span name', name, names), el('label', {}, 'Status', status),
              el('label', {}, 'Trace at least', min), el('label', {}, 'Show', limit),
              el('label', { class: 'wide' }, 'or TraceQL (used instead of the fields above, with the duration and the limit)', traceql),
              el('div', {}, el('button', { type: 'submit', id: 'f-submit', text: 'Search' })));
            form.addEventListener('submit', (event) => {
              event.preventDefault();
              const next = new URLSearchParams();
              for (const [k, input] of [['service', service], ['name', name], ['status', status], ['min', min], ['q', traceql], ['limit', limit]]) {
                if (input.value.trim()) next.set(k, input.value.trim());
              }
              next.set('t', String(Date.now()));
              location.hash = '#/traces?' + next.toString();
            });
            const results = el('div', { id: 'results' });
            main.append(form, results);
            const searching = [...parameters.keys()].length > 0;
            if (!searching) results.append(el('p', { class: 'muted', text: 'Pick what to look for; newest traces first.' }));
            // One request at a time: the store answers one search at a time (429 to the next).
            (async () => {
              await fillOptions(service, names, parameters.get('service') || '');
              if (searching) await search(results, parameters);
            })();
          }
          async function fillOptions(service, names, selected) {
            try {
              if (!serviceValues) {
                const response = await fetchPatiently('/api/search/tag/service.name/values');
                serviceValues = response.ok ? (await response.json()).tagValues : [];
              }
              for (const value of serviceValues) service.append(el('option', { value, text: value }));
              if (selected && !serviceValues.includes(selected)) service.append(el('option', { value: selected, text: selected }));
              service.value = selected;
              const response = await fetchPatiently('/api/search/tag/name/values');
              if (response.ok) for (const value of (await response.json()).tagValues.slice(0, 500)) names.append(el('option', { value }));
            } catch (error) { /* the form works without suggestions */ }
          }
          /** A fetch that waits and tries again while the store is busy with another search (429). */
          async function fetchPatiently(url) {
            for (let attempt = 0; ; attempt++) {
              const response = await fetch(url);
              if (response.status !== 429 || attempt >= 8) return response;
              await new Promise(resolve => setTimeout(resolve, 250 * (attempt + 1)));
            }
          }
          function queryOf(parameters) {
            const q = (parameters.get('q') || '').trim();
            if (q) return q;
            const conditions = [];
            if (parameters.get('service')) conditions.push('resource.service.name = ' + quote(parameters.get('service')));
            if (parameters.get('name')) conditions.push('name = ' + quote(parameters.get('name')));
            if (parameters.get('status')) conditions.push('status = ' + parameters.get('status'));
            return conditions.length ? '{ ' + conditions.join(' && ') + ' }' : '';
          }
          async function search(results, parameters) {
            const request = new URLSearchParams();
            const q = queryOf(parameters);
            if (q) request.set('q', q);
            if (parameters.get('min')) request.set('minDuration', parameters.get('min'));
            request.set('limit', parameters.get('limit') || '100');
            results.replaceChildren(el('p', { class: 'muted' }, 'Searching ', el('span', { class: 'mono', text: q || 'every trace' }), '…'));
            let answer;
            try {
              const response = await fetchPatiently('/api/search?' + request.toString());
              const body = await response.text();
              if (!response.ok) { results.replaceChildren(el('p', { class: 'notice error-text', id: 'search-error', text: body.trim() || 'HTTP ' + response.status })); return; }
              answer = JSON.parse(body);
            } catch (error) {
              results.replaceChildren(el('p', { class: 'notice error-text', id: 'search-error', text: 'Search failed: ' + error.message })); return;
            }
            const traces = answer.traces.slice().sort((a, b) => compareNanos(b.startTimeUnixNano, a.startTimeUnixNano));
            const metrics = answer.metrics || {};
            results.replaceChildren(
              el('p', { class: 'muted', id: 'search-summary', 'data-count': traces.length },
                count(traces.length), ' traces', ' · ', el('span', { class: 'mono', text: q || 'every trace' }),
                ' · inspected ', count(metrics.inspectedTraces), ' traces in ', count(metrics.inspectedBlocks), ' blocks',
                metrics.partial ? el('span', { class: 'pill warn', text: ' partial: the time budget ran out ' }) : null),
              traces.length ? el('div', { class: 'panel' }, el('table', { id: 'search-results' },
                el('thead', {}, el('tr', {}, ['started', 'root service', 'root span', 'duration', 'matched spans', 'trace'].map((t, i) => el('th', { class: i === 3 || i === 4 ? 'num' : null, text: t })))),
                el('tbody', {}, traces.map(t => el('tr', { 'data-trace-id': t.traceID },
                  el('td', { class: 'mono', text: clock(Number(BigInt(t.startTimeUnixNano) / 1000000n) / 1000) }),
                  el('td', {}, t.rootServiceName ? el('span', { class: 'pill', text: t.rootServiceName }) : el('span', { class: 'muted', text: '(no root)' })),
                  el('td', { text: t.rootTraceName || '' }),
                  el('td', { class: 'num', text: millis(t.durationMs) }),
                  el('td', { class: 'num', text: count(((t.spanSets || [])[0] || {}).matched || 0) }),
                  el('td', { class: 'mono' }, traceLink(t.traceID, t.traceID)))))))
                : el('p', { class: 'muted', text: 'No stored trace matches.' }));
          }
          function compareNanos(a, b) {
            a = String(a || '0'); b = String(b || '0');
            return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
          }

          // ---- traces: the waterfall ----------------------------------------------------------
          function attributeValue(value) {
            if (value == null) return '';
            if ('stringValue' in value) return value.stringValue;
            if ('intValue' in value) return String(value.intValue);
            if ('doubleValue' in value) return String(value.doubleValue);
            if ('boolValue' in value) return String(value.boolValue);
            if ('bytesValue' in value) return 'base64:' + value.bytesValue;
            if ('arrayValue' in value) return '[' + (value.arrayValue.values || []).map(attributeValue).map(v => JSON.stringify(v)).join(', ') + ']';
            if ('kvlistValue' in value) return '{' + (value.kvlistValue.values || []).map(kv => kv.key + ': ' + JSON.stringify(attributeValue(kv.value))).join(', ') + '}';
            return '';
          }
          function attributes(list) { return (list || []).map(kv => [kv.key, attributeValue(kv.value)]); }
          const kinds = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
          function flatten(resourceSpans) {
            const spans = [];
            for (const rs of resourceSpans || []) {
              const resource = attributes(rs.resource && rs.resource.attributes);
              const service = (resource.find(([k]) => k === 'service.name') || [, 'unknown_service'])[1];
              for (const ss of rs.scopeSpans || rs.instrumentationLibrarySpans || []) {
                for (const span of ss.spans || []) {
                  spans.push({
                    id: span.spanId || '', parent: span.parentSpanId || '', name: span.name || '', service, resource,
                    kind: kinds[span.kind || 0] || String(span.kind), start: BigInt(span.startTimeUnixNano || '0'), end: BigInt(span.endTimeUnixNano || '0'),
                    status: span.status || {}, attributes: attributes(span.attributes), events: span.events || [], traceState: span.traceState || '',
                    scope: ss.scope ? (ss.scope.name || '') : '',
                  });
                }
              }
            }
            return spans;
          }
          function ordered(spans) {
            const byID = new Map(spans.map(s => [s.id, s]));
            const children = new Map();
            const roots = [];
            for (const span of spans) {
              if (span.parent && byID.has(span.parent) && span.parent !== span.id) {
                if (!children.has(span.parent)) children.set(span.parent, []);
                children.get(span.parent).push(span);
              } else {
                span.orphan = !!span.parent;
                roots.push(span);
              }
            }
            const byStart = (a, b) => a.start < b.start ? -1 : a.start > b.start ? 1 : 0;
            const rows = [], seen = new Set();
            const visit = (span, depth) => {
              if (seen.has(span)) return;
              seen.add(span);
              rows.push({ span, depth });
              for (const child of (children.get(span.id) || []).sort(byStart)) visit(child, depth + 1);
            };
            for (const root of roots.sort((a, b) => (a.orphan - b.orphan) || byStart(a, b))) visit(root, 0);
            for (const span of spans) if (!seen.has(span)) visit(span, 0); // a parent cycle: shown flat
            return rows;
          }
          async function drawTrace(main, id) {
            main.append(el('p', {}, link('#/traces', '← Traces')));
            if (!latest) { main.append(el('p', { class: 'muted', text: 'Waiting for tailgate…' })); return; }
            if (!latest.state.store) { needsStore(main); return; }
            if (!/^[0-9a-fA-F]{1,32}$/.test(id)) { main.append(el('p', { class: 'notice error-text', text: 'Not a trace id: ' + id })); return; }
            const body = el('div', {}, el('p', { class: 'muted', text: 'Loading trace ' + id + '…' }));
            main.append(body);
            let trace;
            try {
              const response = await fetch('/api/v2/traces/' + id);
              if (!response.ok) { body.replaceChildren(el('p', { class: 'notice error-text', id: 'trace-error', text: (await response.text()).trim() || 'HTTP ' + response.status })); return; }
              trace = await response.json();
            } catch (error) {
              body.replaceChildren(el('p', { class: 'notice error-text', id: 'trace-error', text: 'Loading the trace failed: ' + error.message })); return;
            }
            const spans = flatten((trace.trace || trace).resourceSpans || trace.batches);
            if (!spans.length) { body.replaceChildren(el('p', { class: 'notice', text: 'The trace has no spans.' })); return; }
            body.replaceChildren(traceHeader(id, spans), waterfall(spans));
          }
          function traceHeader(id, spans) {
            const root = spans.find(s => !s.parent);
            let start = spans[0].start, end = spans[0].end;
            for (const s of spans) { if (s.start < start) start = s.start; if (s.end > end) end = s.end; }
            const attribute = (span, key) => { const found = span.attributes.find(([k]) => k === key); return found ? found[1] : null; };
            const distinct = (key) => [...new Set(spans.map(s => attribute(s, key)).filter(v => v != null))];
            const policiesKept = distinct('tailgate.policy'), rates = distinct('SampleRate');
            const thresholds = [...new Set(spans.map(s => {
              const ot = s.traceState.split(',').map(e => e.trim()).find(e => e.startsWith('ot='));
              const th = ot ? ot.slice(3).split(';').find(p => p.startsWith('th:')) : null;
              return th ? th.slice(3) : null;
            }).filter(v => v != null))];
            const stamped = spans.find(s => attribute(s, 'tailgate.trace.complete') != null);
            const orphans = stamped ? Number(attribute(stamped, 'tailgate.trace.orphan_spans') || 0) : 0;
            const late = spans.filter(s => attribute(s, 'tailgate.late') === 'true').length;
            const whole = !stamped || attribute(stamped, 'tailgate.trace.complete') === 'true';
            const errors = spans.filter(s => s.status.code === 2).length;
            const fact = (k, ...v) => el('span', { class: 'fact' }, el('span', { class: 'k', text: k }), ...v);
            const services = new Set(spans.map(s => s.service));
            let wholeness;
            if (whole) wholeness = el('span', { class: 'pill ok', id: 'trace-whole', text: 'whole' });
            else {
              const reasons = [];
              if (!spans.some(s => !s.parent)) reasons.push('no root span');
              if (orphans > 0) reasons.push(orphans + (orphans === 1 ? ' span names a parent' : ' spans name a parent') + ' that never came');
              wholeness = el('span', { class: 'pill warn', id: 'trace-whole', text: 'incomplete: ' + (reasons.join(', ') || 'stamped incomplete') });
            }
            return el('div', {},
              el('h1', {}, root ? [el('span', { id: 'trace-root-service', text: root.service }), ': ', el('span', { id: 'trace-root-name', text: root.name })] : '(no root span)'),
              el('div', { class: 'trace-head', id: 'trace-head' },
                fact('trace', el('span', { class: 'mono', id: 'trace-id', text: id })),
                fact('duration', millis(Number(end - start) / 1e6)),
                fact('spans', el('span', { id: 'trace-span-count', text: String(spans.length) })),
                fact('services', String(services.size)),
                fact('errors', errors ? el('span', { class: 'pill bad', text: String(errors) }) : '0'),
                fact('kept by', policiesKept.length ? policiesKept.map(p => el('span', { class: 'pill', 'data-policy': p, text: p })) : el('span', { class: 'muted', text: 'unknown' })),
                fact('th', el('span', { class: 'mono', id: 'trace-th', text: thresholds.length ? thresholds.join(', ') : '— (kept whole, 100 %)' })),
                fact('SampleRate', el('span', { id: 'trace-sample-rate', text: rates.length ? rates.join(', ') : '1' })),
                fact('', wholeness),
                late ? fact('late spans', el('span', { class: 'pill warn', text: String(late) })) : null));
          }
          function waterfall(spans) {
            let start = spans[0].start, end = spans[0].end;
            for (const s of spans) { if (s.start < start) start = s.start; if (s.end > end) end = s.end; }
            const span = Number(end - start) || 1;
            const position = (t) => Number(t - start) / span * 100;
            const ticks = el('div', { class: 'ticks' });
            for (let i = 0; i <= 4; i++) {
              const tick = el('span', { text: millis(span / 1e6 * i / 4) });
              tick.style.left = (i * 25) + '%';
              ticks.append(tick);
            }
            const box = el('div', { class: 'waterfall', id: 'waterfall' }, el('div', { class: 'wf-axis' }, el('div', { class: 'wf-label', text: 'service · span' }), ticks));
            for (const { span: s, depth } of ordered(spans)) {
              const label = el('div', { class: 'wf-label' });
              label.style.paddingLeft = (8 + depth * 16) + 'px';
              const chip = el('span', { class: 'svc', text: s.service, title: s.service });
              chip.style.backgroundColor = serviceColour(s.service);
              label.append(chip, el('span', { class: 'name', text: s.name, title: s.name }));
              if (s.status.code === 2) label.append(el('span', { class: 'err', title: 'status error', text: '!' }));
              if (s.orphan) label.append(el('span', { class: 'orphan', text: 'parent missing' }));
              const bar = el('div', { class: 'wf-bar' + (s.status.code === 2 ? ' error' : '') });
              const left = position(s.start), width = Math.max(0, position(s.end) - left);
              bar.style.left = left.toFixed(3) + '%';
              bar.style.width = width.toFixed(3) + '%';
              bar.style.backgroundColor = serviceColour(s.service);
              const duration = el('span', { class: 'wf-dur', text: millis(Number(s.end - s.start) / 1e6) });
              if (left + width > 80) { duration.style.right = (100 - left + 0.5).toFixed(3) + '%'; } else { duration.style.left = (left + width + 0.5).toFixed(3) + '%'; }
              const row = el('div', {
                class: 'wf-row', role: 'button', tabindex: 0,
                'data-span-id': s.id, 'data-parent-id': s.parent, 'data-depth': depth, 'data-service': s.service, 'data-error': s.status.code === 2 ? 'true' : 'false',
              }, label, el('div', { class: 'wf-track' }, bar, duration));
              let detail = null;
              const toggle = () => {
                if (detail) { detail.remove(); detail = null; row.classList.remove('open'); return; }
                detail = spanDetail(s, start);
                row.after(detail);
                row.classList.add('open');
              };
              row.addEventListener('click', toggle);
              row.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); } });
              box.append(row);
            }
            return box;
          }
          function spanDetail(s, traceStart) {
            const rows = [
              ['service', s.service], ['span', s.name], ['kind', s.kind], ['span id', s.id], ['parent id', s.parent || '(root)'],
              ['starts at', millis(Number(s.start - traceStart) / 1e6)], ['duration', millis(Number(s.end - s.start) / 1e6)],
              ['status', ['unset', 'ok', 'error'][s.status.code || 0] + (s.status.message ? ': ' + s.status.message : '')],
            ];
            if (s.traceState) rows.push(['tracestate', s.traceState]);
            if (s.scope) rows.push(['scope', s.scope]);
            const table = (title, entries) => entries.length ? el('div', {}, el('h2', { text: title }), el('table', {}, el('tbody', {},
              entries.map(([k, v]) => el('tr', {}, el('td', { class: 'mono', text: k }), el('td', { class: 'mono', text: v })))))) : null;
            const events = s.events.map(e => el('tr', {},
              el('td', { class: 'mono', text: millis(Number(BigInt(e.timeUnixNano || '0') - traceStart) / 1e6) }),
              el('td', { class: 'mono' }, el('strong', { text: e.name || '' }), attributes(e.attributes).map(([k, v]) => [el('br'), k + ' = ' + v]))));
            return el('div', { class: 'wf-detail', 'data-detail-for': s.id },
              table('Span', rows), table('Attributes', s.attributes), table('Resource', s.resource),
              events.length ? el('div', {}, el('h2', { text: 'Events' }), el('table', {}, el('tbody', {}, events))) : null);
          }

          // ---- service graph ------------------------------------------------------------------
          function drawGraph(main) {
            main.append(el('h1', { text: 'Service graph' }));
            const note = el('p', { class: 'muted' });
            main.append(note);
            const edges = new Map();
            for (const s of latest.samples) {
              if (s.name !== 'traces_service_graph_request_total') continue;
              const key = JSON.stringify([s.labels.client || '', s.labels.server || '']);
              if (!edges.has(key)) edges.set(key, { client: s.labels.client || '', server: s.labels.server || '' });
            }
            if (!edges.size) { main.append(el('p', { class: 'muted', text: 'No edges yet: they appear when a client span meets its server span.' })); return; }
            const list = [...edges.values()].map(e => {
              const labels = { client: e.client, server: e.server };
              const requests = rate('traces_service_graph_request_total', labels, 60), failed = rate('traces_service_graph_request_failed_total', labels, 60);
              return { ...e, requests, failed, total: now('traces_service_graph_request_total', labels) || 0, failedTotal: now('traces_service_graph_request_failed_total', labels) || 0 };
            });
            // Rates while requests flow; the totals since start when nothing moved in the last minute.
            const live = list.some(e => (e.requests || 0) > 0);
            for (const e of list) { e.shown = live ? e.requests || 0 : e.total; e.shownFailed = live ? e.failed || 0 : e.failedTotal; }
            const amount = (n) => live ? perSecond(n) : count(n);
            note.textContent = 'From traces_service_graph_request_total (every span, before sampling): ' +
              (live ? 'requests and failed requests per second over the last minute.' : 'requests since start (none in the last minute).');
            const nodes = new Map();
            const node = (name) => { if (!nodes.has(name)) nodes.set(name, { name, depth: 0, in: 0, failedIn: 0 }); return nodes.get(name); };
            for (const e of list) { node(e.client); node(e.server).in++; }
            // Longest path from the roots, bounded (a cycle cannot push a node past the node count).
            for (let round = 0; round < nodes.size; round++) {
              let changed = false;
              for (const e of list) {
                const a = nodes.get(e.client), b = nodes.get(e.server);
                if (a !== b && b.depth < a.depth + 1 && a.depth + 1 < nodes.size) { b.depth = a.depth + 1; changed = true; }
              }
              if (!changed) break;
            }
            for (const e of list) {
              const n = nodes.get(e.server);
              n.requests = (n.requests || 0) + e.shown;
              n.failed = (n.failed || 0) + e.shownFailed;
            }
            // A node is marked failing when at least 1 % of the requests it serves fail.
            for (const n of nodes.values()) n.failing = n.requests > 0 && n.failed / n.requests >= 0.01;
            const columns = [];
            for (const n of [...nodes.values()].sort((a, b) => a.name.localeCompare(b.name))) (columns[n.depth] = columns[n.depth] || []).push(n);
            const W = 170, H = 46, GX = 100, GY = 30, PAD = 24;
            const height = PAD * 2 + Math.max(...columns.map(c => (c || []).length)) * (H + GY) - GY;
            const width = PAD * 2 + columns.length * (W + GX) - GX;
            columns.forEach((column, x) => (column || []).forEach((n, y) => {
              const offset = (height - PAD * 2 - (column.length * (H + GY) - GY)) / 2;
              n.x = PAD + x * (W + GX); n.y = PAD + offset + y * (H + GY);
            }));
            const picture = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, id: 'service-graph', role: 'img', 'aria-label': 'service graph' },
              svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' },
                svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#8fa3c7' }))));
            const maxRate = Math.max(1e-9, ...list.map(e => e.shown));
            for (const e of list) {
              const a = nodes.get(e.client), b = nodes.get(e.server);
              const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
              const forward = x2 > x1;
              const d = forward ? `M ${x1} ${y1} C ${x1 + GX / 2} ${y1}, ${x2 - GX / 2} ${y2}, ${x2} ${y2}`
                : `M ${a.x + W / 2} ${a.y + H} C ${a.x + W / 2} ${a.y + H + 60}, ${b.x + W / 2} ${b.y + H + 60}, ${b.x + W / 2} ${b.y + H}`;
              const share = e.shown ? e.shownFailed / e.shown : 0;
              const failing = share >= 0.01;
              picture.append(svg('path', { d, class: 'edge' + (failing ? ' failing' : ''), 'stroke-width': (1 + 3 * e.shown / maxRate).toFixed(2), 'marker-end': 'url(#arrow)' },
                svg('title', {}, e.client + ' → ' + e.server)));
              const lx = forward ? (x1 + x2) / 2 : (a.x + b.x + W) / 2, ly = forward ? (y1 + y2) / 2 - 6 : Math.max(a.y, b.y) + H + 40;
              picture.append(svg('text', { x: lx, y: ly, 'text-anchor': 'middle', class: 'edge-label' + (failing ? ' failing' : '') },
                amount(e.shown) + (failing ? ' · ' + (100 * share).toFixed(1) + ' % failed' : '')));
            }
            for (const n of nodes.values()) {
              const label = n.name.length > 24 ? n.name.slice(0, 23) + '…' : n.name;
              const served = n.requests ? amount(n.requests) + ' in' + (n.failed ? ' · ' + (100 * n.failed / n.requests).toFixed(1) + ' % failed' : '') : 'calls only';
              const g = svg('g', { class: 'node' + (n.failing ? ' failing' : ''), transform: `translate(${n.x},${n.y})`, 'data-service': n.name },
                svg('title', {}, n.name),
                svg('rect', { width: W, height: H, rx: 8 }),
                svg('rect', { width: 6, height: H, rx: 3, fill: serviceColour(n.name), stroke: 'none' }),
                svg('text', { x: 14, y: 19 }, label),
                svg('text', { x: 14, y: 36, class: 'sub' }, served));
              picture.append(g);
            }
            main.append(el('div', { class: 'graph' }, picture));
            main.append(el('h2', { text: 'Edges' }), el('div', { class: 'panel' }, el('table', { id: 'edges' },
              el('thead', {}, el('tr', {}, ['client', 'server', 'requests/s', 'failed/s', 'requests', 'failed'].map((t, i) => el('th', { class: i > 1 ? 'num' : null, text: t })))),
              el('tbody', {}, list.sort((a, b) => a.client.localeCompare(b.client) || a.server.localeCompare(b.server)).map(e => el('tr', {},
                el('td', { text: e.client }), el('td', { text: e.server }),
                el('td', { class: 'num', text: perSecond(e.requests) }), el('td', { class: 'num', text: perSecond(e.failed) }),
                el('td', { class: 'num', text: count(e.total) }), el('td', { class: 'num', text: count(e.failedTotal) })))))));
          }

          navigate();
          poll();
        })();
        """#
}
