"use strict";
// A session's page: its facts, its live transcript (what `watch` shows) and,
// once it has ended, its receipt.

const sid = (() => {
  const last = location.pathname.split("/").pop();
  try { return decodeURIComponent(last); } catch (e) { return last; }  // a malformed escape: the server says 404
})();

function facts(dl, pairs) {
  replace(dl, ...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {"data-key": k}, v ?? "-")]));
}

async function loadSession() {
  let s;
  try {
    s = await getJSON(`/api/sessions/${encodeURIComponent(sid)}`);
  } catch (e) {
    notice(e.message, true);
    return;
  }
  document.title = `${s.meta.item_id || sid} · harness`;
  setText("title", `${s.meta.item_id || "?"} · ${sid.slice(0, 8)}`);
  setStatus(s.status);
  facts(document.getElementById("meta"), [
    ["item", s.meta.item_id], ["session", sid], ["attempt", s.meta.attempt], ["started", s.meta.started_at],
    ["model", s.meta.model], ["branch", s.meta.branch], ["worktree", s.meta.cwd],
  ]);
  if (s.receipt) showReceipt(s.receipt);
}

function setStatus(status) {
  const cls = status === "succeeded" ? "badge good" : status.startsWith("live") ? "badge" : "badge bad";
  setText("status", status, cls);
}

function showReceipt(r) {
  document.getElementById("receipt-box").hidden = false;
  setStatus(r.verdict || "ended");
  const t = r.tokens || {};
  facts(document.getElementById("receipt"), [
    ["verdict", r.verdict], ["reason", r.reason], ["turns", r.turns],
    ["tokens", `in ${t.input || 0}, out ${t.output || 0}, cache read ${t.cache_read || 0}, cache write ${t.cache_write || 0}`],
    ["cost", fmt.usd(r.cost_usd) + (r.cost_estimated ? " (estimated)" : "")], ["wall", fmt.secs(r.wall_s)],
    ["time to first token", fmt.secs(r.ttft_s)], ["exit code", r.exit_code], ["model", r.model],
  ]);
}

function followTranscript() {
  const pre = document.getElementById("transcript");
  const src = new EventSource(`/api/sessions/${encodeURIComponent(sid)}/transcript`);
  // each connection starts from the session's first line: a reconnect rewrites it all
  src.addEventListener("open", () => pre.replaceChildren());
  src.addEventListener("text", (m) => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(document.createTextNode(JSON.parse(m.data)));
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  });
  src.addEventListener("receipt", (m) => {
    const r = JSON.parse(m.data);
    if (r) showReceipt(r);
    else notice("the session has ended; the loop has written no receipt yet (is it running?)", true);
  });
  src.addEventListener("end", () => src.close());
  src.addEventListener("error", () => { if (src.readyState === EventSource.CLOSED) notice("the transcript stream closed", true); });
}

loadSession();
followTranscript();
