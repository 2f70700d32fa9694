// One question of a run in full: its route (skills, confidence), what each method made of it
// (the experts it consulted, their votes grouped by the judge, or the aggregator's answer; the
// final answer, tokens, seconds, cost), and every expert's whole answer.
import { api, clear, h, link, mark, markPainted, num, section, table } from "./dom.js";

export async function showQuestion(ctx, id, position, params) {
  ctx.crumbs(["Runs", "#/"], [id, link(["run", id], params)], `question at ${position}`);
  clear(ctx.main, h("p", { class: "muted loading" }, "Loading…"));
  const detail = await api(`/api/runs/${encodeURIComponent(id)}/questions/${position}`);
  if (!ctx.current()) return;
  ctx.crumbs(["Runs", "#/"], [id, link(["run", id], params)], `question ${detail.question_id}`);
  const back = h("a", { href: link(["run", id], params), class: "button", id: "back" }, "← back to the list");
  clear(ctx.main, h("div", { class: "actions" }, back), ...questionBody(detail, params.method));
  markPainted("coe:question-shown");
}

function votesText(votes) {
  if (!votes.length) return "–";
  return votes.map((v) =>
    h(
      "span",
      { class: `vote${v.answer === null ? " muted" : ""}`, title: v.experts.join(", ") },
      `${v.answer ?? "no answer"} ×${v.count}`,
    ),
  );
}

function how(m) {
  const parts = [m.aggregation];
  if (m.aggregator) parts.push(`by ${m.aggregator}`);
  if (m.skipped) parts.push(`aggregator skipped: ${m.skipped}`);
  if (m.fallback) parts.push(`fell back: ${m.fallback}`);
  return parts.join(", ");
}

// The sections showing ``detail`` (one question as the API gives it); ``method`` is highlighted.
// ``compact``: the methods table without the columns a side-by-side view has no room for.
export function questionBody(detail, method, title = null, compact = false) {
  const costed = detail.costs_declared;
  const selected = method || detail.methods[0]?.name;
  const consulted = new Set(detail.methods.find((m) => m.name === selected)?.experts || []);
  const usedBy = (expert) => detail.methods.filter((m) => m.experts.includes(expert)).map((m) => m.name);
  const skills = detail.route.skills.map(([name, weight]) => {
    const bar = h("span", { class: "bar" });
    bar.style.width = `${Math.round(100 * weight)}%`;
    return h("li", {}, h("span", { class: "skill" }, name), h("span", { class: "bar-box" }, bar), ` ${num(weight, 3)}`);
  });
  const methodRows = detail.methods.map((m) =>
    h(
      "tr",
      { class: m.name === selected ? "selected" : "", dataset: { method: m.name } },
      h("td", { title: compact ? `consulted ${m.experts.join(", ")}; ${how(m)}` : null }, m.name),
      compact ? null : h("td", {}, m.experts.length ? m.experts.join(", ") : "–"),
      h("td", {}, votesText(m.votes)),
      h("td", { class: "answer" }, m.final ?? "–"),
      h("td", {}, mark(m.correct)),
      compact ? null : h("td", { class: "muted" }, how(m)),
      h("td", { class: "n" }, `${num(m.tokens_in)} / ${num(m.tokens_out)}`),
      compact ? null : h("td", { class: "n" }, num(m.seconds, 3)),
      costed ? h("td", { class: "n" }, num(m.cost)) : null,
    ),
  );
  const head = compact
    ? ["method", "votes", "final", "", "tokens in / out", costed ? "cost" : null]
    : ["method", "experts consulted", "votes", "final", "", "how", "tokens in / out", "seconds", costed ? "cost" : null];
  const texts = detail.methods
    .filter((m) => m.text)
    .map((m) => h("div", { class: "aggregate" }, h("h3", {}, `${m.name}: the aggregator's answer (${m.aggregator || m.aggregation})`), h("pre", { class: "text" }, m.text)));
  const climbs = detail.methods
    .filter((m) => m.escalations.length)
    .map((m) =>
      h(
        "div",
        {},
        h("h3", {}, `${m.name}: the cascade's rounds`),
        h(
          "ol",
          { class: "rounds" },
          m.escalations.map((e) =>
            h(
              "li",
              {},
              `round ${e.round}: leader ${e.leader ?? "none"}, confidence ${num(e.confidence, 3)}`,
              e.next_confidence === null ? "" : ` (next rung's bar ${num(e.next_confidence, 3)})`,
              e.escalate ? " → climbed" : " → stopped",
            ),
          ),
        ),
      ),
    );
  const experts = detail.experts.map((e) =>
    h(
      "article",
      { class: `expert${consulted.has(e.expert) ? " consulted" : ""}`, dataset: { expert: e.expert } },
      h(
        "header",
        {},
        h("strong", {}, e.expert),
        " ",
        e.error ? h("span", { class: "badge wrong" }, `failed: ${e.error}`) : [h("span", { class: "answer" }, e.key ?? e.answer ?? "no answer"), " ", mark(e.correct)],
        h(
          "span",
          { class: "muted" },
          ` · ${num(e.tokens_in)} in / ${num(e.tokens_out)} out · ${num(e.seconds, 3)} s`,
          costed ? ` · cost ${num(e.cost)}` : "",
          ` · used by ${usedBy(e.expert).join(", ") || "none"}`,
        ),
      ),
      h("pre", { class: "text" }, e.text || "(no text)"),
    ),
  );
  return [
    section(
      title || `Question ${detail.question_id}`,
      h(
        "p",
        {},
        `${detail.benchmark}, category ${detail.category ?? "none"}, gold answer `,
        h("span", { class: "answer" }, detail.gold ?? "none"),
        detail.sample ? `, sample ${detail.sample}` : "",
        ` · route confidence ${num(detail.route.confidence, 3)}`,
      ),
      skills.length ? h("ul", { class: "skills" }, skills) : h("p", { class: "muted" }, "No skills recorded."),
    ),
    section(
      "Methods",
      h(
        "div",
        { class: "scroll" },
        table(
          head.filter((c) => c !== null),
          methodRows,
          { id: "question-methods", class: "wide" },
        ),
      ),
      texts,
      climbs,
    ),
    section(`Experts' answers (${detail.experts.length})`, h("div", { id: "expert-answers" }, experts)),
  ];
}
