// One job: its state followed live (every second until it ends), then the recommendation,
// the published files and the job's report.html.
//
// The report is the job's own artifact, shown as it is published, in a shadow root: its
// styles stay inside it, and its file links (which need the key here) become downloads.
// It is parsed inert (DOMParser runs nothing) and kept to an allow-list of elements and
// attributes before it is shown (`sanitise` below); the page's policy (script-src 'self',
// nothing from other hosts) would refuse an inline script, a handler or an outside load
// anyway. The report has none of those: this is a second wall.

import { artifactText, del, download, get, post } from "./api.js";
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
  if (!view.gone) showReport(report, job.id, html);
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

// The report is sanitised by an allow-list: the elements and attributes a report is made
// of, and links that name a section (#id) or one of the job's files (a bare name). Anything
// else (script, frames, forms, inputs, images, SVG <use>, <animate> or <a xlink:href>,
// event handlers, `url()` in attributes, other links) is dropped; the page's policy would
// refuse scripts and other hosts anyway.
const HTML_TAGS = new Set([
  "a", "abbr", "b", "br", "caption", "code", "col", "colgroup", "dd", "details", "div", "dl",
  "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "li",
  "ol", "p", "pre", "section", "small", "span", "strong", "style", "sub", "summary", "sup",
  "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
]);
const SVG_TAGS = new Set([
  "svg", "g", "line", "polyline", "polygon", "path", "rect", "circle", "ellipse", "text",
  "tspan", "title", "desc",
]);
const ATTRIBUTES = new Set([
  "class", "id", "title", "role", "lang", "dir", "style", "colspan", "rowspan", "scope",
  "open", "width", "height", "viewBox", "preserveAspectRatio", "x", "y", "x1", "y1", "x2",
  "y2", "cx", "cy", "r", "rx", "ry", "d", "points", "transform", "fill", "fill-opacity",
  "stroke", "stroke-width", "stroke-dasharray", "stroke-opacity", "stroke-linecap",
  "stroke-linejoin", "opacity", "font-family", "font-size", "font-weight", "font-style",
  "text-anchor", "dominant-baseline", "dx", "dy",
]);
// A section of the report, or one of the job's files by name (no path, scheme or query).
const LOCAL_LINK = /^(#[^\s]*|[^\s/\\:?#]+)$/;

function allowedElement(element) {
  // By namespace: an SVG <a> or <style> is not the HTML one, and MathML is neither.
  const tags = element instanceof HTMLElement ? HTML_TAGS : element instanceof SVGElement ? SVG_TAGS : null;
  return Boolean(tags && tags.has(element.localName));
}

function allowedAttribute(element, attribute) {
  const name = attribute.name;
  if (name === "href") return element instanceof HTMLAnchorElement && LOCAL_LINK.test(attribute.value);
  if (!(ATTRIBUTES.has(name) || /^(aria|data)-[a-z0-9-]+$/.test(name))) return false;
  if (/^(class|id|title|role|lang|dir|aria-.*|data-.*)$/.test(name)) return true; // text only
  // Paint and style are CSS: they may point at a fragment of the report, never load a
  // resource (and CSS escapes, which could spell `url(` otherwise, are refused outright).
  const value = attribute.value;
  return !value.includes("\\") && !/url\(\s*['"]?\s*[^#'"\s]|image-set|@import/i.test(value);
}

function sanitise(parent) {
  for (const element of [...parent.children]) {
    if (!allowedElement(element)) {
      element.remove();
      continue;
    }
    for (const attribute of [...element.attributes]) {
      if (!allowedAttribute(element, attribute)) element.removeAttribute(attribute.name);
    }
    sanitise(element);
  }
}

// The report styles `body`; in the shadow root its host stands in for it.
const HOST_STYLE = ":host{display:block;background:#fff;border:1px solid #e3e3e3;border-radius:6px;"
  + "padding:4px 20px 16px;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1b1b}";

// DOMParser is the one place the page turns a string into markup. Where the browser
// enforces Trusted Types (the page's policy asks for it), only this policy may do that.
const markup = globalThis.trustedTypes
  ? globalThis.trustedTypes.createPolicy("dashboard-report", { createHTML: (text) => text })
  : { createHTML: (text) => text };

// Exported for the browser test, which shows it a hostile report.
export function showReport(host, jobId, html) {
  const parsed = new DOMParser().parseFromString(markup.createHTML(html), "text/html");
  // Styles from anywhere in the report (the head's included), then its body, both cleaned.
  const head = document.createElement("div");
  head.append(...parsed.querySelectorAll("style"));
  sanitise(head);
  sanitise(parsed.body);
  for (const style of head.querySelectorAll("style")) style.textContent = style.textContent.replace(/@import[^;]*;?/gi, "");
  const root = host.attachShadow({ mode: "open" });
  root.append(h("style", {}, HOST_STYLE), ...head.childNodes, ...[...parsed.body.childNodes].map((node) => document.adoptNode(node)));
  // The report links its files by name (here they need the key, so they download) and its
  // own sections by fragment (which here would change the page's address).
  root.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link) return;
    event.preventDefault();
    const target = link.getAttribute("href");
    let name;
    try {
      name = decodeURIComponent(target.replace(/^#/, ""));
    } catch {
      return; // a malformed escape names nothing
    }
    if (target.startsWith("#")) {
      const section = root.getElementById(name);
      if (section) section.scrollIntoView({ behavior: "smooth" });
    } else {
      save(jobId, name, link);
    }
  });
}
