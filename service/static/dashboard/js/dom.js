// Building the page: elements from data, never from HTML strings (file and layer names are
// the users' own), and the number formats every view shares.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}

export function clear(element, ...children) {
  element.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
  return element;
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function statusBadge(status) {
  return h("span", { class: `badge ${status}` }, status);
}

export function progressBar(status, progress) {
  const fraction = status === "succeeded" ? 1 : progress ? progress.fraction : 0;
  const percent = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  const label = TERMINAL.has(status)
    ? status === "succeeded" ? "done" : progress.stage || status
    : `${progress.stage || "queued"} · ${percent} %`;
  return h(
    "div",
    { class: `progress ${status}`, role: "progressbar", "aria-valuenow": percent, "aria-valuemin": 0, "aria-valuemax": 100 },
    h("div", { class: "fill", style: `width:${percent}%` }),
    h("span", { class: "label" }, label),
  );
}

export function shortId(id) {
  return id.length > 10 ? `${id.slice(0, 8)}…` : id;
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function count(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

export function percent(x, digits = 1) {
  return x === null || x === undefined ? "–" : `${(x * 100).toFixed(digits)} %`;
}

export function metricValue(x) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(4);
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  const seconds = (Date.now() - date.getTime()) / 1000;
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return date.toLocaleString();
}

export function duration(startIso, endIso) {
  if (!startIso) return "–";
  const end = endIso ? new Date(endIso) : new Date();
  const seconds = Math.max(0, (end - new Date(startIso)) / 1000);
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// An error as the API words it; with `retry`, a button that tries again.
export function errorBox(error, retry) {
  const code = error.code ? h("code", {}, error.code) : null;
  return h(
    "div",
    { class: "error", role: "alert" },
    code, code ? " " : null, error.message || String(error),
    retry ? [" ", h("button", { type: "button", class: "retry", onclick: retry }, "Try again")] : null,
  );
}

// Polling that stops when the view is left (the router calls `stop` on every change). One
// loop at a time: `poke` (after the user acted) runs the call now, or right after the one in
// flight, instead of starting a second loop beside the first.
export class Poller {
  constructor(fn, intervalMs) {
    this.fn = fn;
    this.intervalMs = intervalMs;
    this.timer = null;
    this.running = false;
    this.again = false;
    this.stopped = false;
  }

  start() {
    return this.poke();
  }

  async poke() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    let delay = this.intervalMs;
    let finished = false;
    try {
      const next = await this.fn();
      if (next === false) finished = true;
      else if (typeof next === "number") delay = next;
    } catch {
      delay = Math.max(this.intervalMs, 5000); // the view shows the error; retry gently
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (this.again) {
      this.again = false;
      this.timer = setTimeout(() => this.poke(), 0);
    } else if (!finished) {
      this.timer = setTimeout(() => this.poke(), document.hidden ? delay * 4 : delay);
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
