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

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
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
  return new ApiError(response.status, code, message);
}

async function request(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, "unreachable", `the service did not answer (${exc.message})`);
  }
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
export function upload(path, file, fields, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
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
      else if (body && body.error) reject(new ApiError(xhr.status, body.error.code, body.error.message));
      else reject(new ApiError(xhr.status, `http_${xhr.status}`, `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new ApiError(0, "unreachable", "the upload was cut off"));
    xhr.send(form);
  });
}

// A job's file as text (the report) or saved by the browser under its own name. Downloads
// go through fetch because a plain link cannot carry the key; the file is held in memory
// until the browser has it.
export function artifactPath(jobId, name) {
  return `v1/jobs/${encodeURIComponent(jobId)}/artifacts/${encodeURIComponent(name)}`;
}

export async function artifactText(jobId, name) {
  const response = await fetch(artifactPath(jobId, name), { headers: headers(), cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.text();
}

export async function download(jobId, name) {
  const response = await fetch(artifactPath(jobId, name), { headers: headers() });
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
