// seam console: renders the snapshots the server pushes over /api/events (server-sent events),
// asks for redrives through /api/redrive, and shows /api/plan. Plain DOM, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return s.toFixed(2) + " s";
  if (s < 120) return s.toFixed(1) + " s";
  return Math.round(s / 60) + " min";
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// ---- topology graph: services on a circle, flows as curves bent to one side, so a pair of
// services that feed each other shows two separate arcs.
function renderGraph(snap) {
  const graph = $("#graph");
  const names = snap.services.map((s) => s.name);
  const width = Math.max(graph.clientWidth || 900, 640);
  const height = Math.max(460, Math.min(760, 200 + names.length * 60));
  graph.setAttribute("viewBox", `0 0 ${width} ${height}`);
  graph.style.height = height + "px";
  // An ellipse as wide as the page: the services spread out and the curves between them do too.
  const cx = width / 2, cy = height / 2, rx = Math.min(width / 2 - 110, height * 0.9), ry = height / 2 - 50;
  const at = {};
  names.forEach((n, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, names.length);
    at[n] = { x: cx + rx * Math.cos(a), y: cy + ry * Math.sin(a) };
  });
  const edges = snap.flows.map((f) => {
    const a = at[f.from], b = at[f.to];
    if (!a || !b) return null;
    const mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2;
    const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
    const bend = 38;
    const qx = mx - (dy / len) * bend, qy = my + (dx / len) * bend;
    // End short of the box, with an arrow head.
    const ex = b.x - (b.x - qx) * (46 / Math.hypot(b.x - qx, b.y - qy));
    const ey = b.y - (b.y - qy) * (46 / Math.hypot(b.x - qx, b.y - qy));
    const title = `${f.from} → ${f.to} (${f.translator}): ${f.state}; ${f.why}`;
    return svg("g", { class: `edge ${f.state}`, "data-flow": `${f.from}->${f.to}`, "data-state": f.state },
      svg("title", {}, title),
      svg("path", { d: `M ${a.x} ${a.y} Q ${qx} ${qy} ${ex} ${ey}`, "marker-end": `url(#arrow-${f.state})` }),
      // Only the flows that need a look are labelled on the graph; the table names them all.
      f.state === "in-sync" ? null
        : svg("text", { x: (a.x + 2 * qx + b.x) / 4, y: (a.y + 2 * qy + b.y) / 4 - 4, "text-anchor": "middle" },
          `${f.translator}: ${f.state.replaceAll("-", " ")}`));
  }).filter(Boolean);
  const markers = ["in-sync", "lagging", "parked", "out-of-sync", "unknown"].map((s) =>
    svg("marker", { id: `arrow-${s}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: getComputedStyle(document.documentElement).getPropertyValue(
        { "in-sync": "--ok", lagging: "--lag", parked: "--parked", "out-of-sync": "--bad", unknown: "--unknown" }[s]) })));
  const nodes = snap.services.map((s) => {
    const p = at[s.name];
    const w = Math.max(110, s.name.length * 8 + 24);
    return svg("g", { class: `node${s.up === false ? " down" : ""}`, "data-service": s.name, transform: `translate(${p.x - w / 2} ${p.y - 22})` },
      svg("title", {}, `${s.name} (${s.kind})${s.url ? " at " + s.url : ""}${s.up === false ? ": not answering" : ""}`),
      svg("rect", { width: w, height: 44 }),
      svg("text", { x: w / 2, y: 20, "text-anchor": "middle" }, s.name),
      svg("text", { class: "kind", x: w / 2, y: 35, "text-anchor": "middle" }, s.up === false ? `${s.kind} · down` : s.kind));
  });
  graph.replaceChildren(svg("defs", {}, markers), ...edges, ...nodes);
}

function renderFlows(snap) {
  fill($("#flows tbody"), snap.flows.map((f) => el("tr", { "data-flow": `${f.from}->${f.to}`, "data-state": f.state },
    el("td", {}, `${f.from} → ${f.to}`, el("span", { class: "why mono" }, f.topic)),
    el("td", { class: "mono" }, f.translator),
    el("td", {}, el("span", { class: `badge ${f.state}` }, f.state.replaceAll("-", " ")), el("span", { class: "why" }, f.why)),
    el("td", { class: "num" }, `${f.lag_events} ev`, el("span", { class: "why" }, seconds(f.lag_seconds))),
    el("td", { class: "num" }, f.dead_letters + f.parked),
    el("td", {}, f.digest ? `${f.digest.source_rows} / ${f.digest.replica_rows} rows, ${f.digest.equal ? "digests equal" : "digests differ"}` : "–"))));
}

function sparkline(history) {
  const w = 140, h = 26, max = Math.max(1, ...history);
  const pts = history.map((v, i) => `${(i / Math.max(1, history.length - 1)) * w},${h - 2 - (v / max) * (h - 4)}`).join(" ");
  return svg("svg", { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}` },
    svg("line", { x1: 0, y1: h - 2, x2: w, y2: h - 2 }),
    svg("polyline", { points: history.length > 1 ? pts : `0,${h - 2} ${w},${h - 2}` }),
    svg("title", {}, `max ${max} events over the last ${history.length} rounds`));
}

function renderPartitions(snap) {
  fill($("#partitions tbody"), snap.partitions.map((p) => el("tr", { "data-consumer": p.consumer, "data-topic": p.topic },
    el("td", {}, p.consumer), el("td", { class: "mono" }, p.topic), el("td", { class: "num" }, p.partition),
    el("td", { class: "num" }, p.position), el("td", { class: "num" }, p.end),
    el("td", { class: "num" }, p.lag_events), el("td", { class: "num" }, seconds(p.lag_seconds)),
    el("td", {}, sparkline(p.history)))));
}

// ---- dead letters, one row per consumer and subject with a redrive button.
let pending = null;

function renderLetters(snap) {
  const outstanding = snap.letters.filter((l) => l.status === "pending" || l.status === "redrive-failed");
  const groups = new Map();
  for (const l of outstanding) {
    const key = `${l.consumer}\u0000${l.topic}\u0000${l.subject ?? ""}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(l);
  }
  $("#letters-empty").hidden = groups.size > 0;
  $("#letters").hidden = groups.size === 0;
  fill($("#letters tbody"), [...groups.values()].map((ls) => {
    const first = ls[0];
    const subject = first.subject ?? "(no key)";
    const preview = first.preview
      ? `${first.preview.schema_id !== null ? "schema " + first.preview.schema_id + ": " : ""}${first.preview.text} (${first.preview.bytes} bytes)`
      : "–";
    const statuses = [...new Set(ls.map((l) => l.status))].join(", ");
    return el("tr", { "data-consumer": first.consumer, "data-subject": subject, "data-status": statuses },
      el("td", {}, first.consumer),
      el("td", { class: "mono" }, subject),
      el("td", { class: "num" }, ls.length, el("span", { class: "why" }, ls.map((l) => l.class).join(", "))),
      el("td", {}, first.error, el("span", { class: "why" }, first.redrive_error ?? first.reason)),
      el("td", { class: "mono" }, ls.map((l) => `${l.topic}/${l.partition}@${l.offset}`).join(" ")),
      el("td", { class: "mono preview" }, preview),
      el("td", {}, statuses, el("span", { class: "why" }, first.redrive_time ? "last redrive " + first.redrive_time : first.time)),
      el("td", {}, el("button", {
        class: "redrive", type: "button", "data-consumer": first.consumer, "data-subject": first.subject ?? "",
        onclick: () => askRedrive(first.consumer, first.subject, first.topic, ls.length),
      }, "Redrive")));
  }));
  const settled = snap.letters.filter((l) => !(l.status === "pending" || l.status === "redrive-failed"));
  $("#settled-wrap").hidden = settled.length === 0;
  fill($("#settled tbody"), settled.map((l) => el("tr", { "data-consumer": l.consumer, "data-subject": l.subject ?? "", "data-status": l.status },
    el("td", {}, l.consumer), el("td", { class: "mono" }, l.subject ?? "(no key)"),
    el("td", { class: "mono" }, `${l.topic}/${l.partition}@${l.offset}`), el("td", {}, l.status),
    el("td", {}, l.redrive_time ?? l.time),
    el("td", {}, l.discarded ? `discarded by ${l.discarded.by}: ${l.discarded.reason}` : (l.redrive_error ?? l.error)))));
}

function askRedrive(consumer, subject, topic, count) {
  pending = { consumer, subject, topic };
  $("#confirm-text").textContent =
    `Ask ${consumer} to re-apply the ${count} parked event(s) of ${subject ?? "every parked subject"} from ${topic}, in order? ` +
    "Do this once the cause is fixed (a translator or schema deploy); a letter that fails again stays parked.";
  $("#confirm").showModal();
}

$("#confirm").addEventListener("close", async () => {
  const chosen = $("#confirm").returnValue;
  const what = pending;
  pending = null;
  if (chosen !== "ok" || !what) return;
  const result = $("#redrive-result");
  result.textContent = `asking ${what.consumer} to redrive ${what.subject}…`;
  try {
    const response = await fetch("/api/redrive", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(what),
    });
    const body = await response.json();
    result.textContent = response.ok
      ? `asked ${body.consumer} to redrive ${body.subject ?? "every parked subject"} at ${body.asked_at}; its outcome shows below as the letters' status`
      : `refused: ${body.error} (${body.hint})`;
    result.dataset.outcome = response.ok ? "asked" : "refused";
  } catch (e) {
    result.textContent = `the console did not answer: ${e}`;
    result.dataset.outcome = "failed";
  }
});

function renderProgress(snap) {
  $("#progress-empty").hidden = snap.progress.length > 0;
  $("#progress").hidden = snap.progress.length === 0;
  fill($("#progress tbody"), snap.progress.map((p) => {
    const share = p.total > 0 ? Math.min(1, p.done / p.total) : (p.state === "done" ? 1 : 0);
    return el("tr", { "data-consumer": p.consumer, "data-kind": p.kind },
      el("td", {}, p.consumer),
      el("td", {}, p.kind === "bootstrap" ? `bootstrap from ${p.source}` : "replay"),
      el("td", {}, p.state + (p.phase ? ` (${p.phase})` : ""), p.error ? el("span", { class: "why problem" }, p.error) : null),
      el("td", {}, el("span", { class: "bar" }, el("span", { style: `width:${(share * 100).toFixed(1)}%` })), ` ${p.done} / ${p.total}`),
      el("td", { class: "num" }, p.rate === null ? "–" : `${Math.round(p.rate)}/s`),
      el("td", { class: "num" }, p.eta_seconds === null ? "–" : seconds(p.eta_seconds)));
  }));
}

function renderProblems(snap) {
  $("#problems-section").hidden = snap.problems.length === 0;
  fill($("#problems"), snap.problems.map((p) => el("li", { class: "problem" }, p)));
}

function render(snap) {
  $("#where").textContent = `${snap.topology ? snap.topology + " on " : ""}${snap.cluster} · ${snap.at}`;
  renderGraph(snap);
  renderFlows(snap);
  renderProblems(snap);
  renderLetters(snap);
  renderProgress(snap);
  renderPartitions(snap);
  document.body.dataset.updated = snap.at;
}

async function loadPlan() {
  const box = $("#plan");
  box.textContent = "planning…";
  try {
    const response = await fetch("/api/plan");
    const body = await response.json();
    if (!response.ok) {
      box.replaceChildren(el("p", { class: "quiet" }, `${body.error}: ${body.hint}`));
      return;
    }
    const changed = body.changes.filter((c) => c.action !== "no-op");
    const sign = { create: "+", alter: "~", delete: "-", "no-op": "=" };
    box.replaceChildren(
      el("p", {}, changed.length === 0
        ? `No changes: ${body.changes.length} resources as declared.`
        : `${changed.length} change(s), ${body.changes.length - changed.length} resources as declared.`),
      el("table", { id: "plan-table" }, el("tbody", {}, body.changes.map((c) => el("tr", { class: `plan-${c.action.replace("no-op", "noop")}`, "data-action": c.action },
        el("td", { class: "mono" }, sign[c.action] ?? c.action), el("td", { class: "mono" }, c.resource),
        el("td", { class: "mono" }, Object.entries(c.diff).map(([k, v]) => `${k}: ${JSON.stringify(v.old ?? null)} → ${JSON.stringify(v.new ?? null)}`).join(", ")),
        el("td", {}, c.warning ?? ""))))),
      ...body.problems.map((p) => el("p", { class: "problem" }, "problem: " + p)),
      ...body.notes.map((n) => el("p", { class: "quiet" }, "note: " + n)));
  } catch (e) {
    box.textContent = `the console did not answer: ${e}`;
  }
}

function connect() {
  const live = $("#live");
  const source = new EventSource("/api/events");
  source.addEventListener("snapshot", (e) => {
    live.dataset.live = "live";
    live.textContent = "live";
    render(JSON.parse(e.data));
  });
  source.onerror = () => {
    live.dataset.live = "reconnecting";
    live.textContent = "reconnecting…";
  };
}

$("#plan-refresh").addEventListener("click", loadPlan);
connect();
loadPlan();
