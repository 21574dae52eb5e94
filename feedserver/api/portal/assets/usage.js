// The finance page (GET /usage): asks for an API token (kept in sessionStorage only), fetches
// /v1/usage?month= with it and draws usage over time, top customers, quota consumption and the
// invoice lines as hand-drawn SVG. Every value is inserted as text, never as HTML.
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
