// One run: how it was made, accuracy and cost per method (with intervals), the accuracy-cost
// chart, per category and per expert, then the question browser. The page is built once per
// run; a change of filters or method redraws only the parts that depend on them.
import { AXES, accuracyCostChart } from "./chart.js";
import { api, clear, h, interval, intervalBar, link, markPainted, num, pct, section, select, table } from "./dom.js";
import { fetchQuestions, questionBrowser } from "./questions.js";

let page = null; // {id, overview, categories, browser, parts}

export async function showRun(ctx, id, params) {
  let listing = null; // the first page of questions, asked for alongside the run's figures
  if (!page || page.id !== id || ctx.main.dataset.view !== `run:${id}`) {
    ctx.main.dataset.view = "";
    clear(ctx.main, h("p", { class: "muted loading" }, "Loading…"));
    listing = fetchQuestions(id, params);
    listing.catch(() => {}); // reported where it is awaited, below
    const overview = await api(`/api/runs/${encodeURIComponent(id)}`);
    if (!ctx.current()) return;
    page = build(ctx, id, overview);
    ctx.main.dataset.view = `run:${id}`;
    markPainted("coe:run-shown");
    api(`/api/runs/${encodeURIComponent(id)}/categories`).then(
      (categories) => {
        if (page?.id !== id) return;
        page.categories = categories;
        drawCategories(page.params);
      },
      (exc) => page?.id === id && clear(page.parts.categories, h("p", { class: "error-inline" }, exc.message)),
    );
  }
  ctx.crumbs(["Runs", "#/"], id);
  page.params = params;
  const method = params.method || page.overview.summary.methods[0]?.name;
  drawChart(params, method);
  drawCategories(params);
  await page.browser.update(params, ctx, listing);
}

function build(ctx, id, overview) {
  const s = overview.summary;
  const costed = overview.costs_declared;
  const parts = {
    chart: h("div"),
    categories: h("div", { class: "scroll" }, h("p", { class: "muted" }, "Reading the questions…")),
  };
  const browser = questionBrowser(id, overview);
  const methodRows = s.methods.map((m) =>
    h(
      "tr",
      { dataset: { method: m.name } },
      h(
        "td",
        { class: "method" },
        h("a", { href: link(["run", id], { method: m.name }) }, m.name),
        h("div", { class: "sub" }, m.description),
      ),
      h("td", { class: "n" }, pct(m.accuracy), h("span", { class: "muted" }, ` ${num(m.correct)}/${num(m.n)}`)),
      h("td", { class: "n" }, interval(m.ci95), intervalBar(m.accuracy, m.ci95)),
      h("td", { class: "n" }, num(m.experts_per_question)),
      h("td", { class: "n" }, `${num(m.tokens_in_per_question, 0)} / ${num(m.tokens_out_per_question, 0)}`),
      h("td", { class: "n" }, num(m.seconds_per_question, 3)),
      costed ? h("td", { class: "n" }, num(m.cost_per_question)) : null,
      costed ? h("td", { class: "n" }, num(m.cost_ratio)) : null,
      h("td", { class: "n" }, m.aggregator_skipped ? num(m.aggregator_skipped) : "–"),
      h("td", { class: "n" }, m.escalated === null ? "–" : pct(m.escalated)),
    ),
  );
  const expertRows = s.experts.map((e) =>
    h(
      "tr",
      {},
      h("td", {}, e.name, e.name === s.cost_reference ? h("span", { class: "tag" }, "reference") : null),
      h("td", { class: "n" }, num(e.answered)),
      h("td", { class: "n" }, e.failed ? num(e.failed) : "–"),
      h("td", { class: "n" }, pct(e.accuracy), h("span", { class: "muted" }, ` ${num(e.correct)}/${num(e.n)}`)),
      h("td", { class: "n" }, interval(e.ci95), intervalBar(e.accuracy, e.ci95)),
      costed ? h("td", { class: "n" }, num(e.cost_per_answer)) : null,
    ),
  );
  const stages = Object.entries(s.cost.stage_seconds || {}).map(([k, v]) => `${k} ${num(v, 1)} s`).join(", ");
  clear(
    ctx.main,
    h(
      "section",
      { class: "card head" },
      h("h1", {}, id),
      h(
        "p",
        {},
        `${overview.benchmark} (${overview.split}), pool ${overview.pool}, policy ${overview.policy}`,
        overview.k ? `, k=${overview.k}` : "",
        `, ours by ${overview.aggregator}; ${num(s.questions)} questions × ${num(overview.samples)} sample(s) = `,
        `${num(s.answers)} answers (of ${num(s.questions_in_split)} in the split)`,
      ),
      h(
        "p",
        { class: "muted" },
        `${num(s.cost.model_loads)} model loads, ${num(s.cost.generations)} generations; ${stages}. `,
        costed ? `Costs in ${s.cost_unit}, against ${s.cost_reference || "no reference"}. ` : "The pool declares no costs. ",
        overview.summary_source === "rebuilt" ? "Summary rebuilt from the results (no current report.json)." : "",
      ),
      overview.command ? h("pre", { class: "command" }, overview.command) : null,
    ),
    section(
      "Accuracy and cost per method",
      h(
        "div",
        { class: "scroll" },
        table(
          [
            "method",
            "accuracy",
            "95% interval",
            "experts / answer",
            "tokens in / out",
            "seconds / answer",
            costed ? `cost / answer (${s.cost_unit})` : null,
            costed ? "cost ratio" : null,
            "aggregator skipped",
            "escalated",
          ].filter((c) => c !== null),
          methodRows,
          { id: "methods", class: "wide" },
        ),
      ),
      parts.chart,
    ),
    section("Per category", parts.categories),
    section(
      "Per expert",
      h("p", { class: "muted" }, "Each expert over the answers it gave in this run (whichever method asked it)."),
      table(
        ["expert", "answers", "failed", "accuracy", "95% interval", costed ? `cost / answer` : null].filter((c) => c),
        expertRows,
        { id: "experts" },
      ),
    ),
    browser.element,
  );
  return { id, overview, categories: null, browser, parts, params: {} };
}

function drawChart(params, method) {
  const axes = page.overview.costs_declared ? ["experts", "cost"] : ["experts"];
  const axis = axes.includes(params.axis) ? params.axis : axes[axes.length - 1];
  const pick = (changes) => {
    location.hash = link(["run", page.id], { ...page.params, ...changes, offset: changes.method ? 0 : page.params.offset });
  };
  clear(
    page.parts.chart,
    h(
      "div",
      { class: "chart-head" },
      h("h3", {}, "Accuracy against cost"),
      axes.length > 1
        ? select("axis", axes.map((a) => [a, AXES[a].label]), axis, (v) => pick({ axis: v }), "x axis")
        : null,
      h("span", { class: "muted" }, "Click a point to browse that method's answers."),
    ),
    accuracyCostChart(page.overview, axis, method, (name) => pick({ method: name })),
  );
}

function drawCategories(params) {
  const data = page.categories;
  if (!data) return;
  const s = page.overview.summary;
  const selected = params.method || s.methods[0]?.name;
  const intervals = page.overview.category_intervals;
  const head = ["category", ...s.methods.map((m) => h("th", { class: m.name === selected ? "selected" : "" }, m.name))];
  const rows = data.categories.map((category) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: link(["run", page.id], { ...params, category, offset: 0 }) }, category)),
      s.methods.map((m) => {
        const score = m.per_category[category];
        const cost = data.table[category]?.[m.name];
        if (!score) return h("td", { class: "n muted" }, "–");
        const ci = intervals[m.name]?.[category];
        const extra = cost ? `${num(cost.experts)} experts/answer${cost.cost === null ? "" : `, cost ${num(cost.cost)}`}` : "";
        return h(
          "td",
          { class: `n${m.name === selected ? " selected" : ""}`, title: `${score.correct}/${score.n}, 95% ${interval(ci)}; ${extra}` },
          pct(score.accuracy),
          h("div", { class: "sub" }, interval(ci)),
        );
      }),
    ),
  );
  clear(
    page.parts.categories,
    h("p", { class: "muted" }, "Accuracy with its 95% interval; a category's name opens its questions."),
    table(head, rows, { id: "categories", class: "wide" }),
  );
}
