// The dashboard's entry: asks for the API key when the service wants one, then shows the
// view the address names (#/jobs, #/jobs/<id>, #/new).

import { ApiError, apiKey, get, onUnauthorized, setApiKey } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { jobView } from "./job_view.js";
import { jobsView } from "./jobs_view.js";
import { newJobView } from "./new_job_view.js";

const view = document.getElementById("view");
const who = document.getElementById("who");
let leave = () => {};
let checking = false; // start() is asking whether the key is good: it answers a 401 itself

function route() {
  const [path, search] = (location.hash.replace(/^#\/?/, "") || "jobs").split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean);
  for (const link of document.querySelectorAll("nav a[data-nav]")) {
    link.classList.toggle("current", link.dataset.nav === parts[0]);
  }
  if (parts[0] === "jobs" && parts.length === 2) {
    let id;
    try {
      id = decodeURIComponent(parts[1]);
    } catch {
      id = parts[1]; // a malformed escape: the API answers that no such job exists
    }
    return () => jobView(view, id);
  }
  if (parts[0] === "new") {
    document.title = "New job · Deadweight";
    return () => newJobView(view);
  }
  return () => jobsView(view, params);
}

function show() {
  leave();
  leave = route()() || (() => {});
}

async function access() {
  // One cheap call tells whether this tab may read the API: open mode, or a good key.
  try {
    await get("v1/jobs?limit=1");
    return "ok";
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return "key";
    throw error;
  }
}

function askForKey(message) {
  leave();
  leave = () => {};
  clear(who);
  document.title = "API key · Deadweight";
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, size: 40, "aria-label": "API key" });
  const form = h(
    "form",
    {
      id: "key-form",
      class: "panel narrow",
      onsubmit: (event) => {
        event.preventDefault();
        setApiKey(input.value.trim());
        start();
      },
    },
    h("h1", {}, "API key"),
    h("p", {}, "This service needs an API key. It is kept in this browser tab only (until the tab is closed) and sent to this service with each request."),
    message ? errorBox({ message }) : null,
    h("div", { class: "row" }, input, h("button", { type: "submit", class: "primary" }, "Continue")),
  );
  clear(view, form);
  input.focus();
}

function showWho() {
  clear(
    who,
    apiKey()
      ? [h("span", { class: "dim" }, "API key set "), h("button", { type: "button", id: "forget-key", onclick: () => { setApiKey(null); start(); } }, "Forget key")]
      : h("span", { class: "dim", title: "no API keys: the service answers this machine only" }, "open mode"),
  );
}

async function start() {
  if (document.body.dataset.auth === "keys" && !apiKey()) {
    askForKey(null); // the service has keys and this tab has none yet
    return;
  }
  let status;
  checking = true;
  try {
    status = await access();
  } catch (error) {
    // The service is down or refusing (503 while its store is away): say so, and retry.
    leave();
    leave = () => {};
    clear(view, errorBox(error, start));
    return;
  } finally {
    checking = false;
  }
  if (status === "key") {
    askForKey(apiKey() ? "That key was not accepted." : null);
    if (apiKey()) setApiKey(null);
    return;
  }
  showWho();
  show();
}

// A key revoked (or the service restarted with other keys) while the page is open: every
// view's call now fails with 401, so ask again instead of letting them retry.
onUnauthorized(() => {
  if (checking || document.getElementById("key-form")) return;
  setApiKey(null);
  askForKey("The service no longer accepts this key: enter one it does.");
});

window.addEventListener("hashchange", () => {
  if (document.getElementById("key-form")) return;
  show();
});
start();
