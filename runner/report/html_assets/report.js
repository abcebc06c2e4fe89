// The HTML timing report (runner/report/html.py): draws the summary and the waterfall from the report's JSON.
// Text from the report goes into the page only through textContent and setAttribute, never as markup.
// The waterfall keeps only the rows in view in the page, so 10,000 nodes draw as fast as 10.
"use strict";
(() => {
  const report = JSON.parse(document.getElementById("report-data").textContent);
  const vocab = JSON.parse(document.getElementById("report-vocabulary").textContent);
  const $ = (id) => document.getElementById(id);
  const num = (v) => typeof v === "number" && Number.isFinite(v);
  const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : {});
  const list = (v) => (Array.isArray(v) ? v : []);
  const str = (v) => (v === null || v === undefined ? "" : String(v));

  // -- small helpers --------------------------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "style") Object.assign(node.style, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // Text with `code` spans (the advice and the category labels say settings that way).
  function rich(text) {
    const out = document.createDocumentFragment();
    str(text).split("`").forEach((part, i) => {
      if (part) out.append(i % 2 ? el("code", { text: part }) : document.createTextNode(part));
    });
    return out;
  }

  const three = (v) => (num(v) ? v.toFixed(3) : "–");
  const seconds = (v) => (num(v) ? v.toFixed(3) + " s" : "–");
  const several = (...values) => (values.every((v) => !num(v)) ? "–" : values.map(three).join(" / "));
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const percent = (share) => (num(share) ? (share * 100).toFixed(1) + "%" : "–");
  const valueText = (v) => (typeof v === "string" ? v : JSON.stringify(v));

  const STATUS_NAMES = Object.keys(obj(vocab.statuses));
  const KIND_NAMES = Object.keys(obj(vocab.kinds));
  const CATEGORY_FILL = obj(vocab.fills);

  // A node's status as a reader says it (runner.report.nodes.node_status).
  function statusOf(node) {
    if (node.status === "failed" && num(node.timeout_s)) return "timed out";
    return str(node.status);
  }
  const statusClass = (status) => "status-" + (STATUS_NAMES.includes(status) ? status.replace(" ", "-") : "other");

  const run = obj(report.run);
  const workflow = obj(report.workflow);
  const totals = obj(report.totals);
  const path = obj(report.critical_path);
  const nodes = list(report.nodes).filter((n) => n && typeof n === "object");
  const critical = new Set(list(path.nodes).map(str));

  // -- the summary ----------------------------------------------------------------------------------------------

  function renderSummary() {
    const status = str(run.status);
    const name = str(workflow.name);
    document.title = `${name}: ${status} in ${three(run.wall_s)} s · runner`;
    const badge = el("span", { class: "badge " + (["ok", "failed", "interrupted"].includes(status) ? status : "") });
    badge.textContent = status;
    const header = $("summary");
    header.append(
      el("h1", { id: "title" }, "Run ", el("code", { text: name }), " ", badge, ` in ${three(run.wall_s)} s`),
      el(
        "p",
        { class: "meta" },
        `${str(workflow.file)} · run ${str(run.id)} · started ${str(run.started_at)} · runner ${str(report.runner_version)}, ` +
          `Python ${str(run.python)}, ${str(run.loop)}, ${str(run.platform)}`,
      ),
    );
    if (run.error) header.append(el("div", { id: "run-error", class: "error", role: "alert", text: str(run.error) }));
    if (run.recorded === false) {
      header.append(el("p", { class: "muted", text: "This run was made with recording off: the report has no nodes." }));
    }
    const agents = nodes.filter((n) => n.kind === "agent");
    const made = agents.length ? agents.filter((n) => num(n.start_s)).length : totals.agents;
    const waiting = agents.filter((n) => !num(n.start_s) && n.status !== "skipped").length;
    const conc = obj(report.concurrency);
    const facts = [
      ["nodes", str(totals.nodes)],
      ["agent calls", `${made}` + (waiting ? ` (${waiting} never started)` : "")],
      ["requests", str(totals.requests)],
      ["retries", str(totals.retries)],
      ["tokens in / out", `${str(totals.tokens_in)} / ${str(totals.tokens_out)}`],
      ["in-flight requests", `peak ${str(conc.peak)}, mean ${num(conc.mean) ? +conc.mean.toFixed(3) : "–"}`],
    ];
    header.append(el("ul", { class: "facts" }, ...facts.map(([k, v]) => el("li", {}, el("b", { text: k + ": " }), v))));
  }

  function renderSplit() {
    const time = obj(path.time_s);
    const share = obj(path.share);
    const labels = obj(vocab.categories);
    const rows = Object.keys(labels).filter((c) => num(time[c]) && time[c] > 0);
    const pathNodes = list(path.nodes).map(str);
    if (!rows.length && !pathNodes.length) return;
    $("split").hidden = false;
    const bar = $("split-bar");
    bar.setAttribute(
      "aria-label",
      rows.map((c) => `${labels[c].replaceAll("`", "")} ${percent(share[c])}`).join(", ") || "no time recorded",
    );
    const body = $("split-table").tBodies[0];
    for (const c of rows) {
      const width = num(share[c]) ? Math.max(0, Math.min(1, share[c])) * 100 : 0;
      bar.append(el("span", { class: "f-" + CATEGORY_FILL[c], title: `${labels[c].replaceAll("`", "")}: ${seconds(time[c])}`, style: { width: width + "%" } }));
      body.append(
        el(
          "tr",
          { "data-category": c },
          el("td", {}, el("span", { class: "swatch f-" + CATEGORY_FILL[c], "aria-hidden": "true" }), rich(labels[c])),
          el("td", { text: three(time[c]) }),
          el("td", { text: percent(share[c]) }),
        ),
      );
    }
    if (pathNodes.length) {
      const p = $("path");
      p.append("Critical path: ");
      pathNodes.forEach((id, i) => {
        if (i) p.append(" → ");
        p.append(el("button", { type: "button", class: "chip", "data-node": id, title: "show this node in the waterfall", text: id }));
      });
      p.addEventListener("click", (event) => {
        const chip = event.target.closest("button.chip");
        if (chip) waterfall.reveal(chip.getAttribute("data-node"));
      });
    }
  }

  function renderAdvice() {
    const items = list(report.bottlenecks);
    if (!items.length) return;
    $("advice").hidden = false;
    const ol = $("advice-list");
    for (const b of items.map(obj)) {
      const li = el("li", { "data-cause": str(b.cause) }, el("span", { class: "message" }, rich(b.message)));
      const extra = [];
      if (b.setting) {
        const setting = el("span", { class: "setting" }, "setting to change: ", el("code", { text: str(b.setting) }));
        if (b.value !== null && b.value !== undefined) setting.append(", now ", el("code", { text: valueText(b.value) }));
        extra.push(setting);
      }
      const share = num(b.share) ? ` (${percent(b.share)} of the wall time)` : "";
      extra.push(el("span", { class: "setting", text: `${seconds(b.seconds)} on the critical path${share}` }));
      li.append(...extra);
      ol.append(li);
    }
  }

  function renderModels() {
    const models = Object.entries(obj(report.models));
    if (!models.length) return;
    $("models").hidden = false;
    const body = $("models-table").tBodies[0];
    for (const [name, raw] of models) {
      const m = obj(raw);
      const lat = obj(m.latency_s);
      const ttft = obj(m.ttft_s);
      const retries = Object.entries(obj(m.retries)).map(([c, n]) => `${c} ×${n}`).join(", ") || "0";
      const wait = (w) => (num(obj(w).total_s) ? obj(w).total_s.toFixed(3) + (obj(w).count ? ` over ${obj(w).count}` : "") : "–");
      const calls = `${str(m.calls)}` + (m.failed ? ` (${m.failed} failed)` : "");
      body.append(
        el(
          "tr",
          { "data-model": name },
          el("th", { scope: "row" }, el("code", { text: name }), m.model ? ` (${str(m.model)})` : ""),
          el("td", { text: calls }),
          el("td", { text: str(m.requests) }),
          el("td", { text: several(lat.p50, lat.p95, lat.max) }),
          el("td", { text: several(ttft.p50, ttft.p95) }),
          el("td", { text: num(m.tokens_per_s) ? m.tokens_per_s.toFixed(0) : "–" }),
          el("td", { text: `${str(m.tokens_in)} / ${str(m.tokens_out)}` }),
          el("td", { text: retries }),
          el("td", { text: wait(m.pool_wait) }),
          el("td", { text: wait(m.rate_wait) }),
        ),
      );
    }
  }

  // Cache and memory figures: small tables of whatever the report holds.
  function renderExtras() {
    const section = $("extras");
    for (const [key, title] of [["cache", "Embedding cache"], ["memory", "Working memory"]]) {
      const entries = Object.entries(obj(report[key]));
      if (!entries.length) continue;
      const columns = [...new Set(entries.flatMap(([, v]) => Object.keys(obj(v))))].slice(0, 12);
      const table = el("table", { class: "numbers", "data-section": key });
      table.append(el("thead", {}, el("tr", {}, el("th", { text: key === "cache" ? "embedder" : "agent" }), ...columns.map((c) => el("th", { text: c })))));
      const tbody = el("tbody");
      for (const [name, v] of entries) {
        const row = obj(v);
        tbody.append(el("tr", {}, el("th", { scope: "row" }, el("code", { text: name })), ...columns.map((c) => el("td", { text: c in row ? valueText(row[c]) : "" }))));
      }
      table.append(tbody);
      section.append(el("h2", { text: title }), el("div", { class: "scroll-x" }, table));
      section.hidden = false;
    }
  }

  // The MCP servers the run started (issue 22), with the tool calls the run sent each (the tool nodes name it).
  function renderMcp() {
    const servers = Object.entries(obj(report.mcp_servers));
    if (!servers.length) return;
    const section = $("extras");
    const head = ["server", "transport", "tools", "started in s", "restarts", "calls", "failed", "call p50 / max s"];
    const table = el("table", { class: "numbers", "data-section": "mcp_servers" });
    table.append(el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col", text: h })))));
    const tbody = el("tbody");
    for (const [name, raw] of servers) {
      const s = obj(raw);
      const calls = nodes.filter((n) => n.kind === "tool" && n.server === name);
      const took = calls.filter((n) => num(n.start_s) && num(n.end_s)).map((n) => n.end_s - n.start_s).sort((a, b) => a - b);
      const mid = took.length >> 1;
      const p50 = took.length ? (took.length % 2 ? took[mid] : (took[mid - 1] + took[mid]) / 2) : null;
      tbody.append(
        el(
          "tr",
          { "data-server": name },
          el("th", { scope: "row" }, el("code", { text: name })),
          el("td", { text: str(s.transport) }),
          el("td", { text: str(s.tools) }),
          el("td", { text: three(s.startup_s) }),
          el("td", { text: str(s.restarts) }),
          el("td", { text: String(calls.length) }),
          el("td", { text: String(calls.filter((n) => statusOf(n) !== "ok").length) }),
          el("td", { text: several(p50, took.length ? took[took.length - 1] : null) }),
        ),
      );
    }
    table.append(tbody);
    section.append(el("h2", { text: "MCP servers" }), el("div", { class: "scroll-x" }, table));
    section.hidden = false;
  }

  // -- the waterfall --------------------------------------------------------------------------------------------

  const waterfall = (() => {
    const ROW_H = 22;
    const AXIS_H = 24;
    const OVERSCAN = 8;
    const wf = $("wf");
    const axis = $("wf-axis");
    const body = $("wf-body");
    const time = (v) => (num(v) ? Math.max(0, v) : null);

    let wall = num(run.wall_s) ? run.wall_s : 0;
    for (const n of nodes) {
      for (const v of [n.queued_s, n.start_s, n.first_token_s, n.end_s]) if (num(v) && v > wall) wall = v;
    }
    if (!(wall > 0)) wall = 0.001;

    // One item per node, in tree order: a node's parent is the longest prefix of its id that is a node
    // (`fan` for `fan[3]`, `fan[3]` for `fan[3].note`, `ask` for `ask.tool[0.1]`); siblings in the order they
    // started, then in the report's order.
    const items = nodes.map((n, i) => {
      const id = str(n.id);
      const kind = KIND_NAMES.includes(n.kind) ? n.kind : "other";
      const begin = time(n.queued_s) ?? time(n.start_s);
      let end = time(n.end_s);
      if (begin !== null && (end === null || end < begin)) end = end === null ? wall : begin;
      return { n, i, id, kind, status: statusOf(n), begin, end, depth: 0, critical: critical.has(id), search: null };
    });
    const byId = new Map(items.map((it) => [it.id, it]));
    const children = new Map();
    const roots = [];
    for (const it of items) {
      let parent = null;
      for (let k = it.id.length - 1; k > 0 && !parent; k--) {
        if (it.id[k] === "[" || it.id[k] === ".") parent = byId.get(it.id.slice(0, k)) || null;
      }
      if (parent) {
        if (!children.has(parent)) children.set(parent, []);
        children.get(parent).push(it);
      } else roots.push(it);
    }
    const startKey = (it) => it.begin ?? time(it.n.end_s) ?? wall;
    const byStart = (a, b) => startKey(a) - startKey(b) || a.i - b.i;
    const order = [];
    const stack = roots.sort(byStart).reverse();
    while (stack.length) {
      const it = stack.pop();
      order.push(it);
      const kids = children.get(it);
      if (!kids) continue;
      kids.sort(byStart);
      for (let k = kids.length - 1; k >= 0; k--) {
        kids[k].depth = it.depth + 1;
        stack.push(kids[k]);
      }
    }

    let visible = order;
    let zoom = 1;
    let labelW = 280;
    let trackW = 600;
    let px = trackW / wall; // pixels per second
    let active = -1; // index into visible
    let detailsFor = null;
    let pending = false;

    // The parts of a bar, each [fill, from, to] in seconds; later ones are drawn over earlier ones.
    function segments(it) {
      const n = it.n;
      const out = [];
      const start = time(n.start_s);
      const queued = time(n.queued_s);
      const end = it.end;
      if (queued !== null && start !== null && start > queued) out.push(["queue", queued, start]);
      if (start === null) {
        if (queued !== null && end > queued) out.push(["queue", queued, end]);
        return out;
      }
      if (it.kind === "python") out.push(["python", start, end]);
      if (it.kind === "approve" || it.kind === "ask") out.push(["gate", start, end]);
      if (it.kind === "tool") out.push(["tool", start, end]);
      if (it.kind !== "agent") return out;
      const tools = list(n.tool_spans).filter((t) => num(obj(t).start_s) && num(obj(t).end_s));
      const marks = [start, ...tools.map((t) => time(t.end_s))];
      const windows = [];
      const retries = [];
      for (const r of list(n.retry_events).map(obj).filter((r) => num(r.at_s))) {
        const at = time(r.at_s);
        const began = Math.max(start, ...marks.filter((m) => m <= at), ...windows.map((w) => w[1]).filter((m) => m <= at));
        const back = at + (num(r.delay_s) ? Math.max(0, r.delay_s) : 0);
        retries.push(["attempt", began, at], ["backoff", at, back]);
        windows.push([began, back]);
      }
      const outside = (at) => !windows.some(([b, e]) => b < at && at <= e);
      const final = windows.length ? Math.max(...windows.map((w) => w[1])) : start;
      const first = time(n.first_token_s);
      if (first !== null && first >= final) out.push(["ttft", final, first]);
      const waits = [];
      const rateEnds = [];
      for (const w of list(n.rate_waits).map(obj).filter((w) => num(w.at_s) && num(w.wait_s))) {
        const at = time(w.at_s);
        if (outside(at)) {
          waits.push(["rate", at - w.wait_s, at]);
          rateEnds.push(at);
        }
      }
      for (const w of list(n.pool_waits).map(obj).filter((w) => num(w.at_s) && num(w.wait_s))) {
        const at = time(w.at_s);
        if (outside(at)) {
          const from = Math.max(start, ...[...windows.map((x) => x[1]), ...rateEnds].filter((m) => m <= at));
          waits.push(["pool", from, from + w.wait_s]);
        }
      }
      out.push(...tools.map((t) => ["tool", time(t.start_s), time(t.end_s)]), ...waits, ...retries);
      return out;
    }

    function describe(it) {
      const n = it.n;
      const rows = [];
      const add = (k, v) => {
        if (v !== null && v !== undefined && v !== "") rows.push([k, v]);
      };
      const statuses = obj(vocab.statuses);
      add("kind", obj(vocab.kinds)[it.kind] ? `${obj(vocab.kinds)[it.kind]} (${it.kind})` : str(n.kind));
      let status = statuses[it.status] ? `${it.status}: ${statuses[it.status].replaceAll("`", "")}` : it.status;
      if (!num(n.start_s) && num(n.queued_s) && it.status !== "ok") status += " (never started: it waited for a slot)";
      if (n.from_checkpoint === true) status += " (from the checkpoint of an earlier run: not run again)";
      add("status", status);
      if (it.critical) add("critical path", "on the critical path");
      for (const key of ["agent", "model", "tool", "parent", "function"]) if (n[key] !== undefined) add(key, str(n[key]));
      const start = time(n.start_s);
      const first = time(n.first_token_s);
      const end = time(n.end_s);
      add("queued at", num(n.queued_s) ? seconds(n.queued_s) : null);
      add("started at", num(n.start_s) ? seconds(n.start_s) : null);
      add("first token at", num(n.first_token_s) ? seconds(n.first_token_s) : null);
      add("ended at", num(n.end_s) ? seconds(n.end_s) : "not ended");
      if (num(n.queue_wait_s) && n.queue_wait_s > 0) add("waited for a slot", seconds(n.queue_wait_s));
      if (start !== null && first !== null) add("time to first token", seconds(first - start));
      if (start !== null && end !== null) add("duration", seconds(end - start));
      if (num(n.attempts)) add("attempts", str(n.attempts));
      const retries = list(n.retry_events).map(obj);
      if (retries.length) {
        add(
          plural(retries.length, "retry"),
          retries.map((r) => `failed at ${seconds(r.at_s)} (${str(r.cause)}), back-off ${seconds(r.delay_s)}` + (r.void_chars ? `, ${r.void_chars} streamed characters void` : "")).join("\n"),
        );
      }
      if (num(n.pool_wait_s) && n.pool_wait_s > 0) add("pool wait", `${seconds(n.pool_wait_s)} over ${list(n.pool_waits).length}`);
      if (num(n.rate_wait_s) && n.rate_wait_s > 0) {
        const limits = [...new Set(list(n.rate_waits).map((w) => str(obj(w).limit)))].filter(Boolean).join(", ");
        add("rate-limit wait", `${seconds(n.rate_wait_s)} over ${list(n.rate_waits).length}` + (limits ? ` (${limits})` : ""));
      }
      const tools = list(n.tool_spans).map(obj);
      if (tools.length) {
        add(
          plural(tools.length, "tool call"),
          tools.map((t) => `${str(t.tool)} ${three(t.start_s)}–${three(t.end_s)} s` + (t.ok === false ? " failed" : "")).join("\n"),
        );
      }
      if (num(n.tokens_in) || num(n.tokens_out)) add("tokens in / out", `${str(n.tokens_in ?? "–")} / ${str(n.tokens_out ?? "–")}`);
      if (num(n.tokens_out) && first !== null && end !== null && end - first >= 0.02) {
        add("tokens/s", (n.tokens_out / (end - first)).toFixed(0));
      }
      if (num(n.timeout_s)) add("timeout", seconds(n.timeout_s));
      if (num(n.failed_branches)) add("failed branches", str(n.failed_branches));
      if (num(n.iterations)) add("iterations", str(n.iterations) + (n.ended_by ? `, ended by ${str(n.ended_by)}` : ""));
      if (n.case !== undefined) add("case", n.case === null ? "none" : str(n.case));
      if (n.warning !== undefined) add("warning", str(n.warning));
      if (n.reason !== undefined) add("reason", str(n.reason));
      if (n.error !== undefined) add("error", str(n.error));
      return rows;
    }

    function detailsContent(it, heading) {
      const dl = el("dl", { class: "kv" });
      for (const [k, v] of describe(it)) dl.append(el("dt", { text: k }), el("dd", { "data-key": k, text: v }));
      return [el(heading, { text: it.id }), dl];
    }

    function showDetails(it) {
      detailsFor = it;
      const details = $("details");
      const close = el("button", { type: "button", class: "close", "aria-label": "close the details", text: "close" });
      close.addEventListener("click", hideDetails);
      details.replaceChildren(...detailsContent(it, "h3"), close);
      details.setAttribute("data-node", it.id);
      details.hidden = false;
    }

    function hideDetails() {
      detailsFor = null;
      $("details").hidden = true;
    }

    function rowLabel(it) {
      const n = it.n;
      const parts = [it.id, obj(vocab.kinds)[it.kind] || it.kind, it.status];
      if (num(n.start_s)) parts.push(`started ${seconds(n.start_s)}`);
      if (num(n.first_token_s)) parts.push(`first token ${seconds(n.first_token_s)}`);
      if (num(n.end_s)) parts.push(`ended ${seconds(n.end_s)}`);
      if (it.critical) parts.push("on the critical path");
      return parts.join(", ");
    }

    const x = (t) => t * px;

    function bar(it) {
      const cls = `bar kind-${it.kind} ${statusClass(it.status)}` + (num(it.n.start_s) ? "" : " unstarted");
      if (it.begin === null) {
        const at = time(it.n.end_s) ?? 0;
        return el("div", { class: cls + " point", "data-node": it.id, "data-status": it.status, style: { left: x(at) + "px" } });
      }
      const left = x(it.begin);
      const width = Math.max(2, x(it.end) - left);
      const b = el("div", { class: cls, "data-node": it.id, "data-status": it.status, style: { left: left + "px", width: width + "px" } });
      for (const [fill, from, to] of segments(it)) {
        const s = Math.max(from, it.begin);
        const e = Math.min(to, it.end);
        if (!(e > s)) continue;
        b.append(el("span", { class: "seg f-" + fill, style: { left: x(s) - left + "px", width: Math.max(1, x(e) - x(s)) + "px" } }));
      }
      const first = time(it.n.first_token_s);
      if (it.kind === "agent" && first !== null && first >= it.begin && first <= it.end) {
        b.append(el("span", { class: "mark first-token", style: { left: x(first) - left + "px" } }));
      }
      for (const r of list(it.n.retry_events).map(obj)) {
        const at = time(r.at_s);
        if (at !== null && at >= it.begin && at <= it.end) b.append(el("span", { class: "mark retry", style: { left: x(at) - left + "px" } }));
      }
      b.append(el("span", { class: "cap" }));
      return b;
    }

    function row(it, k) {
      const classes = ["row"];
      if (k % 2) classes.push("alt");
      if (it.critical) classes.push("critical");
      if (k === active) classes.push("active");
      const label = el(
        "div",
        { class: "label", role: "rowheader", title: it.id, style: { paddingLeft: 8 + Math.min(it.depth, 8) * 12 + "px" } },
        el("span", { class: "dot " + statusClass(it.status), title: it.status }),
        it.critical ? el("span", { class: "crit-mark", title: "on the critical path", text: "◆" }) : null,
        el("span", { class: "name", text: it.id }),
      );
      const track = el("div", { class: "track", role: "gridcell", "aria-label": rowLabel(it), style: { left: labelW + "px", width: trackW + "px" } }, bar(it));
      return el(
        "div",
        {
          class: classes.join(" "),
          role: "row",
          id: "row-" + it.i,
          "aria-rowindex": k + 1,
          "aria-selected": k === active ? "true" : "false",
          "data-node": it.id,
          "data-index": it.i,
          "data-critical": it.critical ? "true" : null,
          style: { top: k * ROW_H + "px", width: labelW + trackW + "px" },
        },
        label,
        track,
      );
    }

    function niceStep(target) {
      const p = Math.pow(10, Math.floor(Math.log10(target)));
      for (const m of [1, 2, 5, 10]) if (m * p >= target) return m * p;
      return 10 * p;
    }

    function tickText(t, step) {
      if (wall < 1 && step < 0.1) {
        const decimals = Math.max(0, -Math.floor(Math.log10(step * 1000)));
        return (t * 1000).toFixed(decimals) + " ms";
      }
      const decimals = Math.max(0, -Math.floor(Math.log10(step)));
      return t.toFixed(decimals) + " s";
    }

    function renderAxis() {
      const step = niceStep(90 / px);
      body.style.setProperty("--step", step * px + "px");
      const from = Math.max(0, Math.floor(wf.scrollLeft / px / step) * step);
      const to = (wf.scrollLeft + wf.clientWidth) / px;
      const ticks = [el("span", { class: "corner", text: "node · time since the start" })];
      for (let k = Math.round(from / step); k * step <= to + step && ticks.length < 400; k++) {
        const t = k * step;
        ticks.push(el("span", { class: "tick", style: { left: labelW + x(t) + "px" }, text: tickText(t, step) }));
      }
      axis.replaceChildren(...ticks);
    }

    function renderRows() {
      const height = wf.clientHeight - AXIS_H;
      // After a filter shortened the list, the old offset may lie past the end until the browser clamps it.
      const top = Math.max(0, Math.min(wf.scrollTop, visible.length * ROW_H - height));
      const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
      const last = Math.min(visible.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
      const rows = [];
      for (let k = first; k < last; k++) rows.push(row(visible[k], k));
      body.replaceChildren(...rows);
      markActive();
    }

    function layout() {
      labelW = parseInt(getComputedStyle(document.documentElement).getPropertyValue("--label-w"), 10) || 280;
      const base = Math.max(200, wf.clientWidth - labelW - 12);
      trackW = base * zoom;
      px = trackW / wall;
      const width = labelW + trackW + 8 + "px";
      axis.style.width = width;
      body.style.width = width;
      body.style.height = visible.length * ROW_H + "px";
      wf.setAttribute("aria-rowcount", String(visible.length));
      renderAxis();
      renderRows();
    }

    function schedule() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        renderAxis();
        renderRows();
      });
    }

    // Zoom keeping one time where it was on screen (under the mouse, or the middle of the view); from the keyboard
    // with a row active, its bar from where it started running is framed instead.
    function zoomTo(next, anchor) {
      const limit = Math.max(1, 4e6 / Math.max(200, wf.clientWidth - labelW));
      const at = anchor ?? labelW + (wf.clientWidth - labelW) / 2;
      const t = (wf.scrollLeft + at - labelW) / px;
      const it = anchor === undefined && active >= 0 ? visible[active] : null;
      zoom = Math.min(Math.max(1, next), limit);
      layout();
      if (it) {
        const from = it.begin === null ? time(it.n.end_s) ?? 0 : time(it.n.start_s) ?? it.begin;
        const width = it.begin === null ? 0 : (it.end - from) * px;
        const view = wf.clientWidth - labelW;
        wf.scrollLeft = Math.max(0, from * px - (width < view ? (view - width) / 2 : view * 0.1));
      } else wf.scrollLeft = Math.max(0, t * px + labelW - at);
      renderAxis();
      $("zoom-fit").textContent = zoom === 1 ? "fit" : `fit (${zoom >= 10 ? zoom.toFixed(0) : +zoom.toFixed(1)}×)`;
    }

    // The active row marked in place: rows are rebuilt only when the rows in view change, so a click whose
    // mousedown focused the waterfall still ends on the row it began on.
    function markActive() {
      for (const r of body.children) {
        const on = Number(r.getAttribute("data-index")) === (active >= 0 ? visible[active].i : -1);
        r.classList.toggle("active", on);
        r.setAttribute("aria-selected", on ? "true" : "false");
      }
      if (active >= 0 && active < visible.length) wf.setAttribute("aria-activedescendant", "row-" + visible[active].i);
      else wf.removeAttribute("aria-activedescendant");
    }

    function setActive(k, scroll = true) {
      if (!visible.length) return;
      active = Math.max(0, Math.min(visible.length - 1, k));
      const before = wf.scrollTop;
      if (scroll) {
        const top = active * ROW_H;
        const view = wf.clientHeight - AXIS_H;
        if (top < wf.scrollTop) wf.scrollTop = top;
        else if (top + ROW_H > wf.scrollTop + view) wf.scrollTop = top + ROW_H - view;
      }
      if (wf.scrollTop !== before || !document.getElementById("row-" + visible[active].i)) renderRows();
      else markActive();
      if (detailsFor) showDetails(visible[active]);
    }

    function matches() {
      const text = $("filter").value.trim().toLowerCase();
      const status = $("status-filter").value;
      const kind = $("kind-filter").value;
      const only = $("critical-only").checked;
      return (it) => {
        if (only && !it.critical) return false;
        if (kind && it.kind !== kind) return false;
        if (status === "not ok" ? it.status === "ok" : status && it.status !== status) return false;
        if (text) {
          if (it.search === null) {
            const n = it.n;
            it.search = [it.id, n.agent, n.model, n.tool, n.function, n.error].map(str).join("\n").toLowerCase();
          }
          if (!it.search.includes(text)) return false;
        }
        return true;
      };
    }

    function applyFilter() {
      const keep = active >= 0 ? visible[active] : null;
      const test = matches();
      visible = order.filter(test);
      active = keep ? visible.indexOf(keep) : -1;
      $("shown").textContent = visible.length === order.length ? `${plural(order.length, "node")}` : `${visible.length} of ${plural(order.length, "node")}`;
      layout();
    }

    function reveal(id) {
      const it = byId.get(id);
      if (!it) return;
      let k = visible.indexOf(it);
      if (k < 0) {
        for (const [input, value] of [["filter", ""], ["status-filter", ""], ["kind-filter", ""]]) $(input).value = value;
        $("critical-only").checked = false;
        applyFilter();
        k = visible.indexOf(it);
      }
      wf.focus({ preventScroll: true });
      setActive(k);
      showDetails(it);
      wf.scrollIntoView({ block: "nearest" });
    }

    function itemAt(target) {
      const r = target.closest && target.closest(".row");
      return r ? items[Number(r.getAttribute("data-index"))] : null;
    }

    function legend() {
      const out = [];
      for (const [name, label] of Object.entries(obj(vocab.segments))) {
        out.push(el("span", { "data-segment": name }, el("span", { class: "swatch f-" + name, "aria-hidden": "true" }), rich(label)));
      }
      for (const name of STATUS_NAMES) {
        out.push(el("span", { "data-status": name }, el("span", { class: "swatch status " + statusClass(name), "aria-hidden": "true" }), name));
      }
      out.push(el("span", {}, el("span", { class: "crit-mark", "aria-hidden": "true", text: "◆ " }), "critical path"));
      out.push(el("span", {}, el("span", { class: "swatch mark-sample", "aria-hidden": "true" }), "first token / retry"));
      $("legend").replaceChildren(...out);
    }

    function init() {
      legend();
      const statusSelect = $("status-filter");
      const present = new Set(items.map((it) => it.status));
      for (const s of [...STATUS_NAMES.filter((s) => present.has(s)), ...[...present].filter((s) => !STATUS_NAMES.includes(s))]) {
        statusSelect.append(el("option", { value: s, text: s }));
      }
      if (present.size > 1 && present.has("ok")) statusSelect.append(el("option", { value: "not ok", text: "not ok" }));
      const kinds = new Set(items.map((it) => it.kind));
      for (const k of kinds) $("kind-filter").append(el("option", { value: k, text: obj(vocab.kinds)[k] || k }));
      let typing = 0;
      $("filter").addEventListener("input", () => {
        clearTimeout(typing);
        typing = setTimeout(applyFilter, items.length > 2000 ? 150 : 0);
      });
      for (const id of ["status-filter", "kind-filter", "critical-only"]) $(id).addEventListener("change", applyFilter);
      $("zoom-in").addEventListener("click", () => zoomTo(zoom * 2));
      $("zoom-out").addEventListener("click", () => zoomTo(zoom / 2));
      $("zoom-fit").addEventListener("click", () => zoomTo(1));
      wf.addEventListener("scroll", schedule, { passive: true });
      addEventListener("resize", () => zoomTo(zoom));
      wf.addEventListener(
        "wheel",
        (event) => {
          if (!event.ctrlKey) return;
          event.preventDefault();
          const rect = wf.getBoundingClientRect();
          zoomTo(zoom * (event.deltaY < 0 ? 1.25 : 0.8), Math.max(labelW, event.clientX - rect.left));
        },
        { passive: false },
      );
      const tip = $("tooltip");
      body.addEventListener("mousemove", (event) => {
        const it = itemAt(event.target);
        if (!it || !event.target.closest(".bar, .label")) {
          tip.hidden = true;
          return;
        }
        if (tip.getAttribute("data-node") !== it.id) {
          tip.replaceChildren(...detailsContent(it, "h3"));
          tip.setAttribute("data-node", it.id);
        }
        tip.hidden = false;
        const pad = 14;
        const w = tip.offsetWidth;
        const h = tip.offsetHeight;
        let left = event.clientX + pad;
        let top = event.clientY + pad;
        if (left + w > innerWidth - 4) left = Math.max(4, event.clientX - pad - w);
        if (top + h > innerHeight - 4) top = Math.max(4, event.clientY - pad - h);
        tip.style.left = left + "px";
        tip.style.top = top + "px";
      });
      body.addEventListener("mouseleave", () => {
        tip.hidden = true;
      });
      body.addEventListener("click", (event) => {
        const it = itemAt(event.target);
        if (!it) return;
        active = visible.indexOf(it);
        markActive();
        showDetails(it);
      });
      wf.addEventListener("keydown", (event) => {
        const page = Math.max(1, Math.floor((wf.clientHeight - AXIS_H) / ROW_H) - 1);
        const keys = {
          ArrowDown: () => setActive(active + 1),
          ArrowUp: () => setActive(active < 0 ? 0 : active - 1),
          PageDown: () => setActive(active + page),
          PageUp: () => setActive(active - page),
          Home: () => setActive(0),
          End: () => setActive(visible.length - 1),
          Enter: () => active >= 0 && showDetails(visible[active]),
          " ": () => active >= 0 && showDetails(visible[active]),
          Escape: hideDetails,
          "+": () => zoomTo(zoom * 2),
          "=": () => zoomTo(zoom * 2),
          "-": () => zoomTo(zoom / 2),
          0: () => zoomTo(1),
          ArrowRight: () => (wf.scrollLeft += (wf.clientWidth - labelW) / 4),
          ArrowLeft: () => (wf.scrollLeft -= (wf.clientWidth - labelW) / 4),
        };
        const action = keys[event.key];
        if (!action || event.altKey || event.metaKey || (event.ctrlKey && event.key !== "0")) return;
        event.preventDefault();
        action();
      });
      wf.addEventListener("focus", () => {
        if (active < 0 && visible.length) setActive(0, false);
      });
      document.addEventListener("keydown", (event) => {
        const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement;
        if (event.key === "/" && !typing) {
          event.preventDefault();
          $("filter").focus();
        } else if (event.key === "Escape" && !typing) hideDetails();
      });
      applyFilter();
    }

    return { init, reveal };
  })();

  renderSummary();
  renderSplit();
  renderAdvice();
  renderModels();
  renderExtras();
  renderMcp();
  waterfall.init();
  // Drawn: the frame after this one has painted the summary and the rows in view (bench/html_report.py reads it).
  requestAnimationFrame(() =>
    setTimeout(() => {
      performance.mark("runner:drawn");
      document.documentElement.setAttribute("data-drawn", "true");
    }, 0),
  );
})();
