// herald's console: polls the JSON API every second and shows what it says. No framework, no
// build step; every API call carries the bearer token kept in this tab's sessionStorage.
"use strict";

const TOKEN_KEY = "herald.token";
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let waitingForToken = false;
let timer = null;
let previous = null; // the last delivery counters and when they were read
const rows = new Map(); // subscription id -> its <tr>

class Unauthorized extends Error {}

async function api(method, path) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, { method, headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized("401");
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${method} ${path}: ${response.status} ${detail}`);
  }
  return response.status === 204 ? null : response.json();
}

function setState(text, bad) {
  const state = $("state");
  state.textContent = text;
  state.style.color = bad ? "#ffb4ab" : "";
}

function cell(row, className, text, title) {
  let td = row.querySelector("td." + className.split(" ").join("."));
  if (!td) {
    td = document.createElement("td");
    td.className = className;
    row.appendChild(td);
  }
  const value = text === null || text === undefined ? "" : String(text);
  if (td.textContent !== value) td.textContent = value;
  if (title !== undefined) td.title = title;
  return td;
}

function fillTable(id, items, columns) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren();
  if (items.length === 0) {
    const row = body.insertRow();
    const td = cell(row, "empty", "none");
    td.colSpan = columns.length;
    return;
  }
  for (const item of items) {
    const row = body.insertRow();
    for (const [name, value] of columns) cell(row, name, value(item));
  }
}

function rate(now, before, seconds) {
  return seconds > 0 ? ((now - before) / seconds).toFixed(1) : "–";
}

function renderOverview(overview) {
  fillTable("sources", overview.sources, [
    ["name", (s) => s.name],
    ["num active", (s) => s.active],
    ["num backlog", (s) => s.backlog],
    ["num published", (s) => s.published],
  ]);
  const now = { at: performance.now(), counts: overview.deliveries };
  if (previous) {
    const seconds = (now.at - previous.at) / 1000;
    $("rate-delivered").textContent = rate(now.counts.delivered, previous.counts.delivered, seconds);
    $("rate-failed").textContent = rate(now.counts.failed, previous.counts.failed, seconds);
    $("rate-gave-up").textContent = rate(now.counts.gave_up, previous.counts.gave_up, seconds);
  }
  previous = now;
  const contexts = $("contexts");
  contexts.replaceChildren();
  for (const name of overview.contexts.length ? overview.contexts : [null]) {
    const li = document.createElement("li");
    li.textContent = name === null ? "none configured" : name;
    if (name === null) li.className = "empty";
    contexts.appendChild(li);
  }
  fillTable("agents", overview.agents, [
    ["name", (a) => a.name],
    ["num depth", (a) => a.depth],
    ["num leased", (a) => a.leased],
  ]);
  fillTable("channels", Object.entries(overview.channels), [
    ["name", ([status]) => status],
    ["num count", ([, count]) => count],
  ]);
}

function subscriptionRow(item) {
  let row = rows.get(item.id);
  if (row) return row;
  row = document.createElement("tr");
  row.dataset.id = item.id;
  cell(row, "id mono", item.id.replace(/^uuid:/, "").slice(0, 8) + "…", item.id);
  for (const name of ["source", "delivery", "endpoint", "status", "num backlog", "num attempts", "error", "next"]) {
    cell(row, name, "");
  }
  const action = cell(row, "action", "");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cancel";
  button.textContent = "cancel";
  button.addEventListener("click", () => cancel(item.id, button));
  action.appendChild(button);
  rows.set(item.id, row);
  return row;
}

function renderSubscriptions(page) {
  const body = document.querySelector("#subscriptions tbody");
  const showEnded = $("show-ended").checked;
  const seen = new Set();
  for (const item of page.items) {
    seen.add(item.id);
    const row = subscriptionRow(item);
    const ended = item.status !== "active";
    cell(row, "source", item.source);
    cell(row, "delivery", item.delivery);
    cell(row, "endpoint", item.notify_to || item.url);
    cell(row, "status", item.status + (item.end_reason ? ` (${item.end_reason})` : ""))
      .className = "status status-" + item.status;
    cell(row, "num backlog", item.backlog);
    cell(row, "num attempts", item.attempts);
    cell(row, "error", item.last_error || "", item.failing_since ? "failing since " + item.failing_since : "");
    cell(row, "next", ended ? "" : item.next_attempt_at || "");
    row.querySelector("button.cancel").hidden = ended;
    row.classList.toggle("ended", ended);
    row.hidden = ended && !showEnded;
    if (row.parentNode !== body) body.appendChild(row);
  }
  for (const [id, row] of rows) {
    if (!seen.has(id)) { row.remove(); rows.delete(id); }
  }
  const empty = body.querySelector("tr.placeholder");
  if (rows.size === 0 && !empty) {
    const row = body.insertRow();
    row.className = "placeholder";
    cell(row, "empty", "no subscriptions").colSpan = 10;
  } else if (rows.size > 0 && empty) {
    empty.remove();
  }
  $("more").hidden = !page.next;
}

function askToken(message) {
  waitingForToken = true;
  clearTimeout(timer);
  previous = null;
  rows.clear();
  document.querySelector("#subscriptions tbody").replaceChildren();
  $("data").hidden = true;
  $("forget").hidden = true;
  $("token-message").textContent = message;
  $("token-form").hidden = false;
  setState("401: no data without the API token", true);
  $("token").focus();
}

async function refresh() {
  try {
    const [overview, page] = await Promise.all([
      api("GET", "/api/v1/overview"),
      api("GET", "/api/v1/subscriptions?limit=500"),
    ]);
    if (waitingForToken) return;
    $("data").hidden = false;
    $("forget").hidden = !token;
    renderOverview(overview);
    renderSubscriptions(page);
    setState("updated " + new Date().toLocaleTimeString());
  } catch (err) {
    if (err instanceof Unauthorized) {
      askToken(token
        ? "herald refused this token (401): enter the API token again."
        : "herald needs its API token (401): enter it to see anything here.");
    } else {
      setState("error: " + err.message, true);
    }
  }
}

async function poll() {
  await refresh();
  if (!waitingForToken) timer = setTimeout(poll, POLL_MS);
}

async function cancel(id, button) {
  if (!window.confirm(`Cancel subscription ${id}? Its subscriber is told it ended.`)) return;
  button.disabled = true;
  try {
    await api("DELETE", "/api/v1/subscriptions/" + encodeURIComponent(id));
    await refresh();
  } catch (err) {
    if (err instanceof Unauthorized) askToken("herald refused this token (401): enter the API token again.");
    else setState("cancel failed: " + err.message, true);
  } finally {
    button.disabled = false;
  }
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("token-form").hidden = true;
  waitingForToken = false;
  setState("loading…");
  poll();
});

$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  token = "";
  askToken("Token forgotten: enter the API token to see anything here.");
});

$("show-ended").addEventListener("change", () => refresh());

poll();
