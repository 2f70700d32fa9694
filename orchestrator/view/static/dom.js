// Small helpers every view shares: building elements, formatting numbers, asking the API,
// and the page's address (the hash: #/run/ID?filters, #/compare?a=..&b=..).

export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.setAttribute("class", value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && !svg && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function pct(x, digits = 1) {
  return x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)}%`;
}

export function num(x, digits = 2) {
  if (x === null || x === undefined) return "–";
  if (Number.isInteger(x)) return x.toLocaleString("en");
  return Number(x.toFixed(digits)).toLocaleString("en", { maximumFractionDigits: digits });
}

export function interval(ci) {
  return ci ? `${pct(ci[0])}–${pct(ci[1])}` : "–";
}

// A difference of shares in percentage points, its sign written (±0.0 when it rounds to nothing).
export function signed(x) {
  const points = (100 * Math.abs(x)).toFixed(1);
  return `${points === "0.0" ? "±" : x > 0 ? "+" : "−"}${points} pts`;
}

// An accuracy with its interval drawn as a bar on 0..100% (the point a tick).
export function intervalBar(accuracy, ci) {
  const bar = h("span", { class: "ci", title: `95% interval ${interval(ci)}` });
  const range = h("span", { class: "ci-range" });
  const mark = h("span", { class: "ci-mark" });
  if (ci) {
    range.style.left = `${100 * ci[0]}%`;
    range.style.width = `${Math.max(0.5, 100 * (ci[1] - ci[0]))}%`;
  }
  mark.style.left = `${100 * accuracy}%`;
  bar.append(range, mark);
  return bar;
}

export function mark(correct) {
  if (correct === null || correct === undefined) return h("span", { class: "badge muted", title: "not scored" }, "–");
  return correct
    ? h("span", { class: "badge right", title: "right" }, "✓")
    : h("span", { class: "badge wrong", title: "wrong" }, "✗");
}

// A performance mark once what was just drawn is on screen (the frame after it is painted):
// what the benchmark reads as the time a view took to show.
export function markPainted(name) {
  requestAnimationFrame(() => setTimeout(() => performance.mark(name), 0));
}

export class ApiError extends Error {}

// GET one JSON document of the viewer's API; an error answer becomes an ApiError with its message.
export async function api(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "" && value !== false) query.set(key, String(value));
  }
  const url = query.size ? `${path}?${query}` : path;
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" } });
  } catch (exc) {
    throw new ApiError(`the viewer cannot be reached (${exc.message}): is coe view still running?`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(body?.error?.message || `${response.status} ${response.statusText}`);
  return body;
}

// The address: "#/run/ID/q/3?method=ours" -> {parts: ["run", "ID", "q", "3"], params: {...}}.
export function parseHash(hash = location.hash) {
  const [path, query = ""] = hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: Object.fromEntries(new URLSearchParams(query)) };
}

export function link(parts, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "" && value !== false) query.set(key, String(value));
  }
  const path = parts.map(encodeURIComponent).join("/");
  return `#/${path}${query.size ? `?${query}` : ""}`;
}

export function go(parts, params = {}) {
  location.hash = link(parts, params);
}

export function table(head, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, head.map((cell) => (cell instanceof Node ? cell : h("th", {}, cell))))),
    h("tbody", {}, rows),
  );
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

// A <select> of choices ([value, label] pairs or plain values) calling onchange with the value.
export function select(name, choices, value, onchange, label) {
  const el = h(
    "select",
    { name, "aria-label": label || name, onchange: (e) => onchange(e.target.value) },
    choices.map((c) => {
      const [v, text] = Array.isArray(c) ? c : [c, c];
      return h("option", { value: v, selected: String(v) === String(value ?? "") }, text);
    }),
  );
  return el;
}

export function checkbox(name, checked, onchange, text) {
  return h(
    "label",
    { class: "check" },
    h("input", { type: "checkbox", name, checked: Boolean(checked), onchange: (e) => onchange(e.target.checked) }),
    text,
  );
}
