"use strict";
// Shared by the pages. Every piece of data goes into the page as text
// (textContent, never innerHTML): a model's "<script>" is shown, not run.

// el("td", {class: "num"}, "text", childNode, ...): an element with attributes
// and children; strings become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// replace(node, ...children): the node's children, all new
function replace(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
}

function setText(id, text, cls) {
  const node = document.getElementById(id);
  node.textContent = text;
  if (cls !== undefined) node.className = cls;
  return node;
}

const fmt = {
  secs(s) {
    if (typeof s !== "number" || !isFinite(s)) return "-";
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  },
  usd(x) { return typeof x === "number" ? `$${x.toFixed(x < 1 ? 4 : 2)}` : "-"; },
  int(n) { return typeof n === "number" ? n.toLocaleString("en") : "-"; },
  tokens(t) {
    if (!t) return "-";
    const sum = (t.input || 0) + (t.output || 0) + (t.cache_read || 0) + (t.cache_write || 0);
    return `${fmt.int(sum)} (out ${fmt.int(t.output || 0)})`;
  },
  clock(epochOrIso) {
    const d = typeof epochOrIso === "number" ? new Date(epochOrIso * 1000) : new Date(epochOrIso);
    return isNaN(d) ? "" : d.toTimeString().slice(0, 8);
  },
};

// notice(text, bad): one line at the top of the page, what an action answered
function notice(text, bad) {
  const n = document.getElementById("notice");
  n.textContent = text;
  n.className = bad ? "bad" : "";
  n.hidden = false;
}

async function getJSON(path) {
  const r = await fetch(path, {headers: {Accept: "application/json"}, cache: "no-store"});
  if (r.status === 401) { location.assign("/login"); throw new Error("a token is required"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${path}: HTTP ${r.status}`);
  return body;
}

// act(path, body): an action (POST with the header the server asks of actions);
// its answer, good or bad, is said on the page
async function act(path, body) {
  try {
    const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json", "X-Harness-Action": "1"},
                                 body: JSON.stringify(body || {})});
    const text = await r.text();
    let answer;
    try { answer = JSON.parse(text); } catch (e) { answer = {error: text.trim() || `HTTP ${r.status}`}; }
    if (!r.ok) { notice(`refused: ${answer.error || r.status}`, true); return false; }
    notice(answer.message || "done", false);
    return true;
  } catch (e) {
    notice(`the server did not answer: ${e.message}`, true);
    return false;
  }
}
