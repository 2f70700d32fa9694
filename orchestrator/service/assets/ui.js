// The live page of `coe serve` (/ui): polls /ui/api/live, shows one answer's trace, and runs the
// playground (/ui/api/ask, server-sent events). Text from the service is only ever set as text,
// never parsed as HTML. URLs are built on location.origin: a page opened with the key in its
// address (user:key@host) has its credentials in its own URL, and the browser refuses a request
// to a URL made relative to it.
"use strict";

const POLL_MS = 1000;
const state = { policies: [], filled: false, shown: null };

function api(path, options = {}) {
  return fetch(location.origin + path, { credentials: "same-origin", ...options });
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function $(id) {
  return document.getElementById(id);
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function number(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

function setStatus(text, bad = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("bad", bad);
}

// -- the live snapshot ---------------------------------------------------------------------------

async function poll() {
  try {
    const reply = await api("/ui/api/live");
    if (!reply.ok) throw new Error(`the service answered ${reply.status}`);
    render(await reply.json());
    setStatus("");
  } catch (error) {
    setStatus(`cannot reach the service: ${error.message}`, true);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function render(live) {
  const traffic = live.traffic;
  $("service").textContent =
    `pool ${live.pool} · default policy ${live.policy}, k ${live.k} · ` +
    `${live.ready ? "ready" : "warming up"} · up ${Math.round(live.uptime_s)} s`;
  $("rps").textContent = number(traffic.per_second_10s, 2);
  $("rps-long").textContent = `${number(traffic.per_second_60s, 2)} over 60 s`;
  $("p50").textContent = traffic.latency.p50_ms === null ? "–" : `${number(traffic.latency.p50_ms)} ms`;
  $("latency").textContent = `p90 ${number(traffic.latency.p90_ms)} · p99 ${number(traffic.latency.p99_ms)} ms`;
  $("waiting").textContent = live.queue.waiting;
  $("batches").textContent = `waiting · ${live.queue.batches} batches run`;
  $("errors").textContent = traffic.errors;
  $("answered").textContent = `${traffic.answered} answered`;
  renderModels(live.models);
  renderRecent(live.recent);
  renderJobs(live.jobs);
  if (!state.filled) fillForm(live);
}

function renderModels(models) {
  fill(
    $("models").tBodies[0],
    models.map((m) =>
      el(
        "tr",
        { "data-model": m.name },
        el("td", {}, m.name),
        el("td", {}, m.role),
        el("td", {}, el("span", { class: `pill ${m.state.replace(" ", "-")}` }, m.state)),
        el("td", { class: "num" }, m.owed),
        el("td", { class: "num" }, m.loads),
        el("td", { class: "num" }, m.swaps),
      ),
    ),
  );
}

function renderRecent(recent) {
  $("recent-empty").hidden = recent.length > 0;
  fill(
    $("recent").tBodies[0],
    recent.map((r) =>
      el(
        "tr",
        { "data-number": r.number, class: r.number === state.shown ? "chosen" : "", onclick: () => showAnswer(r.number) },
        el("td", { class: "num" }, r.number),
        el("td", { class: "when" }, when(r.at)),
        el("td", { class: "text", title: r.question }, r.question),
        el("td", { class: r.error ? "text bad" : "text" }, r.error || r.choice || r.text || ""),
        el("td", {}, r.policy || ""),
        el("td", { class: "num" }, number(r.seconds, 2)),
      ),
    ),
  );
}

function renderJobs(jobs) {
  const body = $("jobs").tBodies[0];
  if (!Array.isArray(jobs)) {
    $("jobs-empty").hidden = false;
    $("jobs-empty").textContent = jobs.error;
    fill(body, []);
    return;
  }
  $("jobs-empty").hidden = jobs.length > 0;
  fill(
    body,
    jobs.map((j) =>
      el(
        "tr",
        { "data-job": j.id },
        el("td", { class: "mono" }, j.id),
        el("td", {}, j.state),
        el("td", {}, el("progress", { max: String(j.total || 1), value: String(j.done) }), ` ${j.done}/${j.total}`),
        el("td", {}, j.request && j.request.policy ? j.request.policy : ""),
      ),
    ),
  );
}

// -- one answer and its trace --------------------------------------------------------------------

async function showAnswer(n) {
  state.shown = n;
  const reply = await api(`/ui/api/answers/${n}`);
  const body = await reply.json();
  $("detail").hidden = false;
  $("detail-number").textContent = `#${n}`;
  if (!reply.ok) {
    $("detail-body").replaceChildren(el("p", { class: "bad" }, body.error.message));
    return;
  }
  const intro = el("p", {}, el("strong", {}, "Question: "), body.question);
  const options = body.options.length
    ? el("ol", { class: "options" }, ...body.options.map((o) => el("li", {}, o)))
    : null;
  const shown = body.answer ? traceView(body.answer) : el("p", { class: "bad" }, body.error);
  $("detail-body").replaceChildren(intro, options || "", shown);
  $("detail").scrollIntoView({ block: "nearest" });
}

function traceView(answer) {
  const t = answer.trace;
  const parts = [];
  parts.push(
    el(
      "p",
      { class: "answer" },
      el("strong", {}, "Answer: "),
      answer.choice ? `(${answer.choice}) ` : "",
      answer.text.trim() || "(empty)",
    ),
  );
  if (answer.error) parts.push(el("p", { class: "bad" }, answer.error));
  const skills = Object.entries(t.route.skills)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5)
    .map(([name, weight]) => `${name} ${weight.toFixed(2)}`)
    .join(", ");
  parts.push(
    el(
      "p",
      {},
      el("strong", {}, "Route: "),
      `policy ${t.route.policy}, confidence ${number(t.route.confidence, 2)}; skills: ${skills || "–"}`,
    ),
  );
  parts.push(
    el(
      "table",
      { class: "experts" },
      el("thead", {}, el("tr", {}, ...["expert", "score", "choice", "tokens", "s", "answer"].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        ...t.experts.map((e) =>
          el(
            "tr",
            { "data-expert": e.expert },
            el("td", {}, e.expert),
            el("td", { class: "num" }, number(e.score, 2)),
            el("td", {}, e.choice || ""),
            el("td", { class: "num" }, `${e.tokens_in}/${e.tokens_out}`),
            el("td", { class: "num" }, number(e.seconds, 2)),
            el(
              "td",
              { class: "text" },
              e.error ? el("span", { class: "bad" }, e.error) : el("details", {}, el("summary", {}, short(e.text)), el("pre", {}, e.text)),
            ),
          ),
        ),
      ),
    ),
  );
  const a = t.aggregation;
  if (a) {
    const how = a.skipped ? `skipped: ${a.skipped}` : a.fallback ? `fallback: ${a.fallback}` : a.method;
    parts.push(
      el(
        "p",
        {},
        el("strong", {}, "Aggregation: "),
        `${t.aggregator}, ${how}; ${a.tokens_in}/${a.tokens_out} tokens, ${number(a.seconds, 2)} s`,
      ),
    );
  }
  const stages = Object.entries(t.timings)
    .map(([stage, seconds]) => `${stage} ${number(seconds, 3)} s`)
    .join(" · ");
  parts.push(el("p", { class: "muted" }, `Timings: ${stages}; loads ${t.loads}; cache hits ${t.cache_hits}; cost ${number(t.cost, 2)}`));
  parts.push(el("p", { class: "muted mono", "data-trace-id": t.trace_id || "" }, `Trace id: ${t.trace_id || "– (nothing traces)"}`));
  return el("div", { class: "trace" }, ...parts);
}

function short(text) {
  const flat = (text || "").split(/\s+/).join(" ").trim();
  return flat.length > 120 ? `${flat.slice(0, 119)}…` : flat || "(no text)";
}

// -- the playground ------------------------------------------------------------------------------

function fillForm(live) {
  const select = $("policy");
  select.replaceChildren(...live.policies.map((p) => el("option", { value: p }, p)));
  select.value = live.policy;
  $("k").value = live.k;
  state.filled = true;
}

function stepText(kind, data) {
  switch (kind) {
    case "queued":
      return `queued (${data.ahead} ahead), policy ${data.policy}, k ${data.k}`;
    case "started":
      return "its batch started";
    case "step":
      return describeStep(data);
    default:
      return kind;
  }
}

function describeStep(e) {
  const model = e.model || "";
  switch (e.kind) {
    case "route_start":
      return `routing ${e.total || 0} question(s)`;
    case "route_done":
      return `routed in ${number(e.seconds || 0, 3)} s`;
    case "phase_start":
      return `phase ${e.phase}: ${e.total || 0} task(s)`;
    case "phase_skipped":
      return `phase ${e.phase}: nothing to run`;
    case "model_loading":
      return `${model}: loading for ${e.total || 0} task(s)`;
    case "model_loaded":
      return e.failed ? `${model}: failed to load` : `${model}: ready in ${number(e.seconds || 0, 3)} s`;
    case "generated":
      return `${model}: ${e.done || 0}/${e.total || 0} generated, ${e.tokens || 0} tokens`;
    case "phase_done":
      return `phase ${e.phase} done in ${number(e.seconds || 0, 3)} s (${e.failed || 0} failed)`;
    default:
      return e.kind;
  }
}

async function ask(event) {
  event.preventDefault();
  const button = $("ask-button");
  const timeline = $("timeline");
  const streamed = $("streamed");
  const result = $("result");
  const options = $("options").value.split("\n").map((o) => o.trim()).filter(Boolean);
  const body = { question: $("question").value, policy: $("policy").value, aggregation: $("aggregation").value };
  if ($("k").value) body.k = Number($("k").value);
  if (options.length) body.options = options;
  timeline.replaceChildren();
  streamed.textContent = "";
  result.className = "muted";
  result.replaceChildren("Waiting…");
  button.disabled = true;
  const started = performance.now();
  const seen = new Set(); // a model's progress is told as each answer arrives and again as its batch ends
  const note = (text, kind) =>
    timeline.append(el("li", { "data-kind": kind }, el("span", { class: "muted" }, `+${((performance.now() - started) / 1000).toFixed(2)} s `), text));
  try {
    const reply = await api("/ui/api/ask", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!reply.ok) {
      const error = await reply.json();
      throw new Error(error.error ? error.error.message : `the service answered ${reply.status}`);
    }
    await readEvents(reply, (kind, data) => {
      if (kind === "delta") {
        streamed.textContent += data.text;
      } else if (kind === "answer") {
        note("answered", kind);
        result.className = "";
        result.replaceChildren(traceView(data));
      } else if (kind === "error") {
        note(`failed: ${data.message}`, kind);
        result.className = "bad";
        result.replaceChildren(data.message);
      } else {
        const text = stepText(kind, data);
        if (kind !== "step" || !seen.has(text)) note(text, kind);
        seen.add(text);
      }
    });
  } catch (error) {
    result.className = "bad";
    result.replaceChildren(error.message);
  } finally {
    button.disabled = false;
  }
}

async function readEvents(reply, handle) {
  const reader = reply.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) handle(kind, JSON.parse(data.join("\n")));
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask").addEventListener("submit", ask);
  poll();
});
