// The runs being viewed: one row each; tick two to compare them question by question.
import { api, clear, h, link, num, section, table } from "./dom.js";

export async function showRuns(ctx) {
  ctx.crumbs("Runs");
  const { runs } = await api("/api/runs");
  if (!ctx.current()) return;
  const ticked = new Set();
  const button = h("button", { type: "button", id: "compare-button", disabled: true }, "Compare the two ticked runs");
  const hint = h("span", { class: "muted" }, "Tick two runs to compare them.");
  const update = () => {
    button.disabled = ticked.size !== 2;
    hint.textContent = ticked.size === 2 ? "" : `Tick two runs to compare them (${ticked.size} ticked).`;
  };
  button.addEventListener("click", () => {
    const [a, b] = [...ticked];
    location.hash = link(["compare"], { a, b });
  });
  const rows = runs.map((run) =>
    h(
      "tr",
      { dataset: { run: run.id } },
      h(
        "td",
        {},
        h("input", {
          type: "checkbox",
          "aria-label": `compare ${run.id}`,
          onchange: (e) => {
            if (e.target.checked) ticked.add(run.id);
            else ticked.delete(run.id);
            update();
          },
        }),
      ),
      h("td", {}, h("a", { href: link(["run", run.id]), class: "run-link" }, run.id)),
      h("td", {}, `${run.benchmark} (${run.split})`),
      h("td", {}, run.pool),
      h("td", {}, run.k ? `${run.policy}, k=${run.k}` : run.policy),
      h("td", {}, run.aggregator),
      h("td", { class: "n" }, num(run.questions)),
      h("td", { class: "n" }, num(run.samples)),
      h("td", {}, run.methods.join(", ")),
      h("td", { class: "muted" }, (run.finished || "").replace("T", " ").replace(/\+00:00$/, " UTC")),
    ),
  );
  clear(
    ctx.main,
    section(
      `${runs.length} run${runs.length === 1 ? "" : "s"}`,
      table(
        ["", "run", "benchmark", "pool", "policy", "ours combines by", "questions", "samples", "methods", "finished"],
        rows,
        { id: "runs", class: "wide" },
      ),
      h("p", { class: "actions" }, button, " ", hint),
    ),
  );
  update();
}
