// The API as the page uses it: the same /v1 routes as every client, with the tab's key.
//
// The key lives in sessionStorage: it lasts while the tab is open (reloads included) and
// is never written anywhere else, nor sent anywhere but this origin's API. Every URL is
// relative to the page's <base>, so a service mounted under a path prefix works unchanged.

const KEY_ITEM = "deadweight.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

// Called with the error whenever the API answers 401: a key revoked while the page is open
// must bring back the key form, not leave every view retrying forever.
let refused = () => {};

export function onUnauthorized(handler) {
  refused = handler;
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

function refusal(status, code, message) {
  const error = new ApiError(status, code, message);
  if (status === 401) refused(error);
  return error;
}

async function failure(response) {
  // The API's errors are {"error": {"code", "message"}}; a proxy's may be anything.
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    /* not JSON: keep the status line */
  }
  return refusal(response.status, code, message);
}

async function send(path, init, what) {
  try {
    return await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, "unreachable", `${what} (${exc.message})`);
  }
}

async function request(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init, "the service did not answer");
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const del = (path) => request("DELETE", path);

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// A multipart upload with progress: fetch() reports no upload progress, XMLHttpRequest does.
// Returns the promise of the record, and `abort` (the promise then fails with code "aborted").
export function upload(path, file, fields, onProgress) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append("file", file, file.name);
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* handled below */
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body);
      else if (body && body.error) reject(refusal(xhr.status, body.error.code, body.error.message));
      else reject(refusal(xhr.status, `http_${xhr.status}`, `upload failed (${xhr.status} ${xhr.statusText})`));
    };
    xhr.onerror = () => reject(new ApiError(0, "unreachable", "the upload was cut off (the service closed the connection or did not answer)"));
    xhr.onabort = () => reject(new ApiError(0, "aborted", "upload cancelled"));
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

// A job's file as text (the report) or saved by the browser under its own name. Downloads
// go through fetch because a plain link cannot carry the key; the file is held in memory
// until the browser has it.
export function artifactPath(jobId, name) {
  return `v1/jobs/${encodeURIComponent(jobId)}/artifacts/${encodeURIComponent(name)}`;
}

export async function artifactText(jobId, name) {
  const init = { headers: headers(), cache: "no-store" };
  const response = await send(artifactPath(jobId, name), init, `${name} did not arrive`);
  if (!response.ok) throw await failure(response);
  return response.text();
}

export async function download(jobId, name) {
  // A refused fetch here is most often a redirect to another host (presigned downloads),
  // which the page's policy forbids: say so rather than "Failed to fetch".
  const init = { headers: headers() };
  const response = await send(artifactPath(jobId, name), init,
    `${name} did not arrive; if this service redirects downloads to a bucket, use the CLI or the client`);
  if (!response.ok) throw await failure(response);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
