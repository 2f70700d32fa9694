// Two runs question by question: one method's accuracy in each on the answers both hold, the
// paired difference B − A with its interval, per category, and the paired questions (what
// changed, which way) filtered and paged on the server. A pair opens both questions side by side.
import { api, checkbox, clear, h, link, mark, markPainted, num, pct, section, select, signed, table } from "./dom.js";
import { PAGE } from "./questions.js";
import { questionBody } from "./question.js";

const PAIR_FILTERS = ["a", "b", "method", "change", "differ", "category", "search"];
const CHANGES = [
  ["", "any"],
  ["changed", "changed (gained or lost)"],
  ["gained", "gained: only B right"],
  ["lost", "lost: only A right"],
  ["both right", "both right"],
  ["both wrong", "both wrong"],
];

function scoreRow(name, s, params) {
  const cell = name ? h("a", { href: link(["compare"], { ...params, category: name, offset: 0 }) }, name) : "all";
  return h(
    "tr",
    {},
    h("td", {}, cell),
    h("td", { class: "n" }, num(s.n)),
    h("td", { class: "n" }, pct(s.a_accuracy)),
    h("td", { class: "n" }, pct(s.b_accuracy)),
    h("td", { class: `n ${s.difference > 0 ? "up" : s.difference < 0 ? "down" : ""}` }, signed(s.difference)),
    h("td", { class: "n" }, s.ci95 ? `${signed(s.ci95[0])} to ${signed(s.ci95[1])}` : "–"),
    h("td", { class: "n" }, num(s.only_b)),
    h("td", { class: "n" }, num(s.only_a)),
  );
}

export async function showCompare(ctx, params) {
  const { a, b } = params;
  ctx.crumbs(["Runs", "#/"], `compare ${a} and ${b}`);
  if (!ctx.main.querySelector("#pairs")) clear(ctx.main, h("p", { class: "muted loading" }, "Pairing the runs…"));
  const offset = Number(params.offset) || 0;
  const asked = Object.fromEntries(PAIR_FILTERS.filter((k) => params[k]).map((k) => [k, params[k]]));
  const page = await api("/api/compare", { ...asked, offset, limit: PAGE });
  if (!ctx.current()) return;
  const c = page.comparison;
  const go = (changes) => {
    location.hash = link(["compare"], { ...params, offset: 0, ...changes });
  };
  const methods = page.a.methods.filter((m) => page.b.methods.includes(m));
  const label = (run) =>
    `${run.id}: ${run.benchmark} (${run.split}), pool ${run.pool}, policy ${run.policy}${run.k ? `, k=${run.k}` : ""}, ${run.aggregator}`;
  const rows = page.rows.map((r) =>
    h(
      "tr",
      { class: `pair-row ${r.change.replace(" ", "-")}`, dataset: { change: r.change } },
      h(
        "td",
        {},
        h("a", { href: link(["compare", "q"], { ...params, pa: r.a_position, pb: r.b_position, way: r.change }) }, r.question_id),
        r.sample ? h("span", { class: "muted" }, ` #${r.sample}`) : null,
      ),
      h("td", {}, r.category),
      h("td", { class: "answer" }, r.a_final ?? "–", " ", mark(r.a_correct)),
      h("td", { class: "answer" }, r.b_final ?? "–", " ", mark(r.b_correct)),
      h("td", {}, h("span", { class: `change ${r.change.replace(" ", "-")}` }, r.change)),
      h("td", {}, r.differ ? "answers differ" : ""),
    ),
  );
  const last = offset + page.rows.length;
  const step = (to, text, id) => h("a", { href: link(["compare"], { ...params, offset: to }), class: "button", id }, text);
  const categories = Object.keys(c.per_category);
  clear(
    ctx.main,
    section(
      "Two runs, question by question",
      h("p", {}, h("strong", {}, "A "), label(page.a)),
      h("p", {}, h("strong", {}, "B "), label(page.b)),
      h(
        "p",
        { class: "headline", id: "difference" },
        `${c.method}: A ${pct(c.overall.a_accuracy)}, B ${pct(c.overall.b_accuracy)} on ${num(c.overall.n)} paired answers; `,
        `B − A ${signed(c.overall.difference)} (95% ${c.overall.ci95 ? `${signed(c.overall.ci95[0])} to ${signed(c.overall.ci95[1])}` : "–"}); `,
        `${num(c.overall.only_b)} gained (only B right), ${num(c.overall.only_a)} lost (only A right).`,
        c.only_in_a || c.only_in_b ? ` Unpaired: ${num(c.only_in_a)} only in A, ${num(c.only_in_b)} only in B.` : "",
      ),
      h("p", { class: "muted" }, "Paired: the same question and sample answered by the method in both runs."),
    ),
    section(
      "Per category",
      h(
        "div",
        { class: "scroll" },
        table(
          ["category", "paired", "A", "B", "B − A", "95% interval", "gained", "lost"],
          [scoreRow(null, c.overall, params), ...categories.map((name) => scoreRow(name, c.per_category[name], params))],
          { id: "compare-categories", class: "wide" },
        ),
      ),
    ),
    section(
      "Paired questions",
      h(
        "form",
        { class: "filters", id: "pair-filters", onsubmit: (e) => e.preventDefault() },
        h("label", {}, "method ", select("method", methods, c.method, (v) => go({ method: v }))),
        h("label", {}, "which way ", select("change", CHANGES, params.change, (v) => go({ change: v }))),
        h("label", {}, "category ", select("category", [["", "all"], ...categories], params.category, (v) => go({ category: v }))),
        checkbox("differ", params.differ, (v) => go({ differ: v ? "true" : "" }), "final answers differ"),
        h(
          "label",
          {},
          h("input", {
            type: "search",
            name: "search",
            placeholder: "question id",
            value: params.search || "",
            "aria-label": "question id contains",
            onchange: (e) => go({ search: e.target.value.trim() }),
          }),
        ),
      ),
      h(
        "p",
        { class: "count", id: "pair-count" },
        `${num(page.total ? offset + 1 : 0)}–${num(last)} of ${num(page.total)} matching (of ${num(c.overall.n)} paired)`,
      ),
      h(
        "div",
        { class: "scroll" },
        table(["question", "category", `A (${a})`, `B (${b})`, "which way", ""], rows, { id: "pairs", class: "wide" }),
      ),
      h(
        "div",
        { class: "pager" },
        offset > 0 ? step(Math.max(0, offset - PAGE), "← previous") : null,
        last < page.total ? step(offset + PAGE, "next →", "next-pairs") : null,
      ),
    ),
  );
}

export async function showPair(ctx, params) {
  const { a, b, pa, pb, way: _, ...rest } = params;
  const back = link(["compare"], { a, b, ...rest });
  ctx.crumbs(["Runs", "#/"], [`compare ${a} and ${b}`, back], "one question");
  clear(ctx.main, h("p", { class: "muted loading" }, "Loading…"));
  const [da, db] = await Promise.all([
    api(`/api/runs/${encodeURIComponent(a)}/questions/${Number(pa)}`),
    api(`/api/runs/${encodeURIComponent(b)}/questions/${Number(pb)}`),
  ]);
  if (!ctx.current()) return;
  const method = rest.method || "ours";
  const ma = da.methods.find((m) => m.name === method);
  const mb = db.methods.find((m) => m.name === method);
  const said = (m) => (m ? [h("span", { class: "answer" }, m.final ?? "no answer"), " ", mark(m.correct)] : "no answer");
  const way = CHANGES.some(([value]) => value && value === params.way) ? params.way : null; // from the list
  clear(
    ctx.main,
    h("div", { class: "actions" }, h("a", { href: back, class: "button", id: "back" }, "← back to the pairs")),
    section(
      `Question ${da.question_id}`,
      h(
        "p",
        { class: "headline", id: "pair-change" },
        `${method}: A (${a}) answered `,
        said(ma),
        `, B (${b}) answered `,
        said(mb),
        `; gold answer ${da.gold ?? "none"}`,
        way ? [" · ", h("span", { class: `change ${way.replace(" ", "-")}` }, way)] : null,
      ),
    ),
    h(
      "div",
      { class: "side-by-side", id: "pair" },
      h("div", { class: "side" }, questionBody(da, method, `A: ${a}`, true)),
      h("div", { class: "side" }, questionBody(db, method, `B: ${b}`, true)),
    ),
  );
  markPainted("coe:pair-shown");
}
