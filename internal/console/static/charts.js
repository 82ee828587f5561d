// The console's live charts: the last 15 minutes of GET /v1/admin/metrics,
// drawn with uPlot (vendor/uplot, loaded by index.html as the global
// uPlot). A null in the API's series is a gap in the line: an edge that
// did not answer is shown as missing, never as quiet.

const COLORS = ["#1d4ed8", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d", "#4d7c0f", "#475569"];
const MAX_REFRESH = 5000; // the page asks at least every 5 s, as often as ingest samples when that is faster
const MIN_REFRESH = 1000;

// Whole-number steps for the axes of counts: no "0.5 connections".
const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

const num = (v, digits = 2) => (v === null || v === undefined ? "–" : Number(v.toFixed(digits)).toLocaleString());

// CHARTS says, per chart, how to read its lines from the API's answer.
const CHARTS = [
  {
    id: "chart-connections",
    title: "Connections by edge and transport",
    unit: "open",
    lines: (m) => m.connections.map((l) => ({ label: `${l.edge} ${l.transport}`, values: l.values })),
    digits: 0,
  },
  {
    id: "chart-messages",
    title: "Messages per second",
    unit: "msg/s",
    lines: (m) => [{ label: "stored by ingest", values: m.messagesIn }, ...m.messagesOut.map((l) => ({ label: `delivered by ${l.edge}`, values: l.values }))],
  },
  {
    id: "chart-latency",
    title: "Publish latency (ingest → JetStream ack)",
    unit: "ms",
    lines: (m) => ["p50", "p95", "p99"].map((p) => ({ label: p, values: m.publishLatency[p].map((v) => (v === null ? null : v * 1000)) })),
    digits: 3,
  },
  {
    id: "chart-slow",
    title: "Slow clients closed",
    unit: "per sample",
    lines: (m) => m.slowClientsClosed.map((l) => ({ label: l.edge, values: l.values })),
    digits: 0,
  },
  {
    id: "chart-killed",
    title: "Sessions killed (blacklist)",
    unit: "per sample",
    lines: (m) => m.sessionsKilled.map((l) => ({ label: l.edge, values: l.values })),
    digits: 0,
  },
];

function chartHeight() {
  return window.innerWidth <= 480 ? 150 : 170;
}

function options(spec, lines, width) {
  return {
    width,
    height: chartHeight(),
    cursor: { drag: { x: false, y: false } },
    legend: { live: true },
    scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
    axes: [
      { stroke: "#5b6472", grid: { stroke: "#eceef2" }, ticks: { stroke: "#d9dde3" } },
      { stroke: "#5b6472", grid: { stroke: "#eceef2" }, ticks: { stroke: "#d9dde3" }, size: 48, label: spec.unit, labelSize: 14, ...(spec.digits === 0 ? { incrs: WHOLE } : {}) },
    ],
    series: [
      { label: "time" },
      ...lines.map((l, i) => ({
        label: l.label,
        stroke: COLORS[i % COLORS.length],
        width: 1.5,
        spanGaps: false,
        points: { size: 4 },
        value: (u, v) => num(v, spec.digits ?? 2),
      })),
    ],
  };
}

// Charts keeps the five charts of the Charts panel up to date.
export class Charts {
  constructor(root, api) {
    this.root = root;
    this.api = api;
    this.timer = null;
    this.plots = {}; // id -> {plot, key}
    this.refresh = MAX_REFRESH;
    this.run = 0; // which start() a pending tick belongs to
    for (const spec of CHARTS) {
      const fig = document.createElement("figure");
      fig.className = "chart";
      fig.id = spec.id;
      const cap = document.createElement("figcaption");
      cap.textContent = spec.title;
      const box = document.createElement("div");
      box.className = "plot";
      fig.append(cap, box);
      root.append(fig);
    }
    // The sixth cell: each edge's state, so that a silent one is named.
    const fig = document.createElement("figure");
    fig.className = "chart";
    fig.id = "chart-edges";
    const cap = document.createElement("figcaption");
    cap.textContent = "Edges";
    const wrap = document.createElement("div");
    wrap.className = "scroll";
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const h of ["Edge", "State", "Connections", "Last answer"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.append(th);
    }
    table.createTBody();
    wrap.append(table);
    fig.append(cap, wrap);
    root.append(fig);
    this.edgeRows = table.tBodies[0];
    // Each chart follows its box's width: the grid decides it (one, two
    // or three columns), and so does rotating a phone.
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(root);
  }

  start() {
    this.stop();
    const run = ++this.run;
    const tick = async () => {
      try {
        await this.load();
      } catch {
        // load says what went wrong in the panel; the next tick tries again
      }
      // A tick that was waiting for its answer across a log-out (and
      // maybe a new log-in) ends here: only the latest start() goes on.
      if (run === this.run && this.timer !== null) this.timer = setTimeout(tick, this.refresh);
    };
    this.timer = setTimeout(tick, 0);
  }

  stop() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  async load() {
    const status = document.getElementById("charts-status");
    let m;
    try {
      m = await this.api("GET", "/v1/admin/metrics");
    } catch (e) {
      status.textContent = `Cannot read the charts: ${e.message}`;
      status.dataset.state = "error";
      throw e;
    }
    this.refresh = Math.min(MAX_REFRESH, Math.max(MIN_REFRESH, m.intervalSeconds * 1000));
    this.draw(m);
    const n = m.t.length;
    this.root.dataset.samples = String(n);
    const silent = m.answered.filter((l) => n > 0 && l.values[n - 1] === null).map((l) => l.edge);
    this.drawEdges(m);
    const span = n ? m.t[n - 1] - m.t[0] : 0;
    const covered = span < 120 ? `${Math.round(span)}s` : `${Math.round(span / 60)} minutes`;
    let text = n
      ? `${n} samples, one every ${m.intervalSeconds}s, covering ${covered} of the ${m.windowSeconds / 60}-minute window; ${m.edges.length} edge(s) seen.`
      : `Waiting for the first samples (ingest takes one every ${m.intervalSeconds}s).`;
    if (silent.length) text += ` Not answering now: ${silent.join(", ")} (a gap in their lines).`;
    status.textContent = text;
    status.dataset.state = silent.length ? "error" : "";
  }

  draw(m) {
    for (const spec of CHARTS) {
      const lines = spec.lines(m);
      const fig = document.getElementById(spec.id);
      const box = fig.querySelector(".plot");
      const data = [m.t, ...lines.map((l) => l.values)];
      // How many values each chart shows (not null), for tests and for
      // anyone reading the page's DOM.
      fig.dataset.series = String(lines.length);
      fig.dataset.points = String(lines.reduce((a, l) => a + l.values.filter((v) => v !== null).length, 0));
      const key = lines.map((l) => l.label).join("\n");
      const cur = this.plots[spec.id];
      if (cur && cur.key === key) {
        cur.plot.setData(data);
        continue;
      }
      // Another set of lines (an edge or a transport came or went): uPlot
      // draws a fixed set of series, so the chart is made anew.
      if (cur) cur.plot.destroy();
      box.replaceChildren();
      if (!lines.length) {
        const p = document.createElement("p");
        p.className = "muted empty";
        p.textContent = "nothing in the last 15 minutes";
        box.append(p);
        delete this.plots[spec.id];
        continue;
      }
      this.plots[spec.id] = { key, plot: new uPlot(options(spec, lines, Math.max(box.clientWidth, 200)), data, box) };
    }
  }

  drawEdges(m) {
    const n = m.t.length;
    const rows = [];
    for (const a of m.answered) {
      let lastAt = -1;
      for (let i = n - 1; i >= 0; i--) {
        if (a.values[i] !== null) {
          lastAt = i;
          break;
        }
      }
      const up = lastAt === n - 1;
      let conns = 0;
      for (const l of m.connections) if (l.edge === a.edge && lastAt >= 0) conns += l.values[lastAt] || 0;
      const badge = document.createElement("span");
      badge.className = "badge " + (up ? "ok" : "bad");
      badge.textContent = up ? "answering" : "not answering";
      const tr = document.createElement("tr");
      tr.dataset.edge = a.edge;
      tr.dataset.state = up ? "answering" : "silent";
      const at = lastAt >= 0 ? new Date(m.t[lastAt] * 1000).toLocaleTimeString(undefined, { hour12: false }) : "–";
      for (const c of [a.edge, badge, up ? String(conns) : `${conns} (then)`, at]) {
        const td = document.createElement("td");
        if (c instanceof Node) td.append(c);
        else td.textContent = c;
        tr.append(td);
      }
      rows.push(tr);
    }
    this.edgeRows.replaceChildren(...rows);
  }

  resize() {
    for (const spec of CHARTS) {
      const cur = this.plots[spec.id];
      if (!cur) continue;
      const w = Math.max(document.getElementById(spec.id).querySelector(".plot").clientWidth, 200);
      if (cur.plot.width !== w || cur.plot.height !== chartHeight()) cur.plot.setSize({ width: w, height: chartHeight() });
    }
  }
}
