"""The finance page served at ``GET /usage``: one self-contained HTML document.

No CDN and no chart library: inline CSS, inline JavaScript and SVG charts drawn by hand. The
page asks for an API token (kept in ``sessionStorage`` only), fetches ``/v1/usage?month=`` with
it and draws usage over time (bytes per day), top customers (by invoice total, then bytes),
quota consumption and the invoice lines. Every value is inserted as text, never as HTML.
"""

from __future__ import annotations

USAGE_PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>feedserver - usage and billing</title>
<style>
  :root { --fg:#1d2330; --muted:#5b6475; --line:#d8dde6; --accent:#2f6fdb; --warn:#d9822b;
          --bad:#c23b3b; --bg:#f6f7f9; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui, sans-serif; color:var(--fg); background:var(--bg); }
  header { background:#fff; border-bottom:1px solid var(--line); padding:12px 24px;
           display:flex; gap:12px; align-items:center; flex-wrap:wrap; }
  header h1 { font-size:18px; margin:0 16px 0 0; }
  input, button { font:inherit; padding:6px 10px; border:1px solid var(--line); border-radius:6px; }
  button { background:var(--accent); color:#fff; border-color:var(--accent); cursor:pointer; }
  main { padding:16px 24px; display:grid; gap:16px;
         grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); }
  section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px; }
  section h2 { font-size:15px; margin:0 0 12px; }
  table { border-collapse:collapse; width:100%; }
  th, td { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); }
  td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
  #status { color:var(--muted); }
  #status.error { color:var(--bad); }
  .bar-bg { fill:#e9edf3; } .bar { fill:var(--accent); } .bar.warn { fill:var(--warn); }
  .bar.bad { fill:var(--bad); } svg text { font-size:11px; fill:var(--muted); }
</style>
</head>
<body>
<header>
  <h1>Usage and billing</h1>
  <label>Token <input id="token" type="password" size="28" autocomplete="off"
         placeholder="paste an access token"></label>
  <label>Month <input id="month" type="month"></label>
  <button id="load" type="button">Load</button>
  <span id="status" role="status">Paste a token and press Load.</span>
</header>
<main>
  <section><h2>Bytes delivered per day</h2><svg id="daily" width="100%" height="220"
     role="img" aria-label="bytes per day"></svg></section>
  <section><h2>Top customers</h2><svg id="top" width="100%" height="220" role="img"
     aria-label="top customers"></svg></section>
  <section><h2>Quota consumption</h2><table id="quotas"><thead><tr><th>Customer</th>
     <th>Quota</th><th class="num">Used</th><th class="num">Limit</th><th>Share</th></tr>
     </thead><tbody></tbody></table></section>
  <section><h2>Invoice lines</h2><table id="invoice"><thead><tr><th>Customer</th>
     <th>Item</th><th class="num">Quantity</th><th class="num">Amount</th></tr></thead>
     <tbody></tbody></table></section>
</main>
<script>
"use strict";
const NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
function fmtBytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"]; let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}
function el(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function row(tbody, cells) {
  // a cell is [text, class] or [node, class]
  const tr = document.createElement("tr");
  for (const [content, cls] of cells) {
    const td = document.createElement("td");
    if (typeof content === "string") td.textContent = content; else td.appendChild(content);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
}
function shareBar(share) {
  const svg = el("svg", { width: 120, height: 12 });
  const cls = "bar" + (share >= 1 ? " bad" : share >= 0.8 ? " warn" : "");
  svg.appendChild(el("rect", { class: "bar-bg", x: 0, y: 0, width: 120, height: 12 }));
  svg.appendChild(el("rect", { class: cls, x: 0, y: 0, height: 12,
                               width: Math.min(120, Math.round(share * 120)) }));
  svg.appendChild(el("title", {}, Math.round(share * 100) + "%"));
  return svg;
}
function drawDaily(report) {
  const svg = $("daily"); clear(svg);
  const [y, m] = report.month.split("-").map(Number);
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate();
  const totals = new Array(days).fill(0);
  for (const c of report.customers)
    for (const [day, meters] of Object.entries(c.days))
      totals[Number(day.slice(8, 10)) - 1] += meters.bytes || 0;
  const max = Math.max(1, ...totals), w = svg.clientWidth || 600, h = 190, bw = w / days;
  totals.forEach((v, i) => {
    const bh = Math.round((v / max) * (h - 10));
    const rect = el("rect", { class: "bar", x: i * bw + 1, y: h - bh, width: Math.max(1, bw - 2),
                              height: bh, "data-day": i + 1, "data-bytes": v });
    const day = `${report.month}-${String(i + 1).padStart(2, "0")}`;
    rect.appendChild(el("title", {}, `${day}: ${fmtBytes(v)}`));
    svg.appendChild(rect);
    if (i % 5 === 0) svg.appendChild(el("text", { x: i * bw + 2, y: h + 14 }, String(i + 1)));
  });
  svg.appendChild(el("text", { x: 2, y: 12 }, "max " + fmtBytes(max)));
}
function drawTop(report) {
  const svg = $("top"); clear(svg);
  const bytesOf = (c) => c.totals.bytes || 0;
  const ranked = [...report.customers]
    .sort((a, b) => (Number(b.total) - Number(a.total)) || (bytesOf(b) - bytesOf(a)))
    .slice(0, 8);
  const max = Math.max(1, ...ranked.map((c) => c.totals.bytes || 0));
  const w = svg.clientWidth || 600;
  ranked.forEach((c, i) => {
    const y = i * 26 + 4, bytes = c.totals.bytes || 0, bw = Math.round((bytes / max) * (w - 260));
    svg.appendChild(el("text", { x: 0, y: y + 14 }, c.customer_id));
    svg.appendChild(el("rect", { class: "bar", x: 120, y, width: Math.max(1, bw), height: 18,
                                 "data-customer": c.customer_id }));
    svg.appendChild(el("text", { x: 126 + bw, y: y + 14 },
                       `${fmtBytes(bytes)} - ${c.total} ${c.currency}`));
  });
}
function fillTables(report) {
  const q = $("quotas").tBodies[0], inv = $("invoice").tBodies[0]; clear(q); clear(inv);
  for (const c of report.customers) {
    for (const quota of c.quotas) {
      const limited = quota.limit !== null && quota.limit !== undefined;
      row(q, [[c.customer_id], [quota.quota], [String(quota.used), "num"],
              [limited ? String(quota.limit) : "unlimited", "num"],
              [shareBar(limited && quota.limit ? quota.used / quota.limit : 0)]]);
    }
    for (const line of c.invoice)
      row(inv, [[c.customer_id], [line.item], [`${line.quantity} ${line.unit}`, "num"],
                [`${line.amount} ${c.currency}`, "num"]]);
    if (c.invoice.length)
      row(inv, [[c.customer_id], ["total"], ["", "num"], [`${c.total} ${c.currency}`, "num"]]);
  }
}
async function load() {
  const token = $("token").value.trim(), month = $("month").value, status = $("status");
  if (!token) { status.textContent = "A token is needed."; status.className = "error"; return; }
  sessionStorage.setItem("feedserver-token", token);
  status.className = ""; status.textContent = "Loading " + month + "...";
  try {
    const resp = await fetch("/v1/usage?month=" + encodeURIComponent(month),
                             { headers: { Authorization: "Bearer " + token } });
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.detail || body.title || ("HTTP " + resp.status));
    drawDaily(body); drawTop(body); fillTables(body);
    status.textContent = `${body.customers.length} customer(s), ${body.month}`;
  } catch (err) {
    status.className = "error"; status.textContent = "Could not load usage: " + err.message;
  }
}
$("month").value = new Date().toISOString().slice(0, 7);
$("token").value = sessionStorage.getItem("feedserver-token") || "";
$("load").addEventListener("click", load);
$("token").addEventListener("keydown", (e) => { if (e.key === "Enter") load(); });
</script>
</body>
</html>
"""
