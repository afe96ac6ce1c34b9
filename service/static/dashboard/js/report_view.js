// A job's report.html, shown inside the page. The report is the job's own artifact, shown
// as it is published, in a shadow root: its styles stay inside it, and its file links
// (which need the key here) are handed to the caller to download. It is parsed inert
// (DOMParser runs nothing) and kept to an allow-list of elements and attributes before it
// is shown (`sanitise`); the page's policy (script-src 'self', nothing from other hosts)
// would refuse an inline script, a handler or an outside load anyway. The report has none
// of those: this is a second wall.

import { h } from "./dom.js";

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

// `host` gets a shadow root holding the report `html`; a click on one of its file links
// calls `onFile(name, link)`. (The browser test shows it a hostile report.)
export function showReport(host, onFile, html) {
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
      onFile(name, link);
    }
  });
}
