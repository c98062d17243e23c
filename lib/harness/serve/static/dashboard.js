"use strict";
// The dashboard: /api/state once, then /events keeps it live. An audit event is
// put in the activity list as it arrives; one that changes the state (STATE_EVENTS)
// brings a fresh /api/state half a second later (at most one in flight); a
// heartbeat updates its session's row (drawn at most twice a second). The state is
// read again every 10 s in any case, and the ages tick every second.

const dash = {
  agents: new Map(),   // session id -> its row's data (times in the server's epoch seconds)
  offset: 0,           // server clock minus this browser's, in seconds
  actions: false,
  feedId: null,
  source: null,
  refreshing: false,
  again: false,
  timer: null,
  drawTimer: null,
  charts: {},
};

// the audit events that change what /api/state shows (others, a refused request
// say, are only listed in the activity)
const STATE_EVENTS = /^(item|session|loop|circuit|verify|integrate|worktree|sidecar|run)\.|^serve\.action$/;

// drawAgentsSoon: the agents' table drawn at most twice a second, however many
// heartbeats arrive (16 sessions beat several times a second between them)
function drawAgentsSoon() {
  if (dash.drawTimer) return;
  dash.drawTimer = setTimeout(() => { dash.drawTimer = null; renderAgents(); }, 500);
}

function serverNow() { return Date.now() / 1000 + dash.offset; }

function scheduleRefresh(ms) {
  if (dash.timer) return;
  dash.timer = setTimeout(() => { dash.timer = null; refresh(); }, ms);
}

async function refresh() {
  if (dash.refreshing) { dash.again = true; return; }
  dash.refreshing = true;
  try {
    render(await getJSON("/api/state"));
  } catch (e) {
    setText("loop", `cannot read the state: ${e.message}`, "badge bad");
  } finally {
    dash.refreshing = false;
    if (dash.again) { dash.again = false; scheduleRefresh(100); }
  }
}

// render(s): the snapshot; a row the feed added after the snapshot was taken stays
// (a snapshot serves every page for a second: it may be older than the
// session.started that made the row)
function render(s) {
  dash.offset = s.now - Date.now() / 1000;
  const taken = Date.parse(s.at) / 1000;
  dash.actions = s.actions;
  document.getElementById("logout").hidden = !s.actions;
  document.getElementById("pause-actions").hidden = !s.actions;
  renderLoop(s.loop);
  renderHolds(s.circuit, s.pause);
  renderGovernor(s.governor);
  renderToday(s.today, s.queue);
  const now = serverNow();
  const fresh = new Map(s.agents.map((a) => [a.session || `item:${a.item}`, {
    item: a.item, session: a.session, phase: a.phase, tool: a.outstanding_tool,
    lastEventAt: typeof a.since_last_event_s === "number" ? now - a.since_last_event_s : null,
    startedAt: typeof a.running_s === "number" ? now - a.running_s : null,
    tokens: a.tokens, cost: a.cost_usd, stale: a.stale,
  }]));
  for (const [key, a] of dash.agents) {
    if (!fresh.has(key) && a.seenAt && a.seenAt >= taken) fresh.set(key, a);
  }
  dash.agents = fresh;
  renderAgents();
  renderRuns(s.runs);
  renderHosts(s.hosts || []);
  renderFailures(s.failures);
  renderCharts(s.series, s.charts);
  if (!dash.source) {
    for (const ev of s.events) addActivity(ev);
    follow(s.feed_id);
  }
}

function renderLoop(l) {
  if (!l.running) { setText("loop", "loop: not running", "badge warn"); return; }
  const parts = [`loop ${l.pid}: ${l.sessions ?? 0}/${l.jobs ?? "?"} sessions`];
  if (l.stopping) parts.push(`stopping (${l.stopping})`);
  if (l.blocked) parts.push(`blocked: ${l.blocked}`);
  if (l.stale) parts.push("heartbeat stale");
  setText("loop", parts.join(" · "), l.stale || l.blocked ? "badge warn" : "badge good");
}

function renderHolds(c, p) {
  const open = c.state && c.state !== "closed";
  setText("circuit", c.summary || c.state || "-", open ? "bad" : "good");
  if (p) {
    const left = Math.max(0, (p.until_epoch || 0) - serverNow());
    setText("pause", `paused until ${p.until} (${fmt.secs(left)} more): ${p.reason || "?"}`, "warn");
  } else {
    setText("pause", "not paused", "good");
  }
}

// renderGovernor(g): JOBS_MAX's target and why (null: no governor; -j is fixed)
function renderGovernor(g) {
  if (!g) { setText("governor", "off (JOBS_MAX is 0: -j is fixed)"); return; }
  const refused = `${g.throttled} of ${g.requests} requests refused 429/529 in ${g.window_s} s`;
  setText("governor", `target ${g.target} (${g.min}..${g.max}), ${g.running} running; ${refused}; ${g.why || ""}`,
    g.cause === "storm" || g.cause === "warning" ? "warn" : "good");
}

function renderToday(t, q) {
  const rate = t.success_rate === null ? "-" : `${Math.round(t.success_rate * 100)}%`;
  setText("today", `${t.sessions} sessions, ${t.succeeded} succeeded (${rate}), ${fmt.usd(t.cost_usd)}`);
  replace(document.getElementById("queue"),
    ...Object.entries(q).map(([k, v]) => el("li", {"data-state": k}, `${k} `, el("b", {}, v))));
}

function renderAgents() {
  const body = document.querySelector("#agents tbody");
  const now = serverNow();
  const rows = [...dash.agents.values()].map((a) => el("tr", {"data-session": a.session || "", "data-item": a.item},
    el("td", {}, a.item),
    el("td", {}, a.session ? el("a", {href: `/session/${encodeURIComponent(a.session)}`}, a.session.slice(0, 8)) : "-"),
    el("td", {class: a.stale ? "warn" : ""}, a.phase || "-"),
    el("td", {}, a.tool || ""),
    el("td", {class: "num age"}, a.lastEventAt ? `${fmt.secs(now - a.lastEventAt)} ago` : "-"),
    el("td", {class: "num"}, fmt.tokens(a.tokens)),
    el("td", {class: "num"}, fmt.usd(a.cost)),
    el("td", {class: "num"}, a.startedAt ? fmt.secs(now - a.startedAt) : "-")));
  replace(body, ...rows);
  document.getElementById("agents-none").hidden = rows.length > 0;
}

// renderHosts: a fleet's hosts (STORE=postgres); one host alone is not listed
function renderHosts(hosts) {
  document.getElementById("hosts-box").hidden = hosts.length < 2;
  replace(document.querySelector("#hosts tbody"), ...hosts.map((h) => el("tr", {"data-host": h.host},
    el("td", {}, h.this ? `${h.host} (this)` : h.host),
    el("td", {class: "num"}, h.running ?? "?"),
    el("td", {class: "num"}, typeof h.heartbeat_age_s === "number" ? `${fmt.secs(h.heartbeat_age_s)} ago` : "-"),
    el("td", {}, h.pid ? `pid ${h.pid}${h.state ? `, ${h.state}` : ""}` : "-"))));
}

function renderRuns(runs) {
  replace(document.getElementById("runs"), ...runs.map((r) => {
    const bar = el("div", {class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": r.total,
                           "aria-valuenow": r.done}, el("span"));
    bar.firstChild.style.width = `${Math.round((r.progress || 0) * 100)}%`;
    const eta = r.eta && typeof r.eta.seconds === "number"
      ? `ETA ${fmt.secs(r.eta.seconds)} (${r.eta.confidence} confidence)` : "no ETA yet";
    return el("li", {"data-run": r.name}, el("b", {}, r.name), ` ${r.done}/${r.total} done, ${fmt.usd(r.cost_usd)}, ${eta}`, bar);
  }));
  document.getElementById("runs-none").hidden = runs.length > 0;
}

function itemButtons(item) {
  if (!dash.actions) return "";
  const retry = el("button", {type: "button", "data-act": "retry"}, "retry");
  retry.addEventListener("click", async () => {
    retry.disabled = true;
    if (await act(`/api/items/${encodeURIComponent(item)}/retry`)) scheduleRefresh(0);
    retry.disabled = false;
  });
  const cancel = el("button", {type: "button", "data-act": "cancel"}, "cancel");
  cancel.addEventListener("click", async () => {
    if (await act(`/api/items/${encodeURIComponent(item)}/cancel`)) scheduleRefresh(0);
  });
  return el("span", {class: "actions"}, retry, " ", cancel);
}

function renderFailures(f) {
  replace(document.querySelector("#failed-items tbody"), ...f.items.map((i) => el("tr", {"data-item": i.item},
    el("td", {}, i.item), el("td", {class: "bad"}, i.verdict || "-"), el("td", {class: "reason"}, i.reason || "-"),
    el("td", {class: "num"}, i.attempts ?? "-"), el("td", {}, itemButtons(i.item)))));
  replace(document.getElementById("failed-sessions"), ...f.sessions.map((x) => el("li", {},
    el("time", {}, fmt.clock(x.ended)), " ", x.session ? el("a", {href: `/session/${encodeURIComponent(x.session)}`}, x.item) : x.item,
    ` attempt ${x.attempt ?? "?"}: `, el("span", {class: "bad"}, x.verdict))));
}

function renderCharts(series, available) {
  document.getElementById("charts-missing").hidden = available && typeof uPlot !== "undefined";
  if (!available || typeof uPlot === "undefined") return;
  const draw = (id, data, labels) => {
    const box = document.getElementById(id);
    const width = Math.max(200, box.clientWidth);
    if (dash.charts[id] && dash.charts[id].width === width) { dash.charts[id].setData(data); return; }
    if (dash.charts[id]) dash.charts[id].destroy();
    const lines = labels.map((label, i) => ({label, stroke: ["#2f7d32", "#2957a4"][i], width: 2,
                                              fill: i === 0 ? "rgba(47,125,50,.12)" : undefined}));
    dash.charts[id] = new uPlot({width, height: 180, series: [{}, ...lines], legend: {show: true}}, data, box);
  };
  draw("chart-cost", [series.t, series.cost_usd], ["cost"]);
  draw("chart-sessions", [series.t, series.succeeded, series.sessions], ["succeeded", "sessions"]);
}

function describe(ev) {
  const skip = new Set(["ts", "event", "item", "session"]);
  const rest = Object.entries(ev).filter(([k]) => !skip.has(k))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
  return rest.join(" ").slice(0, 400);
}

function addActivity(ev) {
  const list = document.getElementById("activity");
  const row = el("li", {"data-event": ev.event, "data-item": ev.item || null},
    el("time", {}, fmt.clock(ev.ts)), el("span", {class: "ev"}, ev.event),
    ev.item ? el("span", {class: "item"}, `${ev.item} `) : null, describe(ev));
  list.prepend(row);
  while (list.childElementCount > 200) list.lastElementChild.remove();
}

function onAudit(ev) {
  addActivity(ev);
  if (ev.event === "session.started" && ev.session) {
    dash.agents.set(ev.session, {item: ev.item, session: ev.session, phase: "starting", startedAt: serverNow(),
                                 seenAt: serverNow()});
    dash.agents.delete(`item:${ev.item}`);
    renderAgents();
  } else if (ev.event === "session.ended" && ev.session) {
    dash.agents.delete(ev.session);
    renderAgents();
  }
  if (STATE_EVENTS.test(ev.event)) scheduleRefresh(500);
}

function onHeartbeat(hb) {
  const a = dash.agents.get(hb.session_id);
  if (!a) return;
  Object.assign(a, {phase: hb.phase, tool: hb.outstanding_tool ? hb.outstanding_tool.name : "",
                    lastEventAt: hb.last_event_at, tokens: hb.tokens, cost: hb.cost_usd_so_far});
  drawAgentsSoon();
}

function follow(feedId) {
  const src = new EventSource(feedId ? `/events?since=${encodeURIComponent(feedId)}` : "/events");
  dash.source = src;
  src.addEventListener("open", () => setText("feed", "feed: live", "badge good"));
  src.addEventListener("error", () => setText("feed", "feed: reconnecting", "badge warn"));
  src.addEventListener("audit", (m) => { try { onAudit(JSON.parse(m.data)); } catch (e) { console.warn("feed: an audit line that is not JSON"); } });
  src.addEventListener("heartbeat", (m) => onHeartbeat(JSON.parse(m.data)));
}

document.getElementById("do-pause").addEventListener("click", async () => {
  if (await act("/api/pause", {seconds: 3600, reason: "paused from the dashboard"})) scheduleRefresh(0);
});
document.getElementById("do-resume").addEventListener("click", async () => {
  if (await act("/api/resume")) scheduleRefresh(0);
});
setInterval(renderAgents, 1000);      // the ages tick
setInterval(() => scheduleRefresh(0), 10000);
refresh();
