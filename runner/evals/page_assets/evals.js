"use strict";
// The eval page: a row per dataset row (failures first, then errors, then passes), a column per assertion; a cell
// opens the row's output and the assertion's reason. Text goes into the page as text, never as markup.
(() => {
  const data = JSON.parse(document.getElementById("data").textContent);
  const marks = { pass: "\u2713", fail: "\u2717", error: "!" };
  const el = (tag, text, cls) => {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  };
  const pct = (x) => (x * 100).toFixed(1) + "%";

  const head = document.getElementById("summary");
  head.append(el("h1", "Assertions of " + data.workflow));
  const t = data.totals;
  head.append(el("p", `${t.passed} of ${t.rows} rows passed every assertion (${pct(t.pass_rate)}); ${t.failed} failed, ${t.errors} had errors.`));
  const met = el("p", t.met ? "Thresholds met" : "Thresholds NOT met", t.met ? "met" : "unmet");
  head.append(met);
  if (t.worst) head.append(el("p", "Worst assertion: " + t.worst));

  const names = data.assertions;
  const headRow = document.querySelector("#grid thead tr");
  for (const name of names) {
    const th = el("th", name);
    th.scope = "col";
    headRow.append(th);
  }
  const body = document.querySelector("#grid tbody");
  data.rows.forEach((row, r) => {
    const tr = el("tr");
    tr.dataset.key = row.key;
    tr.dataset.verdict = row.verdict;
    const key = el("th", row.key);
    key.scope = "row";
    tr.append(key, el("td", row.verdict, row.verdict));
    row.cells.forEach((cell, a) => {
      const td = el("td");
      if (cell) {
        const button = el("button", marks[cell.status] || "?", "cell " + cell.status);
        button.type = "button";
        button.dataset.row = String(r);
        button.dataset.assertion = String(a);
        button.title = `${names[a]}: ${cell.status}`;
        button.setAttribute("aria-label", `row ${row.key}, ${names[a]}: ${cell.status}`);
        td.append(button);
      }
      tr.append(td);
    });
    body.append(tr);
  });
  if (data.not_shown > 0) {
    const note = document.getElementById("hidden-rows");
    note.textContent = `${data.not_shown} passing rows are not shown (the page lists at most ${data.rows.length}); results.jsonl holds every row.`;
    note.hidden = false;
  }

  const dialog = document.getElementById("detail");
  body.addEventListener("click", (event) => {
    const button = event.target.closest("button.cell");
    if (!button) return;
    const row = data.rows[Number(button.dataset.row)];
    const a = Number(button.dataset.assertion);
    const cell = row.cells[a];
    document.getElementById("detail-title").textContent = `row ${row.key}: ${names[a]}`;
    const status = document.getElementById("detail-status");
    status.textContent = cell.status;
    status.className = cell.status;
    document.getElementById("detail-score").textContent = String(cell.score);
    document.getElementById("detail-reason").textContent = cell.reason;
    document.getElementById("detail-output").textContent = row.output;
    const error = document.getElementById("detail-error");
    error.textContent = row.error ? "the row failed: " + row.error : "";
    error.hidden = !row.error;
    dialog.showModal();
  });
  document.getElementById("close").addEventListener("click", () => dialog.close());
  document.documentElement.dataset.drawn = "true";
})();
