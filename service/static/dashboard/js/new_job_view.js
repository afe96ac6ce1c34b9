// Uploading a model and data, and submitting a job: the forms build the same requests a
// script would (`POST /v1/models`, `/v1/datasets`, `/v1/jobs`), and show the job body they
// send. Options left at "default" are left out of the body, so the server's defaults apply.

import { get, post, query, upload } from "./api.js";
import { bytes, clear, count, errorBox, h } from "./dom.js";

const LIST = query({ limit: 100 });

export function newJobView(root) {
  const models = h("select", { id: "model", name: "model_id", required: true });
  const datasets = h("select", { id: "dataset", name: "dataset_id", required: true });
  const evalSets = h("select", { id: "eval-dataset", name: "eval_dataset_id" });
  const state = { stopped: false };

  const modelPanel = uploadPanel({
    title: "1. Model",
    hint: "a torch.export program (.pt2); the service inspects its graph before a job can use it",
    accept: ".pt2",
    id: "model-file",
    select: models,
    fields: () => ({}),
    send: (file, fields, progress) => upload("v1/models", file, fields, progress),
    settle: (record) => waitForInspection(record, state),
    describe: describeModel,
    refresh: () => fillModels(models),
  });
  const labelColumn = h("input", { id: "label-column", type: "text", placeholder: "label column (CSV)", size: 18 });
  const noLabels = h("input", { id: "no-labels", type: "checkbox" });
  const dataPanel = uploadPanel({
    title: "2. Data",
    hint: "calibration rows (.npz, .safetensors or .csv); with labels, jobs can measure accuracy",
    accept: ".npz,.safetensors,.csv",
    id: "dataset-file",
    select: datasets,
    extra: [labelColumn, h("label", {}, noLabels, " no labels")],
    fields: () => {
      const fields = {};
      if (labelColumn.value.trim()) fields.label_column = labelColumn.value.trim();
      if (noLabels.checked) fields.no_labels = "true";
      return fields;
    },
    send: (file, fields, progress) => upload("v1/datasets", file, fields, progress),
    settle: async (record) => record,
    describe: describeDataset,
    refresh: async () => {
      await fillDatasets(datasets, evalSets);
    },
  });

  const options = jobOptions();
  const preview = h("pre", { id: "body-preview", class: "mono" });
  const problem = h("div", { id: "submit-error" });
  const submit = h("button", { type: "submit", class: "primary", id: "submit" }, "Submit job");
  const form = h(
    "form",
    {
      id: "job-form",
      class: "panel",
      novalidate: true,
      oninput: () => { preview.textContent = JSON.stringify(jobBody(), null, 2); },
      onsubmit: async (event) => {
        event.preventDefault();
        clear(problem);
        // What the API could not be told: a number field holding something that is not a
        // number reads as empty, and the option would silently fall back to its default.
        const unread = [...form.querySelectorAll("input[type=number]")].filter((input) => input.validity.badInput);
        if (!models.value || !datasets.value || unread.length) {
          const why = !models.value ? "choose a model (upload one, and wait until it is ready)"
            : !datasets.value ? "choose the data (upload it first)"
              : `not a number: ${unread.map((input) => input.closest("label").firstChild.textContent).join(", ")}`;
          clear(problem, errorBox({ code: "invalid_form", message: why }));
          return;
        }
        submit.disabled = true;
        try {
          const job = await post("v1/jobs", jobBody());
          location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
        } catch (error) {
          clear(problem, errorBox(error));
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("h2", {}, "3. Job"),
    h("div", { class: "grid" }, field("Model", models), field("Data", datasets), field("Evaluation data", evalSets, "default: the data above")),
    options.element,
    h("details", {}, h("summary", {}, "Request body"), preview),
    problem,
    submit,
  );

  function jobBody() {
    const body = { model_id: models.value, dataset_id: datasets.value };
    if (evalSets.value) body.eval_dataset_id = evalSets.value;
    return { ...body, ...options.values() };
  }

  clear(root, h("h1", {}, "New job"), h("div", { class: "uploads" }, modelPanel, dataPanel), form);
  Promise.all([fillModels(models), fillDatasets(datasets, evalSets)])
    .then(() => { preview.textContent = JSON.stringify(jobBody(), null, 2); })
    .catch((error) => clear(problem, errorBox(error)));
  return () => { state.stopped = true; };
}

// Closing or reloading the tab ends an upload: the browser asks first.
function holdPage(event) {
  event.preventDefault();
}

function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", {}, label), control, hint ? h("small", { class: "dim" }, hint) : null);
}

function uploadPanel(spec) {
  const input = h("input", { id: spec.id, type: "file", accept: spec.accept });
  const bar = h("progress", { max: 1, value: 0, hidden: true });
  const out = h("div", { class: "upload-result", id: `${spec.id}-result` });
  const send = h("button", { type: "button", id: `${spec.id}-upload` }, "Upload");
  const stop = h("button", { type: "button", id: `${spec.id}-cancel`, hidden: true }, "Cancel upload");
  send.addEventListener("click", async () => {
    const file = input.files[0];
    clear(out);
    if (!file) {
      clear(out, errorBox({ message: "choose a file first" }));
      return;
    }
    send.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    try {
      const sending = spec.send(file, spec.fields(), (fraction) => { bar.value = fraction; });
      stop.onclick = sending.abort;
      stop.hidden = false;
      window.addEventListener("beforeunload", holdPage);
      let record;
      try {
        record = await sending.done;
      } finally {
        window.removeEventListener("beforeunload", holdPage);
        stop.hidden = true;
      }
      bar.hidden = true;
      clear(out, h("p", { class: "dim" }, `${file.name}: uploaded, checking…`));
      record = await spec.settle(record);
      await spec.refresh();
      // An invalid model is listed but cannot be chosen: keep the choice there was.
      if (!record.status || record.status === "ready") spec.select.value = record.id;
      spec.select.dispatchEvent(new Event("input", { bubbles: true }));
      clear(out, spec.describe(record));
    } catch (error) {
      clear(out, errorBox(error));
    } finally {
      bar.hidden = true;
      send.disabled = false;
    }
  });
  return h(
    "section",
    { class: "panel" },
    h("h2", {}, spec.title),
    h("p", { class: "dim" }, spec.hint),
    h("div", { class: "row" }, input, spec.extra || [], send, stop),
    bar,
    out,
  );
}

async function waitForInspection(record, state) {
  // The worker inspects a model after its upload: a job can use it once it is ready.
  let current = record;
  while (current.status === "pending" && !state.stopped) {
    await new Promise((resolve) => setTimeout(resolve, 700));
    current = await get(`v1/models/${encodeURIComponent(current.id)}`);
  }
  return current;
}

function describeModel(model) {
  if (model.status === "invalid") return errorBox({ code: "invalid_model", message: model.error || "the model was refused" });
  const layers = model.layers || [];
  const frozen = model.frozen || [];
  return h(
    "div",
    { class: "described", dataset: { status: model.status } },
    h("p", {}, h("strong", {}, model.filename), ` is ${model.status}: ${count(model.parameters)} parameters, `,
      `${layers.length} prunable group${layers.length === 1 ? "" : "s"}, ${frozen.length} frozen.`),
    frozen.length
      ? h("details", {}, h("summary", {}, "Frozen groups"), h("ul", {}, frozen.map((f) => h("li", {}, h("span", { class: "mono" }, f.name), `: ${f.reason || ""}`))))
      : null,
  );
}

function describeDataset(data) {
  return h(
    "div",
    { class: "described" },
    h("p", {}, h("strong", {}, data.filename), `: ${data.samples} rows of shape [${data.x_shape.join(", ")}], `,
      data.has_labels ? "with labels" : "without labels", ` (${data.format}, ${bytes(data.bytes)}).`),
  );
}

async function fillModels(select) {
  const page = await get(`v1/models${LIST}`);
  const keep = select.value;
  clear(select, page.data.length ? null : h("option", { value: "" }, "upload a model first"),
    page.data.map((m) => h("option", { value: m.id, disabled: m.status !== "ready" },
      `${m.filename} · ${m.status}${m.parameters ? ` · ${count(m.parameters)} params` : ""} · ${m.id.slice(0, 8)}`)));
  if (keep) select.value = keep;
  if (!select.value || select.selectedOptions[0]?.disabled) {
    const ready = page.data.find((m) => m.status === "ready");
    if (ready) select.value = ready.id;
  }
}

async function fillDatasets(select, evalSelect) {
  const page = await get(`v1/datasets${LIST}`);
  const options = (withDefault) => [
    withDefault ? h("option", { value: "" }, "default") : null,
    page.data.map((d) => h("option", { value: d.id },
      `${d.filename} · ${d.samples} rows${d.has_labels ? " · labels" : ""} · ${d.id.slice(0, 8)}`)),
  ];
  const keep = [select.value, evalSelect.value];
  clear(select, page.data.length ? options(false) : h("option", { value: "" }, "upload data first"));
  clear(evalSelect, options(true));
  if (keep[0]) select.value = keep[0];
  evalSelect.value = keep[1];
}

// The engine's options, as the API takes them (see /docs for each one's meaning).
function jobOptions() {
  const mode = h("select", { id: "mode" },
    h("option", { value: "sweep" }, "default sweep of fractions"),
    h("option", { value: "fractions" }, "sweep these fractions"),
    h("option", { value: "search" }, "search the smallest within the drop"));
  const fractions = h("input", { id: "fractions", type: "text", value: "0.1, 0.2, 0.3, 0.4, 0.5", size: 24 });
  const choice = (id, values) => h("select", { id }, h("option", { value: "" }, "default"), values.map((v) => h("option", { value: v }, v)));
  const criterion = choice("criterion", ["reconstruction", "variance", "seed"]);
  const compensate = choice("compensate", ["linear", "mean", "none"]);
  const allocation = choice("allocation", ["global", "uniform", "auto"]);
  const metric = choice("metric", ["accuracy", "agreement", "mse"]);
  const drop = h("input", { id: "max-metric-drop", type: "number", step: "0.001", min: 0, placeholder: "0.005" });
  const latency = h("input", { id: "max-latency-ms", type: "number", step: "0.01", min: 0, placeholder: "none" });
  const epochs = h("input", { id: "recover-epochs", type: "number", step: 1, min: 0, placeholder: "none" });
  const seed = h("input", { id: "seed", type: "number", step: 1, min: 0, placeholder: "0" });
  const onnx = h("input", { id: "onnx", type: "checkbox" });
  const syncMode = () => { fractions.disabled = mode.value !== "fractions"; };
  mode.addEventListener("change", syncMode);
  syncMode();

  const element = h(
    "div",
    { class: "grid" },
    field("Thresholds", mode),
    field("Fractions", fractions, "comma-separated, each the share of neurons to remove"),
    field("Criterion", criterion),
    field("Compensation", compensate),
    field("Allocation", allocation, "auto needs search"),
    field("Metric", metric, "default: accuracy with labels, else agreement"),
    field("Max metric drop", drop, "0.005 is half an accuracy point"),
    field("Max latency (ms)", latency, "batch-1 median on the worker"),
    field("Recovery epochs", epochs, "fine-tune each candidate; empty: none"),
    field("Seed", seed, "the hold-out split's and recovery's"),
    h("label", { class: "field check" }, onnx, h("span", {}, "also export ONNX copies")),
  );

  function values() {
    const body = {};
    if (mode.value === "fractions") {
      // As typed when it is not a number, so that the API's answer names it.
      body.thresholds = fractions.value.split(/[\s,]+/).filter(Boolean)
        .map((f) => ({ fraction: Number.isFinite(Number(f)) ? Number(f) : f }));
    } else if (mode.value === "search") {
      body.search = true;
    }
    for (const [name, select] of [["criterion", criterion], ["compensate", compensate], ["allocation", allocation], ["metric", metric]]) {
      if (select.value) body[name] = select.value;
    }
    if (drop.value !== "") body.max_metric_drop = Number(drop.value);
    if (latency.value !== "") body.max_latency_ms = Number(latency.value);
    if (epochs.value !== "") body.recovery = { epochs: Number(epochs.value) };
    if (seed.value !== "") body.seed = Number(seed.value);
    if (onnx.checked) body.formats = ["pt2", "onnx"];
    return body;
  }
  return { element, values };
}
