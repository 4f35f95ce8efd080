"use strict";
// Colonnade Manager: pages over the admin API on this binding. Every text from
// the server is set as text (never as HTML), so a URL or a setting cannot become
// markup. Pages are chosen by the location's hash: #/overview, #/pools,
// #/requests, #/log, #/traces, #/traces/ID, #/config.

const POLL_MS = 2000;
let session = null;
let timer = null;
// The view's generation, one more at each route(): the polls and the first
// drawing of a view left meanwhile (its answers still coming) stop there, so
// they neither re-arm a timer of their own nor mark the page drawn.
let view = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    // Through the CSSOM: the page's policy refuses style attributes.
    else if (name === "style") node.style.cssText = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function announce(text) {
  document.getElementById("announce").textContent = text;
}

class SignedOut extends Error {}
// A view's read whose answer came after the user left the view: nothing is drawn.
class Left extends Error {}
// Where nobody awaits such a read (an editor opened, the configuration drawn again
// after a save: an action's calls), it ends there, not as an unhandled error.
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof Left) event.preventDefault();
});

// A call to the API with the session's CSRF token; a session that ran out sends
// the user to the sign-in page (what they typed is already in sessionStorage).
// A read (GET) whose answer comes after the user moved to another view throws Left,
// so that the view left behind draws nothing on the one shown now; an action's
// answer (POST, PUT) is still announced.
async function api(method, path, body) {
  const mine = view;
  const headers = {};
  if (session) headers["X-Colonnade-CSRF"] = session.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  if (response.status === 401) {
    location.assign("/console/sign-in?expired=1&next=" + encodeURIComponent(location.hash));
    throw new SignedOut();
  }
  const data = await response.json();
  if (method === "GET" && mine !== view) throw new Left();
  data.httpStatus = response.status;
  return data;
}

function poll(render) {
  const mine = view;
  const tick = async () => {
    if (mine !== view) return;
    try {
      await render();
    } catch (error) {
      if (mine === view && !(error instanceof SignedOut)) announce("Cannot reach the server: " + error.message);
      return;
    }
    if (mine === view) timer = setTimeout(tick, POLL_MS);
  };
  return tick();
}

function main() {
  return document.getElementById("main");
}

function page(title, ...content) {
  const root = main();
  root.replaceChildren(el("h1", { text: title }), ...content);
  document.title = title + " · Colonnade Manager";
  for (const link of document.querySelectorAll("nav a")) {
    const here = location.hash.startsWith(link.getAttribute("href"));
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 120) return s.toFixed(0) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function micro(us) {
  return us >= 1000 ? (us / 1000).toFixed(2) + " ms" : us + " µs";
}

function table(caption, columns, rows) {
  return el("div", { class: "scroll" },
    el("table", {},
      el("caption", { text: caption }),
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c })))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c)))))));
}

// -- overview ------------------------------------------------------------------

async function overview() {
  page("Overview", el("p", { text: "Loading…" }));
  const counters = el("dl", { class: "counters", "aria-live": "off" });
  main().replaceChildren(main().firstChild, counters);
  await poll(async () => {
    const [server, workers, pools] = await Promise.all([
      api("GET", "/api/server"), api("GET", "/api/workers"), api("GET", "/api/pools"),
    ]);
    const s = server.server || {};
    const list = workers.workers || [];
    const sum = (key) => list.reduce((total, w) => total + (w[key] || 0), 0);
    const shown = [
      ["Master pid", s.pid],
      ["Uptime", seconds(s.uptime)],
      ["Configuration generation", s.generation],
      ["Sites", s.sites],
      ["Pools", (pools.pools || []).map((p) => p.name + " (" + p.state + ")").join(", ")],
      ["Workers ready", list.filter((w) => w.state === "ready").length + " of " + list.length],
      ["Requests served", sum("requests")],
      ["Requests executing", sum("active")],
      ["Connections", sum("connections")],
      ["Memory (RSS)", bytes(sum("rss"))],
      ["Broken web.toml files", (s.broken || []).length],
    ];
    counters.replaceChildren(...shown.flatMap(([name, value]) => [
      el("div", { class: "counter", "data-name": name },
        el("dt", { text: name }), el("dd", { text: value === undefined ? "–" : value })),
    ]));
  });
}

// -- pools and workers -----------------------------------------------------------

async function pools() {
  page("Pools and workers");
  const holder = el("div");
  main().append(holder);
  await poll(async () => {
    const data = await api("GET", "/api/pools");
    const focused = document.activeElement && document.activeElement.dataset.action;
    holder.replaceChildren(...(data.pools || []).map((pool) => el("section", { class: "pool", "data-pool": pool.name },
      el("h2", {}, pool.name, " ", el("span", { class: "badge state-" + pool.state, text: pool.state })),
      pool.reason ? el("p", { text: pool.reason }) : null,
      el("p", {}, "queue " + pool.queue + " · failures " + pool.failures + " · start " + pool.start),
      el("div", { class: "actions" }, ["recycle", "stop", "start"].map((action) => el("button", {
        type: "button",
        "data-action": pool.name + "/" + action,
        onclick: () => act(pool.name, action),
      }, action[0].toUpperCase() + action.slice(1)))),
      table("Workers of " + pool.name,
        ["pid", "state", "uptime", "requests", "active", "connections", "RSS", "CPU", "recycle reason"],
        pool.workers.map((w) => [w.pid, w.state, seconds(w.uptime), w.requests, w.active,
          w.connections, bytes(w.rss), (w.cpu || 0).toFixed(2) + " s", w.recycle_reason || ""])))));
    if (focused) {
      const again = holder.querySelector(`[data-action="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  });
}

async function act(pool, action) {
  const answer = await api("POST", "/api/pools/" + encodeURIComponent(pool) + "/" + action);
  announce(answer.ok ? answer.message || action + " done" : "Refused: " + answer.error);
}

// -- the request monitor ---------------------------------------------------------

// Every request executing in every worker (GET /api/requests, the `requests`
// command), longest-running first, refreshed every 2 seconds.
async function requests() {
  page("Executing requests");
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  const form = el("form", { class: "inline", onsubmit: (event) => {
    event.preventDefault();
    location.hash = "#/requests?elapsed=" + encodeURIComponent(form.elements.elapsed.value || "0");
  } }, el("label", { for: "elapsed" }, "Running for at least (ms)"),
  el("input", { id: "elapsed", name: "elapsed", type: "number", min: 0, value: query.get("elapsed") || "0" }),
  el("button", { type: "submit" }, "Filter"));
  const holder = el("div", { class: "monitor" });
  main().append(form, holder);
  const elapsed = encodeURIComponent(query.get("elapsed") || "0");
  await poll(async () => {
    const data = await api("GET", "/api/requests?elapsed=" + elapsed);
    if (!data.ok) {
      holder.replaceChildren(el("p", { role: "alert", text: data.error || "The monitor did not answer." }));
      return;
    }
    const answered = data.workers || 0;
    const rows = (data.requests || []).map((r) => [
      el("a", { href: "#/requests/" + encodeURIComponent(r.id), text: r.id }), r.site, r.app, r.pool, r.pid, r.client,
      r.verb, r.url, r.stage, r.module, r.elapsed + " ms"]);
    holder.replaceChildren(
      el("p", { text: answered + (answered === 1 ? " worker" : " workers") + " answered" + (data.unanswered ? ", " + data.unanswered + " did not" : "") }),
      rows.length ? table("Executing requests, longest-running first",
        ["id", "site", "application", "pool", "pid", "client", "verb", "URL", "stage", "module", "elapsed"], rows)
        : el("p", { text: "No request is executing." }));
  });
}

// One executing request, opened from the monitor: everything the monitor knows of
// it, refreshed every 2 seconds, until it finishes.
async function executingRequest(id) {
  page("Request " + id);
  const holder = el("div", { "aria-live": "polite" });
  main().append(holder, el("p", {}, el("a", { href: "#/requests", text: "All executing requests" })));
  await poll(async () => {
    const data = await api("GET", "/api/requests");
    const r = (data.requests || []).find((row) => row.id === id);
    if (!r) {
      holder.replaceChildren(el("p", { class: "finished", text: "Request " + id + " is no longer executing: it finished." }));
      return;
    }
    holder.replaceChildren(el("dl", { class: "summary" }, [
      ["Request", r.verb + " " + r.url], ["Stage", r.stage], ["Module", r.module],
      ["Elapsed", r.elapsed + " ms"], ["Site", r.site], ["Application", r.app],
      ["Pool · pid", r.pool + " · " + r.pid], ["Client", r.client],
    ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-name": k, text: v })])));
  });
}

// -- the access log ----------------------------------------------------------------

// The last lines of a site's access log file (GET /api/sites/SITE/log), filtered
// by a substring on the server, refreshed every 2 seconds; newest line last.
async function accessLog() {
  page("Access log");
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  const sites = (await api("GET", "/api/sites")).sites || [];
  const site = query.get("site") || (sites[0] && sites[0].name) || "";
  const lines = query.get("lines") || "100";
  const contains = query.get("contains") || "";
  const form = el("form", { class: "inline", onsubmit: (event) => {
    event.preventDefault();
    const f = form.elements;
    location.hash = "#/log?" + new URLSearchParams({ site: f.site.value, lines: f.lines.value || "100", contains: f.contains.value });
  } },
  el("label", { for: "site" }, "Site"),
  el("select", { id: "site", name: "site" }, sites.map((s) => el("option", { value: s.name, selected: s.name === site }, s.name))),
  el("label", { for: "contains" }, "Lines containing"),
  el("input", { id: "contains", name: "contains", type: "search", maxlength: 256, value: contains }),
  el("label", { for: "lines" }, "Last"),
  el("input", { id: "lines", name: "lines", type: "number", min: 1, max: 1000, value: lines }),
  el("button", { type: "submit" }, "Show"));
  const holder = el("div", { class: "log" });
  main().append(form, holder);
  const ask = "/api/sites/" + encodeURIComponent(site) + "/log?" + new URLSearchParams(contains ? { lines, contains } : { lines });
  await poll(async () => {
    const data = await api("GET", ask);
    if (!data.ok) {
      holder.replaceChildren(el("p", { role: "alert", text: data.error }));
      return;
    }
    const shown = data.lines.length + " line" + (data.lines.length === 1 ? "" : "s")
      + (contains ? " containing “" + contains + "”" : "") + " from " + data.file
      + (data.truncated ? " (its last 64 KiB)" : "");
    holder.replaceChildren(el("p", { class: "log-summary", text: shown }),
      data.fields ? el("p", { class: "log-fields", text: data.fields }) : null,
      el("pre", { class: "log-lines", tabindex: 0, "aria-label": "Access log lines, newest last", text: data.lines.join("\n") }));
  });
}

// -- traces ------------------------------------------------------------------------

async function traces() {
  page("Failed request traces");
  const data = await api("GET", "/api/traces");
  const rows = (data.traces || []).map((t) => [
    t.time, t.site, t.status, t.method,
    el("a", { href: "#/traces/" + encodeURIComponent(t.id), text: t.url }),
    t.time_taken_ms + " ms", t.reason,
  ]);
  main().append(
    el("p", { text: "Folder: " + (data.directory || "(none)") }),
    rows.length ? table("Kept traces, newest first", ["time", "site", "status", "method", "URL", "time taken", "why kept"], rows)
      : el("p", { text: "No trace has been kept." }));
}

// The waterfall: a row per stage (its span), under it a row per hook, bars placed
// by their entry and exit times; events are markers on their own row.
async function trace(id) {
  page("Trace " + id);
  const data = await api("GET", "/api/traces/" + encodeURIComponent(id));
  if (!data.ok) {
    main().append(el("p", { role: "alert", text: data.error }));
    return;
  }
  const t = data.trace;
  const r = t.request || {};
  const hooks = t.hooks || [];
  const events = t.events || [];
  const end = Math.max(1, ...hooks.map((h) => h.exit_us), ...events.map((e) => e.at_us));
  const at = (us) => (100 * us / end).toFixed(3) + "%";
  const details = el("p", { class: "details", "aria-live": "polite", text: "Hover or focus a bar for its timings." });
  const show = (text) => () => { details.textContent = text; };
  const bar = (cls, entry, exit, text) => el("span", {
    class: "bar " + cls, tabindex: 0, role: "img", "aria-label": text, title: text,
    style: `left:${at(entry)};width:max(2px, ${at(exit - entry)})`,
    onmouseenter: show(text), onfocus: show(text),
  });
  const rows = [];
  for (const stage of t.stages || []) {
    const label = stage.stage + " (" + stage.hooks + " hook" + (stage.hooks === 1 ? "" : "s") + ")";
    rows.push(el("div", { class: "row stage" },
      el("span", { class: "label", text: stage.stage }),
      el("span", { class: "track" }, bar("stage-bar", stage.entry_us, stage.exit_us,
        label + ": " + micro(stage.entry_us) + " → " + micro(stage.exit_us) + " (" + micro(stage.exit_us - stage.entry_us) + ")"))));
    for (const h of hooks.filter((h) => h.stage === stage.stage && h.entry_us >= stage.entry_us && h.exit_us <= stage.exit_us)) {
      rows.push(el("div", { class: "row hook outcome-" + h.outcome },
        el("span", { class: "label", text: h.module }),
        el("span", { class: "track" }, bar("hook-bar", h.entry_us, h.exit_us,
          h.stage + " · " + h.module + ": " + micro(h.entry_us) + " → " + micro(h.exit_us) + " (" + micro(h.exit_us - h.entry_us) + "), " + h.outcome))));
    }
  }
  const describe = (e) => Object.entries(e).filter(([k]) => !["at_us", "level", "kind"].includes(k))
    .map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join(" ");
  rows.push(el("div", { class: "row events" },
    el("span", { class: "label", text: "events" }),
    el("span", { class: "track" }, events.map((e) => {
      const text = micro(e.at_us) + " " + e.level + " " + e.kind + " " + describe(e);
      return el("span", {
        class: "marker level-" + e.level, tabindex: 0, role: "img", "aria-label": text, title: text,
        style: `left:${at(e.at_us)}`, onmouseenter: show(text), onfocus: show(text),
      });
    }))));
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => el("span", { class: "tick", style: `left:${f * 100}%`, text: micro(Math.round(f * end)) }));
  main().append(
    el("dl", { class: "summary" }, [
      ["Request", r.method + " " + r.url], ["Status", r.status + (r.substatus ? "." + r.substatus : "")],
      ["Time taken", r.time_taken_ms + " ms"], ["Site", t.site], ["Application", t.application],
      ["Pool · pid", t.pool + " · " + t.pid], ["Handler", r.handler], ["User", r.user ? r.user + " (" + r.auth_type + ")" : "anonymous"],
      ["Why kept", t.reason], ["Time", t.time],
    ].flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v === null || v === undefined ? "–" : v })])),
    el("h2", { text: "Waterfall" }),
    el("div", { class: "waterfall", role: "group", "aria-label": "Stages and modules over time" },
      el("div", { class: "row axis" }, el("span", { class: "label" }), el("span", { class: "track" }, ticks)),
      rows),
    details,
    el("h2", { text: "Events" }),
    table("Events in order", ["at", "level", "kind", "details"], events.map((e) => [micro(e.at_us), e.level, e.kind, describe(e)])));
}

// -- configuration -------------------------------------------------------------------

function draftKey(site, path, section) {
  return "colonnade-draft:" + site + ":" + path + ":" + section;
}

function configHash(site, path) {
  return "#/config?site=" + encodeURIComponent(site) + "&path=" + encodeURIComponent(path);
}

// The tree: site → application → each folder with a web.toml (GET /api/config/tree).
function configTree(sites, site, path) {
  const link = (s, p, text, extra) => el("a", {
    href: configHash(s, p),
    "aria-current": s === site && p === path ? "page" : null,
  }, text, extra || null);
  const folder = (s, a, f) => el("li", { "data-folder": f.path },
    link(s.name, f.path, f.path === a.path ? "web.toml" : f.path,
      f.broken
        ? el("span", { class: "badge broken", title: f.broken, text: "500.19" })
        : el("span", { class: "badge file", title: f.file + ": [" + f.sections.join("], [") + "]", text: "web.toml" })));
  const application = (s, a) => el("li", { "data-app": a.path },
    link(s.name, a.path, a.path, el("span", { class: "badge", title: "application pool", text: a.pool })),
    el("ul", {}, a.folders.map((f) => folder(s, a, f))));
  return el("ul", { class: "tree" }, sites.map((s) => el("li", {},
    link(s.name, "/", "site " + s.name),
    el("ul", {}, s.applications.map((a) => application(s, a))))));
}

async function config() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  const sites = (await api("GET", "/api/config/tree")).sites || [];
  const site = query.get("site") || (sites[0] && sites[0].name) || "";
  const path = query.get("path") || "/";
  const form = el("form", { class: "inline", onsubmit: (event) => {
    event.preventDefault();
    location.hash = configHash(site, form.elements.path.value);
  } }, el("label", { for: "path" }, "URL path"), el("input", { id: "path", name: "path", value: path }), el("button", { type: "submit" }, "Show"));
  page("Configuration", el("div", { class: "split" },
    el("nav", { "aria-label": "Sites, applications and folders with a web.toml" }, configTree(sites, site, path)),
    el("div", { id: "settings" }, form)));
  const found = await api("GET", "/api/config?site=" + encodeURIComponent(site) + "&path=" + encodeURIComponent(path));
  const holder = document.getElementById("settings");
  if (!found.ok) {
    holder.append(el("p", { role: "alert", text: found.error }));
    return;
  }
  const c = found.config;
  holder.append(el("p", { text: "Site " + c.site + " · application " + c.application + " · handler " + (c.handler && c.handler.name || c.handler || "–") }));
  if (c.broken) holder.append(el("p", { role: "alert", class: "error", text: c.broken }));
  for (const [name, rows] of Object.entries(c.sections)) {
    const keys = Object.entries(rows);
    holder.append(el("section", { class: "section", "data-section": name },
      el("h2", {}, name, " ", el("button", { type: "button", class: "edit", onclick: () => edit(site, path, name, c.sections[name]) }, "Edit [" + name + "]")),
      table("Effective [" + name + "] at " + path, ["key", "value", "from"],
        keys.map(([k, v]) => [
          [k, v.locked ? el("span", { class: "badge locked", title: "A web.toml may not override this: [lock] " + v.locked, text: "locked" }) : null],
          JSON.stringify(v.value),
          el("span", { class: v.from === "(default)" ? "origin default" : "origin", text: v.from })]))));
  }
  const pending = Object.keys(sessionStorage).find((k) => k.startsWith(draftKey(site, path, "")));
  if (pending) {
    const name = pending.slice(draftKey(site, path, "").length);
    edit(site, path, name, c.sections[name]);
  }
}

// One form field per key of the section's schema (GET /api/config/schema/NAME): a
// choice for booleans and enumerations (with "not set here"), a number or text
// input, and JSON for lists and tables. Empty means: not set at this level.
function fieldFor(section, spec, raw, effective) {
  const id = "field-" + section + "-" + spec.key;
  const hint = [spec.type === "json" ? "JSON" : spec.type];
  if (spec.ge !== undefined) hint.push("≥ " + spec.ge);
  if (spec.gt !== undefined) hint.push("> " + spec.gt);
  if (spec.le !== undefined) hint.push("≤ " + spec.le);
  if (spec.lt !== undefined) hint.push("< " + spec.lt);
  if (effective) hint.push("now " + JSON.stringify(effective.value) + " from " + effective.from);
  else if (spec.default !== undefined) hint.push("default " + JSON.stringify(spec.default));
  let input;
  if (spec.type === "boolean" || spec.type === "enum") {
    const choices = spec.type === "boolean" ? ["true", "false"] : spec.choices.map((c) => JSON.stringify(c));
    input = el("select", { id, name: spec.key },
      el("option", { value: "", text: "(not set here)" }),
      choices.map((c) => el("option", { value: c, text: spec.type === "enum" ? JSON.parse(c) : c })));
  } else if (spec.type === "json") {
    input = el("textarea", { id, name: spec.key, rows: 2, spellcheck: "false" });
  } else {
    input = el("input", {
      id, name: spec.key,
      type: spec.type === "string" ? "text" : "number",
      step: spec.type === "integer" ? "1" : "any",
      min: spec.ge, max: spec.le, spellcheck: "false",
    });
  }
  input.value = raw;
  input.dataset.kind = spec.type;
  input.setAttribute("aria-describedby", id + "-hint " + id + "-error");
  return el("div", { class: "field", "data-key": spec.key },
    el("label", { for: id, text: spec.key },
      effective && effective.locked ? el("span", { class: "badge locked", title: "[lock] " + effective.locked, text: "locked" }) : null),
    input,
    el("p", { class: "hint", id: id + "-hint", text: hint.join(" · ") }),
    el("p", { class: "field-error", id: id + "-error", role: "alert" }));
}

// A value as its field shows it, and back.
function rawOf(spec, value) {
  if (value === undefined) return "";
  if (spec.type === "json" || spec.type === "enum" || spec.type === "boolean") return JSON.stringify(value);
  return value === null ? "" : String(value);
}

function valueOf(kind, raw) {
  if (kind === "string") return raw;
  if (kind === "integer" || kind === "number") return Number(raw);
  return JSON.parse(raw);  // boolean, enum, json
}

// The editor of one section at one level: a form of its keys, or its table as JSON
// text. What is typed is kept in sessionStorage until it is saved (a form's fields
// as typed, the text as typed), so a session that expires mid-edit loses nothing:
// it is restored, and the page says so.
async function edit(site, path, section, effective) {
  const level = "site=" + encodeURIComponent(site) + "&path=" + encodeURIComponent(path);
  const [file, schema] = await Promise.all([
    api("GET", "/api/config/file?" + level),
    api("GET", "/api/config/schema/" + encodeURIComponent(section)),
  ]);
  const key = draftKey(site, path, section);
  const saved = sessionStorage.getItem(key);
  let draft = null;
  try {
    draft = saved === null ? null : JSON.parse(saved);
  } catch (error) {
    draft = null;
  }
  const current = (file.sections || {})[section] || {};
  const specs = schema.ok ? schema.keys : [];
  const known = new Set(specs.map((k) => k.key));
  const errors = el("ul", { class: "errors", role: "alert" });
  // Text mode when asked for, or when there is no schema to make a form of.
  let mode = draft && draft.mode === "text" || !specs.length ? "text" : "form";
  const body = el("div", { class: "editor-body" });
  const keep = () => sessionStorage.setItem(key, JSON.stringify(mode === "text"
    ? { mode, text: body.querySelector("#values").value }
    : { mode, fields: Object.fromEntries([...body.querySelectorAll("[data-kind]")].map((f) => [f.name, f.value])) }));

  function values() {
    // The section's table from the form: what is set, plus keys the form does not know.
    const out = Object.fromEntries(Object.entries(current).filter(([k]) => !known.has(k)));
    let bad = false;
    for (const field of body.querySelectorAll("[data-kind]")) {
      const error = document.getElementById(field.id + "-error");
      error.textContent = "";
      field.removeAttribute("aria-invalid");
      if (field.value.trim() === "" && field.dataset.kind !== "string") continue;
      if (field.value === "") continue;
      try {
        out[field.name] = valueOf(field.dataset.kind, field.value);
      } catch (e) {
        error.textContent = field.name + ": not JSON: " + e.message;
        field.setAttribute("aria-invalid", "true");
        bad = true;
      }
    }
    return bad ? null : out;
  }

  function showForm(table, fields) {
    mode = "form";
    body.replaceChildren(el("div", { class: "fields" }, specs.map((spec) =>
      fieldFor(section, spec, fields ? fields[spec.key] || "" : rawOf(spec, table[spec.key]), effective && effective[spec.key]))));
  }

  function showText(text) {
    mode = "text";
    const area = el("textarea", { id: "values", name: "values", rows: 10, spellcheck: "false" });
    area.value = text;
    body.replaceChildren(el("label", { for: "values" }, "Values of [" + section + "] (JSON)"), area);
  }

  body.addEventListener("input", keep);
  body.addEventListener("change", keep);
  if (draft && draft.mode === "text") showText(draft.text);
  else if (mode === "text") showText(JSON.stringify(current, null, 2));
  else showForm(current, draft && draft.fields);

  // The API's errors name file:line: section.key; each goes to its key's field.
  function showErrors(list) {
    const rest = [];
    for (const text of list) {
      const spec = mode === "form" && specs.find((k) => new RegExp("(^|[\\s:])" + section.replace(/[.]/g, "\\.") + "[.:]\\s?" + k.key.replace(/[.]/g, "\\.") + "(\\b|$)").test(text));
      const field = spec && document.getElementById("field-" + section + "-" + spec.key);
      if (field) {
        document.getElementById(field.id + "-error").textContent = text;
        field.setAttribute("aria-invalid", "true");
      } else rest.push(text);
    }
    errors.replaceChildren(...rest.map((e) => el("li", { text: e })));
    const first = body.querySelector("[aria-invalid]");
    if (first) first.focus();
  }

  async function save() {
    let table;
    if (mode === "text") {
      try {
        table = JSON.parse(body.querySelector("#values").value);
      } catch (error) {
        errors.replaceChildren(el("li", { text: "Not JSON: " + error.message }));
        return;
      }
    } else {
      table = values();
      if (table === null) return;
    }
    keep();
    errors.replaceChildren();
    const answer = await api("PUT", "/api/config/sections/" + encodeURIComponent(section) + "?" + level, { values: table, version: file.version });
    if (answer.ok) {
      sessionStorage.removeItem(key);
      announce((answer.applied === false ? "Written, not yet confirmed by every worker: " : "Saved and applied: ") + "[" + section + "] in " + file.file);
      config();
    } else {
      showErrors(answer.errors || [answer.error]);
    }
  }

  const toggle = el("button", { type: "button", class: "mode", onclick: () => {
    if (mode === "form") {
      const table = values();
      if (table === null) return;
      showText(JSON.stringify(table, null, 2));
    } else {
      let table;
      try {
        table = JSON.parse(body.querySelector("#values").value);
      } catch (error) {
        errors.replaceChildren(el("li", { text: "Not JSON: " + error.message }));
        return;
      }
      showForm(table, null);
    }
    toggle.textContent = mode === "form" ? "Edit as text (JSON)" : "Edit as a form";
    keep();
  } }, mode === "form" ? "Edit as text (JSON)" : "Edit as a form");
  const dialog = el("section", { class: "editor", "aria-label": "Edit " + section },
    el("h2", { text: "Edit [" + section + "] in " + file.file }),
    saved !== null ? el("p", { class: "restored", role: "status", text: "Restored what you typed before your session expired (not saved yet)." }) : null,
    specs.length ? el("div", { class: "actions" }, toggle) : null,
    body, errors,
    el("div", { class: "actions" },
      el("button", { type: "button", class: "save", onclick: save }, "Save"),
      el("button", { type: "button", onclick: () => { sessionStorage.removeItem(key); dialog.remove(); } }, "Discard")));
  const old = document.querySelector(".editor");
  if (old) old.remove();
  document.getElementById("settings").prepend(dialog);
  const first = body.querySelector("input, select, textarea");
  if (first) first.focus();
}

// -- routing -------------------------------------------------------------------------

async function route() {
  const mine = ++view;
  clearTimeout(timer);
  timer = null;
  const hash = location.hash || "#/overview";
  const [name, arg] = hash.slice(2).split("?")[0].split("/");
  try {
    if (name === "pools") await pools();
    else if (name === "requests" && arg) await executingRequest(decodeURIComponent(arg));
    else if (name === "requests") await requests();
    else if (name === "log") await accessLog();
    else if (name === "traces" && arg) await trace(decodeURIComponent(arg));
    else if (name === "traces") await traces();
    else if (name === "config") await config();
    else await overview();
  } catch (error) {
    if (mine === view && !(error instanceof SignedOut)) main().append(el("p", { role: "alert", text: "Error: " + error.message }));
  }
  if (mine === view) document.body.dataset.ready = hash;
}

document.addEventListener("DOMContentLoaded", async () => {
  const response = await fetch("/console/session", { credentials: "same-origin", cache: "no-store" });
  if (response.status !== 200) {
    location.assign("/console/sign-in?expired=1");
    return;
  }
  session = await response.json();
  document.getElementById("who").textContent = session.name;
  document.getElementById("sign-out").addEventListener("click", async () => {
    await fetch("/console/sign-out", { method: "POST", headers: { "X-Colonnade-CSRF": session.csrf }, credentials: "same-origin" });
    location.assign("/console/sign-in");
  });
  window.addEventListener("hashchange", () => { route(); main().focus(); });
  const next = sessionStorage.getItem("colonnade-next");
  sessionStorage.removeItem("colonnade-next");
  if (next && !location.hash) location.hash = next;  // back where the session ran out
  else route();
});
