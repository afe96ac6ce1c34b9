// One job: its state followed live (every second until it ends), then the recommendation,
// the published files and the job's report.html.
//
// The report itself is shown by report_view.js; its file links download through `save`.

import { artifactText, del, download, get, post } from "./api.js";
import { showReport } from "./report_view.js";
import {
  Poller, TERMINAL, bytes, clear, count, duration, errorBox, h, metricValue, percent,
  progressBar, shortId, statusBadge, when,
} from "./dom.js";

export function jobView(root, jobId) {
  const path = `v1/jobs/${encodeURIComponent(jobId)}`;
  const header = h("div", { class: "heading" });
  const acted = h("div", { id: "action-error" }); // a refused cancel or delete, kept until the next action
  const problem = h("div");
  const state = h("section", { class: "state" });
  const outcome = h("section", { id: "outcome" });
  clear(root, h("p", {}, h("a", { href: "#/jobs" }, "← all jobs")), header, acted, problem, state, outcome);
  const view = { gone: false, acted };
  let shownFinal = false;
  let shownHeader = null; // what the header was drawn for: redrawn only when that changes
  let live = null;
  let names = null; // the model's and the data's file names, read once

  const poller = new Poller(async () => {
    let job;
    try {
      job = await get(path);
    } catch (error) {
      if (view.gone) return false;
      clear(problem, errorBox(error));
      if (error.status === 404) return false;
      throw error;
    }
    names = names || (await uploadNames(job));
    if (view.gone) return false;
    clear(problem);
    document.title = `Job ${shortId(job.id)} · ${job.status} · Deadweight`;
    // Drawn again only when it changes: a button replaced every second loses the clicks
    // that fall between its press and its release.
    const drawn = `${job.status} ${job.cancel_requested}`;
    if (drawn !== shownHeader) {
      shownHeader = drawn;
      renderHeader(header, job, path, view, () => poller.poke());
    }
    if (!live) {
      live = h("div");
      // The options do not change: drawn once, so that "Options" stays open when opened.
      clear(state, live, options(job));
    }
    renderState(live, job, names);
    if (TERMINAL.has(job.status)) {
      if (!shownFinal) {
        shownFinal = true;
        renderOutcome(outcome, job, view);
      }
      return false;
    }
    return 1000;
  }, 1000);
  poller.start();
  return () => {
    view.gone = true;
    poller.stop();
  };
}

function renderHeader(header, job, path, view, refresh) {
  const actions = [];
  if (!TERMINAL.has(job.status) && !job.cancel_requested) {
    actions.push(button("Cancel", view, async () => {
      await post(`${path}/cancel`);
      refresh();
    }));
  }
  if (TERMINAL.has(job.status)) {
    actions.push(button("Delete", view, async () => {
      if (!confirm(`Delete job ${job.id} and all its files?`)) return;
      await del(path);
      if (!view.gone) location.hash = "#/jobs";
    }, "danger"));
  }
  clear(
    header,
    h("h1", {}, "Job ", h("span", { class: "mono" }, job.id)),
    statusBadge(job.status),
    h("div", { class: "actions" }, actions),
  );
}

function button(label, view, action, kind = "") {
  const element = h("button", {
    type: "button",
    class: kind,
    onclick: async () => {
      element.disabled = true;
      clear(view.acted);
      try {
        await action();
      } catch (error) {
        clear(view.acted, errorBox(error));
      } finally {
        element.disabled = false;
      }
    },
  }, label);
  return element;
}

async function uploadNames(job) {
  const name = (kind, id) => (id ? get(`v1/${kind}/${encodeURIComponent(id)}`).then((r) => r.filename, () => null) : null);
  const [model, dataset, evalData] = await Promise.all([
    name("models", job.model_id), name("datasets", job.dataset_id), name("datasets", job.eval_dataset_id),
  ]);
  return { model, dataset, evalData };
}

function upload(filename, id) {
  return [filename ? h("strong", {}, filename, " ") : null, h("span", { class: "mono dim" }, id)];
}

function renderState(section, job, names) {
  clear(
    section,
    progressBar(job.status, job.progress),
    job.error ? errorBox({ code: "job_failed", message: job.error }) : null,
    job.cancel_requested && !TERMINAL.has(job.status) ? h("p", { class: "dim" }, "Cancellation requested.") : null,
    h(
      "dl",
      { class: "facts" },
      fact("Model", upload(names.model, job.model_id)),
      fact("Data", upload(names.dataset, job.dataset_id)),
      job.eval_dataset_id ? fact("Evaluation data", upload(names.evalData, job.eval_dataset_id)) : null,
      fact("Submitted", when(job.created_at)),
      fact("Ran for", job.started_at ? duration(job.started_at, job.finished_at) : "not started"),
      fact("Attempts", String(job.attempts)),
    ),
  );
}

function options(job) {
  const config = Object.entries(job.config || {}).filter(([, v]) => v !== null && v !== undefined);
  return h(
    "details",
    { class: "config", id: "job-options" },
    h("summary", {}, "Options"),
    h("dl", { class: "facts" }, config.map(([name, value]) => fact(name, typeof value === "object" ? JSON.stringify(value) : String(value)))),
  );
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

async function renderOutcome(section, job, view) {
  if (job.status !== "succeeded") {
    clear(section);
    return;
  }
  clear(section, h("p", { class: "dim" }, "Loading the results…"));
  let results;
  let artifacts;
  try {
    [results, artifacts] = await Promise.all([
      get(`v1/jobs/${encodeURIComponent(job.id)}/results`),
      get(`v1/jobs/${encodeURIComponent(job.id)}/artifacts`),
    ]);
  } catch (error) {
    clear(section, errorBox(error, () => renderOutcome(section, job, view)));
    return;
  }
  if (view.gone) return;
  const report = h("div", { id: "report", class: "report" });
  // The report draws inside its own box: containment makes the box the frame of anything
  // it positions as fixed, and clips what it paints, so it cannot cover the page around it.
  const box = h("div", { class: "report-box" }, report);
  clear(section, summary(job.id, results), files(job.id, artifacts), h("h2", {}, "Report"), box);
  if (!artifacts.some((a) => a.name === "report.html")) {
    box.replaceWith(h("p", { class: "dim" }, "This job published no report."));
    return;
  }
  let html;
  try {
    html = await artifactText(job.id, "report.html");
  } catch (error) {
    box.replaceWith(errorBox(error, () => renderOutcome(section, job, view)));
    return;
  }
  if (!view.gone) showReport(report, (name, link) => save(job.id, name, link), html);
}

function summary(jobId, results) {
  const base = results.baseline;
  const best = results.recommended === null ? null : results.candidates[results.recommended];
  const cards = [
    card("Original", metricValue(base.metric), `${results.metric} · ${count(base.parameters)} parameters`),
  ];
  if (best) {
    const ms = best.latency_ms && best.latency_ms.batch_1;
    const baseMs = base.latency_ms && base.latency_ms.batch_1;
    cards.push(
      card("Recommended", metricValue(best.metric), `candidate ${best.index} · drop ${metricValue(best.metric_drop)}`),
      card("Smaller by", percent(best.size_reduction), `${count(best.parameters)} parameters · ${bytes(best.bytes)}`),
    );
    if (ms && baseMs) cards.push(card("Latency (batch 1)", `${ms.median.toFixed(3)} ms`, `original ${baseMs.median.toFixed(3)} ms`));
  } else {
    cards.push(card("Recommended", "none", `no candidate within a drop of ${results.max_metric_drop}`));
  }
  return h(
    "div",
    { class: "summary-row", id: "summary" },
    cards,
    best ? h("button", { type: "button", class: "primary", onclick: () => download(jobId, best.artifact) }, `Download ${best.artifact}`) : null,
  );
}

function card(title, value, detail) {
  return h("div", { class: "card" }, h("div", { class: "card-title" }, title), h("div", { class: "card-value" }, value), h("div", { class: "dim" }, detail));
}

function files(jobId, artifacts) {
  return h(
    "section",
    { class: "files" },
    h("h2", {}, `Files (${artifacts.length})`),
    h("ul", { id: "job-files" }, artifacts.map((a) => h(
      "li",
      { title: a.media_type },
      h("a", { href: "#", class: "mono", onclick: (e) => { e.preventDefault(); save(jobId, a.name, e.currentTarget); } }, a.name),
      h("span", { class: "dim" }, ` ${bytes(a.bytes)}`),
    ))),
  );
}

// A download through the page: the link says so while the file arrives (a model may take
// a while), and a refusal is shown beside it.
async function save(jobId, name, near) {
  if (near.getAttribute("aria-busy") === "true") return;
  near.setAttribute("aria-busy", "true");
  near.parentElement?.querySelector(":scope > .error")?.remove();
  try {
    await download(jobId, name);
  } catch (error) {
    near.after(errorBox(error));
  } finally {
    near.removeAttribute("aria-busy");
  }
}
