// One job: its state followed live (every second until it ends), then the recommendation,
// the published files and the job's report.html.
//
// The report is the job's own artifact, shown as it is published, in a shadow root: its
// styles stay inside it, and its file links (which need the key here) become downloads.
// It is parsed inert (DOMParser runs nothing), and anything that could load or run
// something is dropped before it is shown; the page's policy (script-src 'self') would
// refuse an inline script or handler anyway. The report has none: this is a second wall.

import { artifactText, del, download, get, post } from "./api.js";
import {
  Poller, TERMINAL, bytes, clear, count, duration, errorBox, h, metricValue, percent,
  progressBar, statusBadge, when,
} from "./dom.js";

export function jobView(root, jobId) {
  const path = `v1/jobs/${encodeURIComponent(jobId)}`;
  const header = h("div", { class: "heading" });
  const state = h("section", { class: "state" });
  const problem = h("div");
  const outcome = h("section", { id: "outcome" });
  clear(root, h("p", {}, h("a", { href: "#/jobs" }, "← all jobs")), header, problem, state, outcome);
  let shownFinal = false;
  let names = null; // the model's and the data's file names, read once

  const poller = new Poller(async () => {
    let job;
    try {
      job = await get(path);
    } catch (error) {
      clear(problem, errorBox(error));
      if (error.status === 404) return false;
      throw error;
    }
    clear(problem);
    names = names || (await uploadNames(job));
    renderHeader(header, job, path, () => poller.start());
    renderState(state, job, names);
    if (TERMINAL.has(job.status)) {
      if (!shownFinal) {
        shownFinal = true;
        renderOutcome(outcome, job);
      }
      return false;
    }
    return 1000;
  }, 1000);
  poller.start();
  return () => poller.stop();
}

function renderHeader(header, job, path, refresh) {
  const actions = [];
  if (!TERMINAL.has(job.status) && !job.cancel_requested) {
    actions.push(button("Cancel", async () => {
      await post(`${path}/cancel`);
      refresh();
    }));
  }
  if (TERMINAL.has(job.status)) {
    actions.push(button("Delete", async () => {
      if (!confirm(`Delete job ${job.id} and all its files?`)) return;
      await del(path);
      location.hash = "#/jobs";
    }, "danger"));
  }
  clear(
    header,
    h("h1", {}, "Job ", h("span", { class: "mono" }, job.id)),
    statusBadge(job.status),
    h("div", { class: "actions" }, actions),
  );
}

function button(label, action, kind = "") {
  const element = h("button", {
    type: "button",
    class: kind,
    onclick: async () => {
      element.disabled = true;
      try {
        await action();
      } catch (error) {
        element.after(errorBox(error));
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
  const config = Object.entries(job.config || {}).filter(([, v]) => v !== null && v !== undefined);
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
    h(
      "details",
      { class: "config" },
      h("summary", {}, "Options"),
      h("dl", { class: "facts" }, config.map(([name, value]) => fact(name, typeof value === "object" ? JSON.stringify(value) : String(value)))),
    ),
  );
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

async function renderOutcome(section, job) {
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
    clear(section, errorBox(error));
    return;
  }
  const report = h("div", { id: "report", class: "report" });
  clear(section, summary(job.id, results), files(job.id, artifacts), h("h2", {}, "Report"), report);
  if (!artifacts.some((a) => a.name === "report.html")) {
    report.replaceWith(h("p", { class: "dim" }, "This job published no report."));
    return;
  }
  try {
    showReport(report, job.id, await artifactText(job.id, "report.html"));
  } catch (error) {
    report.replaceWith(errorBox(error));
  }
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
      h("a", { href: "#", class: "mono", onclick: (e) => { e.preventDefault(); save(jobId, a.name, e.target); } }, a.name),
      h("span", { class: "dim" }, ` ${bytes(a.bytes)}`),
    ))),
  );
}

async function save(jobId, name, near) {
  try {
    await download(jobId, name);
  } catch (error) {
    near.after(errorBox(error));
  }
}

const INERT = "script, iframe, frame, object, embed, link, meta, base, form, template, noscript";
// The report styles `body`; in the shadow root its host stands in for it.
const HOST_STYLE = ":host{display:block;background:#fff;border:1px solid #e3e3e3;border-radius:6px;"
  + "padding:4px 20px 16px;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1b1b}";

function showReport(host, jobId, html) {
  const parsed = new DOMParser().parseFromString(html, "text/html");
  for (const element of parsed.querySelectorAll(INERT)) element.remove();
  for (const element of parsed.querySelectorAll("*")) {
    for (const attribute of [...element.attributes]) {
      const value = attribute.value.trim().toLowerCase();
      if (attribute.name.startsWith("on") || value.startsWith("javascript:")) element.removeAttribute(attribute.name);
    }
  }
  const root = host.attachShadow({ mode: "open" });
  const styles = [...parsed.querySelectorAll("style")].map((style) => h("style", {}, style.textContent));
  root.append(h("style", {}, HOST_STYLE), ...styles, ...[...parsed.body.childNodes].map((node) => document.adoptNode(node)));
  // The report links its files by name (here they need the key, so they download) and its
  // own sections by fragment (which here would change the page's address).
  root.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link) return;
    event.preventDefault();
    const target = link.getAttribute("href");
    if (target.startsWith("#")) {
      const section = root.getElementById(decodeURIComponent(target.slice(1)));
      if (section) section.scrollIntoView({ behavior: "smooth" });
    } else if (/^[^/:?#]+$/.test(target)) {
      save(jobId, decodeURIComponent(target), host);
    }
  });
}
