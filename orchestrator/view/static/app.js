// coe view: the page's entry. Reads the address (the hash) and shows one view:
//   #/                          the runs
//   #/run/ID?filters            one run: summary, chart, tables, the question browser
//   #/run/ID/q/POSITION?filters one question of the run in full
//   #/compare?a=&b=&filters     two runs question by question
//   #/compare/q?a=&b=&pa=&pb=   one question of both runs, side by side
import { ApiError, clear, h, parseHash } from "./dom.js";
import { showCompare, showPair } from "./compare.js";
import { showQuestion } from "./question.js";
import { showRun } from "./run.js";
import { showRuns } from "./runs.js";

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
const banner = document.getElementById("error");
let shown = 0; // which navigation is current: a slower, older one must not draw over it

// What each view gets: where to draw, whether it is still current, the crumbs to set.
function context(turn) {
  return {
    main,
    current: () => turn === shown,
    crumbs: (...items) => {
      if (turn !== shown) return;
      clear(
        crumbs,
        items.map((item, i) => [
          i ? h("span", { class: "sep" }, "›") : null,
          Array.isArray(item) ? h("a", { href: item[1] }, item[0]) : h("span", {}, item),
        ]),
      );
    },
  };
}

function showError(message) {
  banner.textContent = message;
  banner.hidden = false;
}

async function route() {
  const turn = ++shown;
  banner.hidden = true;
  const { parts, params } = parseHash();
  const ctx = context(turn);
  const runPage = parts[0] === "run" && parts[1] && parts[2] === undefined;
  if (!runPage) delete main.dataset.view; // the run page is kept only while it is shown
  try {
    if (runPage) {
      await showRun(ctx, parts[1], params);
    } else if (parts[0] === "run" && parts[1] && parts[2] === "q" && parts[3] !== undefined) {
      await showQuestion(ctx, parts[1], Number(parts[3]), params);
    } else if (parts[0] === "compare" && parts[1] === "q") {
      await showPair(ctx, params);
    } else if (parts[0] === "compare") {
      await showCompare(ctx, params);
    } else {
      await showRuns(ctx);
    }
  } catch (exc) {
    if (turn !== shown) return;
    if (!(exc instanceof ApiError)) throw exc;
    showError(exc.message);
    if (!main.childElementCount || main.querySelector(".loading")) {
      clear(main, h("p", {}, h("a", { href: "#/" }, "Back to the runs")));
    }
  }
}

window.addEventListener("hashchange", route);
route();
