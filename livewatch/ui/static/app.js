// livewatch UI: plain JavaScript, no build step. Everything that comes from models, streams or
// files is inserted with textContent, never parsed as HTML, so a label is text, never markup.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { view: "overview", stream: null, streams: [], timer: null, windows: [], selected: null };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v != null && v !== ""));
  const response = await fetch(`api/${path}?${query}`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function colour(label) {  // the same label always gets the same colour, dark enough for white text
  let hash = 0;
  for (const ch of String(label)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360}, 60%, 34%)`;
}

const pct = (p) => (p == null ? "–" : `${(p * 100).toFixed(1)} %`);
const time = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
function ago(seconds) {
  if (seconds == null) return "–";
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}
const whenOf = (d) => d.start || d.created_at;

// -- overview ------------------------------------------------------------------------------------

async function loadOverview() {
  const data = await api("streams");
  state.streams = data.streams;
  const cards = data.streams.map((s) => {
    const dl = el("dl");
    const row = (term, value) => dl.append(el("dt", { text: term }), el("dd", { text: value }));
    row("probability", pct(s.probability));
    row("seen", ago(s.age_s));
    row("segment time", time(s.at));
    row("latency", s.latency_ms == null ? "–" : `${(s.latency_ms / 1000).toFixed(1)} s`);
    row("last 24 h", `${s.counts.classified} classified, ${s.counts.errors} errors`);
    return el("li", { class: `card ${s.health}`, "data-stream": s.stream },
      el("h3", {}, el("a", { href: `#/stream/${encodeURIComponent(s.stream)}`, text: s.stream })),
      el("div", { class: "health", text: s.health }),
      el("div", { class: "label", text: s.error ? `error: ${s.error}` : s.label ?? "–" }),
      s.windows ? thumbnail(s.uri, Math.floor(s.windows / 2), `the latest segment of ${s.stream}`, s.stream) : null,
      dl);
  });
  $("cards").replaceChildren(...cards);
  $("no-streams").hidden = cards.length > 0;
  const d = data.daemon;
  $("daemon").textContent = d ? `daemon ${d.status}: ${d.classified} classified, ${d.failed} errors, ` +
    `${d.received} received this run` : "reading the store (no daemon)";
  const select = $("error-stream");
  const known = new Set([...select.options].map((o) => o.value));
  for (const s of data.streams) if (!known.has(s.stream)) select.append(el("option", { value: s.stream, text: s.stream }));
}

// -- stream timeline -----------------------------------------------------------------------------

function thumbnail(uri, n, what, stream) {  // the store's JPEG of a window's middle frame, if it has one
  const query = new URLSearchParams({ uri, n });
  if (typeof stream === "string") query.set("stream", stream);  // a store keyed by stream reads it by key
  const img = el("img", { class: "thumb", alt: `frame from ${what}`, loading: "lazy",
    src: `api/thumbnail?${query}` });
  img.addEventListener("error", () => img.remove());
  return img;
}

function player(stream, uri, at = null) {  // the stored segment, remuxed to MP4, where its file is reachable
  const video = el("video", { controls: "", preload: "metadata", class: "segment-video",
    "aria-label": `the segment ${uri}`, src: `api/segment?${new URLSearchParams({ stream, uri })}` });
  video.addEventListener("error", () => video.remove());
  if (at != null) {  // seconds from the segment's first frame (the MP4 starts at 0), then play
    video.muted = true;  // the remux keeps only the video: nothing is lost, and browsers let it play
    video.addEventListener("seeked", () => video.play().catch(() => {}), { once: true });  // else paused there
    video.addEventListener("loadedmetadata", () => { video.currentTime = at; }, { once: true });
  }
  return video;
}

function showDetails(fields, thumbs = [], segment = null) {  // thumbs: [uri, n, stream]; segment: [stream, uri, at?]
  $("details-hint").hidden = true;
  const dl = $("details-list");
  dl.replaceChildren();
  for (const [term, value] of fields) {
    if (value == null || value === "") continue;
    dl.append(el("dt", { text: term }), el("dd", { text: String(value) }));
  }
  $("details-thumbs").replaceChildren(...thumbs.map(([uri, n, stream]) => thumbnail(uri, n, `window ${n}`, stream)),
    ...(segment ? [player(...segment)] : []));
}

function detectionFields(d) {
  return [["segment", d.uri], ["stream", d.stream], ["sequence", d.sequence],
    ["time", time(whenOf(d))], ["label", d.label], ["probability", pct(d.probability)],
    ["error", d.error],
    ["top-k", (d.top_k || []).map((l) => `${l.label} ${pct(l.probability)}`).join(", ")],
    ["frames", (d.frames || []).join("–")], ["windows", (d.windows || []).length],
    ["decode", d.decode_ms == null ? null : `${d.decode_ms.toFixed(0)} ms`],
    ["inference", d.infer_ms == null ? null : `${d.infer_ms.toFixed(0)} ms`],
    ["latency", d.latency_ms == null ? null : `${d.latency_ms.toFixed(0)} ms`],
    ["model", d.model ? `${d.model.name} ${d.model.version}` : null], ["stored", d.created_at]];
}

const eventTime = (t) => (typeof t === "number" ? `${t.toFixed(1)} s` : time(t));

function eventFields(e) {
  return [["event", e.id], ["stream", e.stream], ["label", e.label], ["state", e.state],
    ["from", eventTime(e.start)], ["to", eventTime(e.end)], ["duration", `${e.duration} s`],
    ["peak", pct(e.peak_probability)], ["mean", pct(e.mean_probability)], ["windows", e.windows],
    ["segments", (e.segments || []).join("\n")], ["revision", e.revision]];
}

function eventOffset(e) {  // seconds into its first segment where event `e` starts
  const mine = state.windows.filter((w) => w.uri === e.segments[0]);
  const timed = mine.find((w) => w.start);
  if (typeof e.start === "string" && timed) {  // program date-time: exact
    const segmentStart = Date.parse(timed.start) - timed.offset_start * 1000;
    return Math.max(0, (Date.parse(e.start) - segmentStart) / 1000);
  }
  const first = mine.find((w) => w.label === e.label);  // sequence clock: its first window of the label
  return first ? first.offset_start : 0;
}

async function selectEvent(e) {  // the timeline to its start, its first segment played from there
  // Without program date-times the bands are segments placed by when they were stored: none is marked.
  state.selected = typeof e.start === "string" ? Date.parse(e.start) : null;
  const zoom = $("zoom");
  if (state.selected != null && state.selected < Date.now() - Number(zoom.value) * 1000) {
    const wider = [...zoom.options].find((o) => state.selected >= Date.now() - Number(o.value) * 1000);
    zoom.value = (wider || zoom.options[zoom.options.length - 1]).value;  // its start in the span
    await loadStream();  // (marks the band)
  } else markSelected();
  const segment = e.segments?.length ? [e.stream, e.segments[0], eventOffset(e)] : null;
  showDetails(eventFields(e), (e.segments || []).slice(0, 3).map((uri) => [uri, 0, e.stream]), segment);
}

function markSelected() {  // the band where the selection starts, outlined
  for (const band of $("timeline").querySelectorAll(".band")) {
    const from = Date.parse(band.dataset.from), to = Date.parse(band.dataset.to);
    const on = state.selected != null && from <= state.selected && state.selected < to;
    band.classList.toggle("selected", on);
    if (on) band.setAttribute("aria-current", "true");
    else band.removeAttribute("aria-current");
  }
}

async function loadEvents(params) {
  const { events } = await api("events", { ...params, limit: 500 });
  $("events").replaceChildren(...events.slice().reverse().map((e) => el("li", {},
    el("button", { type: "button", onclick: () => selectEvent(e) },
      el("span", { class: "when", text: `${eventTime(e.start)} · ${e.state}` }),
      el("span", { text: `${e.label} ${pct(e.peak_probability)}` })))));
  $("no-events").hidden = events.length > 0;
}

async function loadStream() {
  const span = Number($("zoom").value) * 1000;
  const to = Date.now(), from = to - span;
  const params = { stream: state.stream, since: new Date(from).toISOString(), limit: 5000 };
  const [{ detections }, { windows }] = await Promise.all([api("detections", params),
    api("windows", params), loadEvents(params)]);
  state.windows = windows;
  const bands = [];
  const withWindows = new Set(windows.map((w) => w.uri));
  for (const w of windows) {
    if (!w.start) continue;  // no program date-time: shown at segment resolution below
    bands.push({ from: Date.parse(w.start), to: Date.parse(w.end), label: w.label, kind: "window",
      fields: [["segment", w.uri], ["window", `${w.n} (${w.offset_start.toFixed(1)}–${w.offset_end.toFixed(1)} s)`],
        ["time", `${time(w.start)} – ${time(w.end)}`], ["label", w.label],
        ["probability", pct(w.probability)], ["frames", `${w.first_frame}–${w.last_frame}`]],
      thumbs: [[w.uri, w.n, w.stream]], segment: [w.stream, w.uri] });
  }
  for (const d of detections) {
    if (d.start && withWindows.has(d.uri) && !d.error) continue;
    const start = Date.parse(whenOf(d));
    bands.push({ from: start, to: start + (d.duration || 2) * 1000, label: d.error ? "error" : d.label,
      kind: d.error ? "segment error" : "segment", fields: detectionFields(d),
      thumbs: (d.windows || []).map((w, n) => [d.uri, n, d.stream]), segment: [d.stream, d.uri] });
  }
  bands.sort((a, b) => a.from - b.from);
  const labels = new Map();
  const nodes = bands.filter((b) => b.to > from).map((b) => {
    const left = Math.max(0, (b.from - from) / span) * 100;
    const width = Math.max(0.15, ((Math.min(b.to, to) - Math.max(b.from, from)) / span) * 100);
    if (b.kind !== "segment error") labels.set(b.label, colour(b.label));
    const name = `${b.label} from ${new Date(b.from).toLocaleTimeString()}`;
    return el("button", { type: "button", class: `band ${b.kind}`, title: name,
      "aria-label": name, "data-label": b.label ?? "", "data-from": new Date(b.from).toISOString(),
      "data-to": new Date(b.to).toISOString(),
      style: { left: `${left}%`, width: `${width}%`, background: colour(b.label) },
      onclick: () => { state.selected = b.from; markSelected(); showDetails(b.fields, b.thumbs, b.segment); },
      text: width > 6 ? b.label : "" });
  });
  $("timeline").replaceChildren(...nodes);
  markSelected();
  $("axis-from").textContent = new Date(from).toLocaleTimeString();
  $("axis-to").textContent = "now";
  $("legend").replaceChildren(...[...labels].map(([label, c]) =>
    el("li", {}, el("span", { class: "swatch", style: { background: c } }), el("span", { text: label }))));
  const recent = detections.slice(-50).reverse().map((d) => el("li", {},
    el("button", { type: "button", onclick: () => showDetails(detectionFields(d),
      (d.windows || []).map((w, n) => [d.uri, n, d.stream]), [d.stream, d.uri]) },
      el("span", { class: "when", text: time(whenOf(d)) }),
      el("span", { class: d.error ? "reason" : "", text: d.error ? `error: ${d.error}` : `${d.label} ${pct(d.probability)}` }))));
  $("recent").replaceChildren(...recent);
}

// -- errors --------------------------------------------------------------------------------------

async function loadErrors() {
  const { errors } = await api("errors", { stream: $("error-stream").value, limit: 500 });
  $("error-list").replaceChildren(...errors.reverse().map((d) => el("li", {},
    el("div", { class: "row" }, el("span", { class: "when", text: time(whenOf(d)) }),
      el("strong", { text: d.stream }), el("span", { text: " " }),
      el("span", { class: "reason", text: d.error }), el("div", { class: "when", text: d.uri })))));
  $("no-errors").hidden = errors.length > 0;
}

// -- routing and live updates --------------------------------------------------------------------

async function refresh() {
  try {
    if (state.view === "overview") await loadOverview();
    else if (state.view === "stream") await loadStream();
    else await Promise.all([loadOverview(), loadErrors()]);
  } catch (err) {
    setLive(false, `cannot reach the daemon (${err.message})`);
  }
}

function route() {
  const hash = location.hash || "#/";
  const match = hash.match(/^#\/stream\/(.+)$/);
  state.view = match ? "stream" : hash === "#/errors" ? "errors" : "overview";
  state.stream = match ? decodeURIComponent(match[1]) : null;
  $("overview").hidden = state.view !== "overview";
  $("stream").hidden = state.view !== "stream";
  $("errors").hidden = state.view !== "errors";
  if (state.stream) $("stream-title").textContent = `Stream ${state.stream}`;
  document.title = state.stream ? `${state.stream} · livewatch` : "livewatch";
  refresh();
}

function setLive(on, text) {
  const live = $("live");
  live.className = `live ${on ? "on" : "off"}`;
  live.textContent = text;
}

let source = null;
function connect() {  // EventSource retries by itself; a closed one (server gone) is reopened here
  source = new EventSource("api/live");
  source.addEventListener("hello", () => { setLive(true, "live"); refresh(); });
  source.addEventListener("detection", (event) => {
    const d = JSON.parse(event.data);
    if (state.view === "overview" || (state.view === "stream" && d.stream === state.stream) ||
        (state.view === "errors" && d.error)) refresh();
  });
  source.onerror = () => {
    setLive(false, "reconnecting…");
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  };
}

window.addEventListener("hashchange", route);
$("zoom").addEventListener("change", refresh);
$("error-stream").addEventListener("change", refresh);
setInterval(() => { if (state.view === "overview") refresh(); }, 10000);  // ages tick on
route();
connect();
