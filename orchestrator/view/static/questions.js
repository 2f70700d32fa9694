// The question browser of one run: filters (method, category, right or wrong, experts
// disagreeing, escalated, aggregator skipped, question id) and one page of rows at a time, each
// filtered and paged on the server. A row opens its question.
import { api, checkbox, clear, h, link, mark, markPainted, num, section, select, table } from "./dom.js";

export const PAGE = 50;
const FILTERS = ["method", "category", "outcome", "disagree", "escalated", "skipped", "search"];

// The filters and page of ``params`` as the API reads them.
export function questionQuery(params) {
  const query = {};
  for (const key of FILTERS) if (params[key]) query[key] = params[key];
  query.offset = Number(params.offset) || 0;
  query.limit = PAGE;
  return query;
}

// One page of the run's questions passing the filters of ``params``.
export function fetchQuestions(id, params) {
  return api(`/api/runs/${encodeURIComponent(id)}/questions`, questionQuery(params));
}

export function questionBrowser(id, overview) {
  const costed = overview.costs_declared;
  const count = h("p", { class: "count", id: "question-count", "aria-live": "polite" }, "Reading the questions…");
  const list = h("div", { class: "scroll" });
  const pager = h("div", { class: "pager" });
  const controls = h("form", { class: "filters", id: "filters", onsubmit: (e) => e.preventDefault() });
  const element = section("Questions", controls, count, list, pager);
  element.id = "questions";
  let params = {};

  const go = (changes) => {
    location.hash = link(["run", id], { ...params, offset: 0, ...changes });
  };

  function drawControls(method) {
    const methods = overview.methods.length ? overview.methods : overview.summary.methods.map((m) => m.name);
    const search = h("input", {
      type: "search",
      name: "search",
      placeholder: "question id",
      value: params.search || "",
      "aria-label": "question id contains",
      onchange: (e) => go({ search: e.target.value.trim() }),
    });
    clear(
      controls,
      h("label", {}, "method ", select("method", methods, method, (v) => go({ method: v }))),
      h(
        "label",
        {},
        "category ",
        select("category", [["", "all"], ...overview.summary.categories], params.category, (v) =>
          go({ category: v }),
        ),
      ),
      h(
        "label",
        {},
        "answer ",
        select(
          "outcome",
          [
            ["", "right or wrong"],
            ["right", "right"],
            ["wrong", "wrong"],
            ["unscored", "not scored"],
          ],
          params.outcome,
          (v) => go({ outcome: v }),
        ),
      ),
      checkbox("disagree", params.disagree, (v) => go({ disagree: v ? "true" : "" }), "experts disagree"),
      checkbox("escalated", params.escalated, (v) => go({ escalated: v ? "true" : "" }), "escalated"),
      checkbox("skipped", params.skipped, (v) => go({ skipped: v ? "true" : "" }), "aggregator skipped"),
      h("label", {}, search),
      FILTERS.some((k) => k !== "method" && params[k])
        ? h("a", { href: link(["run", id], { method: params.method, axis: params.axis }), class: "reset" }, "clear filters")
        : null,
    );
  }

  // ``pending``: the page already asked for (fetchQuestions), if any.
  async function update(next, ctx, pending = null) {
    params = next;
    drawControls(params.method);
    const page = await (pending || fetchQuestions(id, params));
    if (!ctx.current()) return;
    if (controls.elements.method.value !== page.method) drawControls(page.method);
    const first = page.total ? page.offset + 1 : 0;
    const last = page.offset + page.rows.length;
    count.textContent =
      `${num(first)}–${num(last)} of ${num(page.total)} matching` +
      (page.total === page.answers ? "" : ` (of ${num(page.answers)} answers)`) +
      ` · method ${page.method}`;
    const rows = page.rows.map((r) => {
      const href = link(["run", id, "q", r.position], params);
      const flags = [
        r.disagree ? h("span", { class: "flag" }, "disagree") : null,
        r.escalated ? h("span", { class: "flag" }, "escalated") : null,
        r.skipped ? h("span", { class: "flag" }, "skipped") : null,
      ];
      return h(
        "tr",
        { class: "question-row", dataset: { position: r.position } },
        h("td", {}, h("a", { href }, r.question_id), r.sample ? h("span", { class: "muted" }, ` #${r.sample}`) : null),
        h("td", {}, r.category),
        h("td", { class: "answer" }, r.gold ?? "–"),
        h("td", { class: "answer" }, r.final ?? "–"),
        h("td", {}, mark(r.correct)),
        h("td", { class: "n" }, `${r.experts}/${r.experts_answered}`),
        h("td", {}, flags),
        h("td", { class: "n" }, num(r.tokens)),
        h("td", { class: "n" }, num(r.seconds, 2)),
        costed ? h("td", { class: "n" }, num(r.cost)) : null,
      );
    });
    clear(
      list,
      table(
        ["question", "category", "gold", "final", "", "experts", "", "tokens", "seconds", costed ? "cost" : null].filter(
          (c) => c !== null,
        ),
        rows,
        { id: "question-list", class: "wide" },
      ),
      page.rows.length ? null : h("p", { class: "muted" }, "No question passes these filters."),
    );
    markPainted("coe:questions-shown");
    const step = (offset) => h("a", { href: link(["run", id], { ...params, offset }), class: "button" });
    clear(
      pager,
      page.offset > 0 ? Object.assign(step(Math.max(0, page.offset - PAGE)), { textContent: "← previous" }) : null,
      last < page.total ? Object.assign(step(page.offset + PAGE), { textContent: "next →", id: "next-page" }) : null,
    );
  }

  return { element, update };
}
