// The accuracy-cost chart of one run, drawn in SVG: one point per method at (experts consulted
// or declared cost per answer, accuracy) with its 95% interval as a whisker, the methods no other
// beats at equal or lower cost joined by a line (the server's frontier), the oracle hollow (a
// ceiling, not a method). Hovering or focusing a point tells its figures; clicking it picks the
// method the tables and the question browser show.
import { clear, h, interval, num, pct } from "./dom.js";

const W = 680;
const H = 340;
const PAD = { left: 56, right: 150, top: 16, bottom: 44 };

function ticks(lo, hi, count = 5) {
  const span = hi - lo || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

export const AXES = {
  experts: { label: "experts consulted per answer", of: (m) => m.experts_per_question },
  cost: { label: "cost per answer", of: (m) => m.cost_per_question },
};

// overview: the run's overview (summary, frontier); axis: "experts" or "cost"; selected: a
// method's name; onselect(name).
export function accuracyCostChart(overview, axis, selected, onselect) {
  const spec = AXES[axis];
  const unit = axis === "cost" && overview.summary.cost_unit ? ` (${overview.summary.cost_unit})` : "";
  const methods = overview.summary.methods.filter((m) => m.n && spec.of(m) !== null && spec.of(m) !== undefined);
  const wrap = h("div", { class: "chart", id: "chart" });
  if (!methods.length) {
    wrap.append(h("p", { class: "muted" }, "No method has a figure on this axis."));
    return wrap;
  }
  const xs = methods.map(spec.of);
  const lows = methods.map((m) => m.ci95[0]);
  const highs = methods.map((m) => m.ci95[1]);
  const xMax = Math.max(...xs) * 1.08 || 1;
  const yLo = Math.max(0, Math.min(...lows) - 0.03);
  const yHi = Math.min(1, Math.max(...highs) + 0.03);
  const x = (v) => PAD.left + (v / xMax) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - ((v - yLo) / (yHi - yLo || 1)) * (H - PAD.top - PAD.bottom);

  const svg = h("svg:svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": `accuracy against ${spec.label}`,
  });
  for (const t of ticks(yLo, yHi)) {
    svg.append(
      h("svg:line", { x1: PAD.left, x2: W - PAD.right, y1: y(t), y2: y(t), class: "grid" }),
      h("svg:text", { x: PAD.left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, pct(t, 0)),
    );
  }
  for (const t of ticks(0, xMax)) {
    svg.append(
      h("svg:line", { x1: x(t), x2: x(t), y1: PAD.top, y2: H - PAD.bottom, class: "grid" }),
      h("svg:text", { x: x(t), y: H - PAD.bottom + 16, class: "tick", "text-anchor": "middle" }, num(t)),
    );
  }
  svg.append(
    h("svg:text", { x: (PAD.left + W - PAD.right) / 2, y: H - 6, class: "axis", "text-anchor": "middle" }, spec.label + unit),
    h("svg:text", { x: 14, y: (PAD.top + H - PAD.bottom) / 2, class: "axis", transform: `rotate(-90 14 ${(PAD.top + H - PAD.bottom) / 2})`, "text-anchor": "middle" }, "accuracy"),
  );

  const front = (overview.frontier[axis] || []).map((name) => methods.find((m) => m.name === name)).filter(Boolean);
  if (front.length > 1) {
    svg.append(
      h("svg:polyline", {
        class: "frontier",
        points: front.map((m) => `${x(spec.of(m))},${y(m.accuracy)}`).join(" "),
      }),
    );
  }

  const tip = h("div", { class: "tip", role: "status", hidden: true });
  const show = (m, px, py) => {
    clear(
      tip,
      h("strong", {}, m.name),
      h("div", { class: "muted" }, m.description),
      h("div", {}, `accuracy ${pct(m.accuracy)} (${num(m.correct)}/${num(m.n)}), 95% ${interval(m.ci95)}`),
      h("div", {}, `${spec.label}: ${num(spec.of(m))}${unit}`),
      overview.frontier[axis]?.includes(m.name) ? h("div", { class: "muted" }, "on the frontier") : null,
    );
    tip.hidden = false;
    tip.style.left = `${(100 * px) / W}%`;
    tip.style.top = `${(100 * py) / H}%`;
  };
  const hide = () => {
    tip.hidden = true;
  };

  const placed = [];
  for (const m of methods) {
    const px = x(spec.of(m));
    const py = y(m.accuracy);
    let ly = py + 4;
    while (placed.some((p) => Math.abs(p[0] - px) < 90 && Math.abs(p[1] - ly) < 12)) ly += 12;
    placed.push([px, ly]);
    const oracle = m.aggregation === "oracle";
    const point = h(
      "svg:g",
      {
        class: `point${m.name === selected ? " selected" : ""}${oracle ? " oracle" : ""}`,
        tabindex: 0,
        role: "button",
        "aria-label": `${m.name}: ${pct(m.accuracy)}`,
        "data-method": m.name,
      },
      h("svg:line", { x1: px, x2: px, y1: y(m.ci95[0]), y2: y(m.ci95[1]), class: "whisker" }),
      h("svg:circle", { cx: px, cy: py, r: 14, class: "hit" }),
      h("svg:circle", { cx: px, cy: py, r: m.name === selected ? 7 : 5, class: "dot" }),
      h("svg:text", { x: px + 10, y: ly, class: "label" }, m.name),
    );
    point.addEventListener("mouseenter", () => show(m, px, py));
    point.addEventListener("focus", () => show(m, px, py));
    point.addEventListener("mouseleave", hide);
    point.addEventListener("blur", hide);
    point.addEventListener("click", () => onselect(m.name));
    point.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        onselect(m.name);
      }
    });
    svg.append(point);
  }
  wrap.append(svg, tip);
  return wrap;
}
