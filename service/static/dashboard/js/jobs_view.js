// The tenant's jobs, newest first, followed live: the list is read again every 2 s while a
// job is queued or running, every 10 s otherwise (jobs submitted from elsewhere appear).

import { get, query } from "./api.js";
import { Poller, TERMINAL, clear, duration, errorBox, h, progressBar, shortId, statusBadge, when } from "./dom.js";

const PAGE = 50;
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];

export function jobsView(root, params) {
  document.title = "Jobs · Deadweight";
  const status = params.get("status") || "";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const table = h("tbody");
  const summary = h("p", { class: "dim", id: "jobs-count" });
  const problem = h("div");
  const filter = h(
    "select",
    { id: "status-filter", "aria-label": "status", onchange: (e) => go({ status: e.target.value, offset: 0 }) },
    h("option", { value: "" }, "all states"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)),
  );
  const pager = h("div", { class: "pager" });

  clear(
    root,
    h("div", { class: "heading" }, h("h1", {}, "Jobs"), filter, h("a", { class: "button", href: "#/new" }, "New job")),
    problem,
    h(
      "table",
      { class: "jobs", id: "jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Status", "Progress", "Model", "Dataset", "Method", "Submitted", "Took"].map((t) => h("th", {}, t)))),
      table,
    ),
    summary,
    pager,
  );

  const names = new Names();
  const poller = new Poller(async () => {
    let page;
    try {
      page = await get(`v1/jobs${query({ limit: PAGE, offset, status })}`);
      await names.cover(page.data);
    } catch (error) {
      clear(problem, errorBox(error));
      throw error;
    }
    clear(problem);
    if (page.data.length) update(table, page.data.map((job) => row(job, names)));
    else clear(table, h("tr", {}, h("td", { colspan: 8, class: "empty" }, offset ? "No more jobs." : "No jobs yet. ", offset ? null : h("a", { href: "#/new" }, "Submit one."))));
    summary.textContent = `${page.count} job${page.count === 1 ? "" : "s"}${status ? ` ${status}` : ""}`;
    clear(
      pager,
      offset > 0 ? h("a", { href: link({ status, offset: Math.max(0, offset - PAGE) }) }, "← newer") : null,
      offset + PAGE < page.count ? h("a", { href: link({ status, offset: offset + PAGE }) }, "older →") : null,
    );
    return page.data.some((job) => !TERMINAL.has(job.status)) ? 2000 : 10000;
  }, 2000);
  poller.start();
  return () => poller.stop();
}

// The rows again, changing only the cells that changed: a link replaced every two seconds
// would lose the clicks that fall between its press and its release.
function update(table, rows) {
  const current = [...table.children];
  if (current.length !== rows.length || current.some((tr, i) => tr.dataset.job !== rows[i].dataset.job)) {
    table.replaceChildren(...rows);
    return;
  }
  rows.forEach((tr, i) => {
    const old = current[i];
    if (old.outerHTML === tr.outerHTML) return;
    Object.assign(old.dataset, tr.dataset);
    const cells = [...old.children];
    [...tr.children].forEach((td, j) => {
      if (cells[j].outerHTML !== td.outerHTML) cells[j].replaceWith(td);
    });
  });
}

function row(job, names) {
  const href = `#/jobs/${encodeURIComponent(job.id)}`;
  return h(
    "tr",
    { dataset: { job: job.id, status: job.status } },
    h("td", {}, h("a", { href, title: job.id, class: "mono" }, shortId(job.id))),
    h("td", {}, statusBadge(job.status)),
    h("td", { class: "wide-cell" }, progressBar(job.status, job.progress)),
    h("td", { title: job.model_id }, names.model(job.model_id)),
    h("td", { title: job.dataset_id }, names.dataset(job.dataset_id)),
    h("td", {}, method(job.config || {})),
    h("td", { title: job.created_at }, when(job.created_at)),
    h("td", {}, job.started_at ? duration(job.started_at, job.finished_at) : "–"),
  );
}

// What a job does, in a few words: how its thresholds are chosen, and what compensates.
export function method(config) {
  const n = (config.thresholds || []).length;
  const how = config.search ? "search" : n ? `${n} threshold${n === 1 ? "" : "s"}` : "default sweep";
  const extras = [config.criterion, config.compensate && `${config.compensate} comp.`, config.recovery && "recovery"];
  return [how, ...extras.filter(Boolean)].join(" · ");
}

// File names for the IDs in the list: the tenant's uploads are read again only when a job
// names one not seen yet (at most once per refresh).
class Names {
  constructor() {
    this.models = new Map();
    this.datasets = new Map();
  }

  async cover(jobs) {
    const lists = [];
    if (jobs.some((j) => !this.models.has(j.model_id))) lists.push(get("v1/models?limit=200").then((p) => fill(this.models, p)));
    if (jobs.some((j) => !this.datasets.has(j.dataset_id))) lists.push(get("v1/datasets?limit=200").then((p) => fill(this.datasets, p)));
    await Promise.all(lists);
    for (const job of jobs) {
      if (!this.models.has(job.model_id)) this.models.set(job.model_id, null); // deleted, or older than the page
      if (!this.datasets.has(job.dataset_id)) this.datasets.set(job.dataset_id, null);
    }
  }

  model(id) {
    return this.models.get(id) || h("span", { class: "mono" }, shortId(id));
  }

  dataset(id) {
    return this.datasets.get(id) || h("span", { class: "mono" }, shortId(id));
  }
}

function fill(map, page) {
  for (const record of page.data) map.set(record.id, record.filename);
}

function link(params) {
  return `#/jobs${query(params)}`;
}

function go(params) {
  location.hash = link(params);
}
