// The ComfyGate playground: a form built from a template's JSON Schema, a job followed over
// server-sent events, a gallery, a curl command, and the backends' state. It uses only the
// public API (docs/API.md) and loads nothing from anywhere else. Every URL is relative to the
// page, so it works under a sub-path behind a reverse proxy (/comfy/ -> the gateway's /).
"use strict";

const KEY_STORAGE = "comfygate.apiKey";
const BACKENDS_EVERY_MS = 5000;
const SEED_DICE_MAX = 2 ** 32; // a dice roll stays well inside JavaScript's exact integers

const $ = (selector) => document.querySelector(selector);

const state = {
  templates: [],
  template: null, // the selected template: {name, description, parameters}
  fields: [], // one per parameter: {name, schema, read(), write(value), wrapper}
  apiKey: "",
  job: null, // the job being followed
  abort: null, // AbortController of the running stream
  eventSource: null,
};

// --- small helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (state.apiKey) headers.Authorization = `Bearer ${state.apiKey}`;
  return headers;
}

// An integer too large for a JavaScript number (seeds go up to 2**64 - 1) is kept as its
// digits and written into the JSON text as they are.
class RawNumber {
  constructor(digits) {
    this.digits = digits;
  }

  toString() {
    return this.digits;
  }
}

// JSON.parse rounds integers past 2**53 (a job's seed 7593957928845232729 would come back as
// 7593957928845233000): keep those as their exact digits (the reviver sees the source text).
function parseJSON(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value === "number" && !Number.isSafeInteger(value) && context?.source) {
      if (/^-?\d+$/.test(context.source)) return new RawNumber(context.source);
    }
    return value;
  });
}

// How a parameter's value is shown (a RawNumber as its digits, not as a quoted string).
function showValue(value) {
  return value instanceof RawNumber ? value.digits : JSON.stringify(value);
}

// A URL of the API (always "/v1/..." in its answers) as seen from this page, which may be
// served under a sub-path: "/v1/outputs/x" -> "<page's folder>/v1/outputs/x".
function apiUrl(path) {
  const base = new URL(".", document.baseURI);
  if (path.startsWith(base.pathname)) return new URL(path, base).href;
  return new URL(path.replace(/^\//, ""), base).href;
}

function toJSON(object) {
  const parts = Object.entries(object).map(([key, value]) => {
    const text = value instanceof RawNumber ? value.digits : JSON.stringify(value);
    return `${JSON.stringify(key)}:${text}`;
  });
  return `{${parts.join(",")}}`;
}

class ApiError extends Error {
  constructor(status, body) {
    const error = body && typeof body === "object" && body.error ? body.error : null;
    super(error ? error.message : `HTTP ${status}`);
    this.status = status;
    this.error = error || {
      code: status === 0 ? "network_error" : "http_error",
      message: status === 0 ? "cannot reach the gateway" : `the gateway answered HTTP ${status}`,
      details: {},
    };
  }
}

async function api(method, path, body) {
  const headers = authHeaders({ Accept: "application/json" });
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(apiUrl(path), { method, headers, body });
  } catch {
    throw new ApiError(0, null);
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? parseJSON(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

// --- errors --------------------------------------------------------------------------------

const ERROR_TITLES = {
  bad_request: "Bad request",
  validation_error: "Invalid parameter",
  unauthorized: "API key needed",
  not_found: "Not found",
  conflict: "Conflict",
  payload_too_large: "Request too large",
  rate_limited: "Too many requests",
  generation_failed: "Generation failed",
  backend_unavailable: "No backend available",
  timeout: "Timed out",
  internal_error: "Gateway error",
  network_error: "Network error",
};

function showError(error) {
  const box = $("#error");
  box.replaceChildren();
  document.querySelectorAll(".field.invalid").forEach((node) => {
    node.classList.remove("invalid");
    node.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
  });
  if (!error) {
    box.hidden = true;
    return;
  }
  const details = error.details || {};
  const facts = [];
  if (details.field) facts.push(`field “${details.field}”`);
  if (details.node_id && !error.message.startsWith(`node ${details.node_id} `)) {
    facts.push(`node ${details.node_id}${details.node_type ? ` (${details.node_type})` : ""}`);
  }
  if (details.exception_type) facts.push(details.exception_type);
  if (details.job_id) facts.push(`job ${details.job_id}`);
  box.append(
    el("strong", { text: `${ERROR_TITLES[error.code] || error.code}: ` }),
    el("span", { class: "error-message", text: error.message }),
  );
  if (facts.length) box.append(el("span", { class: "error-facts", text: facts.join(" · ") }));
  if (details.message && !error.message.includes(details.message)) {
    box.append(el("span", { class: "error-facts", text: details.message }));
  }
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
  const field = state.fields.find((f) => f.name === details.field);
  if (field) {
    field.wrapper.classList.add("invalid");
    field.input.setAttribute("aria-invalid", "true");
    field.input.focus();
  }
}

// --- the form, from the template's JSON Schema ----------------------------------------------

// A parameter's schema without the `anyOf: [X, {type: null}]` that optional ones have.
function effective(schema) {
  let inner = schema;
  if (Array.isArray(schema.anyOf)) {
    inner = schema.anyOf.find((s) => s.type !== "null") || {};
  }
  const merged = { ...inner };
  for (const key of ["default", "description", "title", "x-seed", "x-model-folder", "x-models", "x-image"]) {
    if (schema[key] !== undefined) merged[key] = schema[key];
  }
  if (merged.const !== undefined && !merged.enum) merged.enum = [merged.const];
  return merged;
}

// A bound past 2**53 (a seed's 2**64 - 1) arrives as a RawNumber: shown as a power of two
// where it is one less than one, else as its digits.
function formatBound(value) {
  if (value instanceof RawNumber) {
    const next = BigInt(value.digits) + 1n;
    if (next > 0n && (next & (next - 1n)) === 0n) return `2^${next.toString(2).length - 1} - 1`;
    return value.digits;
  }
  return String(value);
}

function sliderStep(schema) {
  if (schema.type === "integer") return 1;
  const span = schema.maximum - schema.minimum;
  return span <= 2 ? 0.01 : span <= 100 ? 0.1 : 1;
}

function buildField(name, raw, required) {
  const schema = effective(raw);
  const id = `param-${name}`;
  const wrapper = el("div", { class: "field", "data-param": name });
  const label = el("label", { for: id }, name);
  if (required) label.append(el("span", { class: "required", title: "required", text: " *" }));
  wrapper.append(label);
  const hasDefault = schema.default !== undefined && schema.default !== null;
  let input;
  let read;
  let write;
  const bounds = [];
  if (schema.minimum !== undefined) bounds.push(`min ${formatBound(schema.minimum)}`);
  if (schema.maximum !== undefined) bounds.push(`max ${formatBound(schema.maximum)}`);

  const models = Array.isArray(schema["x-models"]) ? schema["x-models"] : [];
  if (models.length) {
    // A model file: the ones the backends have, as a list; left empty, the first of them.
    input = el("select", { id, name });
    const folder = schema["x-model-folder"] || "models";
    input.append(el("option", { value: "", text: `default (the first in ${folder})` }));
    for (const model of models) input.append(el("option", { value: model, text: model }));
    read = () => input.value || undefined;
    write = (value) => {
      const text = value === undefined || value === null ? "" : String(value);
      if (text && ![...input.options].some((o) => o.value === text)) {
        input.append(el("option", { value: text, text: `${text} (not on any backend now)` }));
      }
      input.value = text;
    };
    wrapper.append(input);
  } else if (schema.enum) {
    input = el("select", { id, name });
    schema.enum.forEach((value, index) => {
      input.append(el("option", { value: String(index), text: String(value) }));
    });
    read = () => schema.enum[Number(input.value)];
    write = (value) => {
      const index = schema.enum.findIndex((v) => v === value);
      if (index >= 0) input.value = String(index);
    };
    wrapper.append(input);
  } else if (schema.type === "boolean") {
    input = el("input", { id, name, type: "checkbox" });
    read = () => input.checked;
    write = (value) => {
      input.checked = Boolean(value);
    };
    label.classList.add("inline");
    wrapper.classList.add("checkbox");
    wrapper.prepend(input);
  } else if (schema.type === "integer" || schema.type === "number") {
    input = el("input", {
      id,
      name,
      type: "number",
      inputmode: schema.type === "integer" ? "numeric" : "decimal",
      min: schema.minimum,
      max: schema.maximum,
      step: schema.type === "integer" ? 1 : "any",
      placeholder: schema["x-seed"] ? "random" : hasDefault ? "" : "optional",
    });
    read = () => {
      const text = input.value.trim();
      if (text === "") return undefined;
      if (schema.type === "integer" && /^-?\d+$/.test(text)) {
        const value = Number(text);
        return Number.isSafeInteger(value) ? value : new RawNumber(text);
      }
      return Number(text);
    };
    write = (value) => {
      input.value = value === undefined || value === null ? "" : String(value);
    };
    const row = el("div", { class: "number-row" }, input);
    const span = Number(schema.maximum) - Number(schema.minimum);
    if (schema["x-seed"]) {
      const dice = el(
        "button",
        { type: "button", class: "dice", title: "Roll a random seed", "aria-label": `Random ${name}` },
        el("img", { src: "web/dice.svg", alt: "", width: 20, height: 20 }),
      );
      dice.addEventListener("click", () => {
        const top = Math.min(SEED_DICE_MAX, Number(schema.maximum ?? SEED_DICE_MAX - 1) + 1);
        const low = Number(schema.minimum ?? 0);
        input.value = String(low + Math.floor(Math.random() * (top - low)));
      });
      row.append(dice);
    } else if (Number.isFinite(span) && span > 0 && span <= 100000) {
      const slider = el("input", {
        type: "range",
        min: schema.minimum,
        max: schema.maximum,
        step: sliderStep(schema),
        "aria-label": `${name} slider`,
        tabindex: "-1",
      });
      slider.addEventListener("input", () => {
        input.value = slider.value;
      });
      input.addEventListener("input", () => {
        if (input.value !== "") slider.value = input.value;
      });
      const plainWrite = write;
      write = (value) => {
        plainWrite(value);
        slider.value = value === undefined || value === null ? slider.min : String(value);
      };
      row.prepend(slider);
      row.classList.add("with-slider");
    }
    wrapper.append(row);
  } else if (schema["x-image"]) {
    // An image parameter: pick a file (sent as a data: URI) or paste an https URL.
    input = el("input", {
      id,
      name,
      type: "text",
      spellcheck: "false",
      placeholder: "https://… or pick a file",
    });
    const picker = el("input", {
      type: "file",
      accept: "image/png,image/jpeg,image/webp",
      "aria-label": `${name} file`,
    });
    const preview = el("img", { class: "image-preview", alt: `${name} preview`, hidden: true });
    let dataUri;
    picker.addEventListener("change", () => {
      const file = picker.files && picker.files[0];
      dataUri = undefined;
      preview.hidden = true;
      if (!file) return;
      const reader = new FileReader();
      reader.addEventListener("load", () => {
        dataUri = String(reader.result);
        preview.src = dataUri;
        preview.hidden = false;
        input.value = "";
      });
      reader.readAsDataURL(file);
    });
    input.addEventListener("input", () => {
      dataUri = undefined;
      picker.value = "";
      preview.hidden = true;
    });
    read = () => dataUri ?? (input.value === "" ? undefined : input.value);
    write = (value) => {
      dataUri = undefined;
      picker.value = "";
      preview.hidden = true;
      input.value = value === undefined || value === null ? "" : String(value);
    };
    wrapper.append(el("div", { class: "image-row" }, picker, input), preview);
  } else {
    const long = name.includes("prompt") || !schema.maxLength || schema.maxLength > 255;
    input = long
      ? el("textarea", { id, name, rows: name === "prompt" ? 4 : 2, spellcheck: "true" })
      : el("input", { id, name, type: "text", spellcheck: "false" });
    if (schema.maxLength) input.setAttribute("maxlength", String(schema.maxLength));
    if (schema["x-model-folder"]) {
      input.setAttribute("placeholder", `first in ${schema["x-model-folder"]}`);
    }
    read = () => (input.value === "" && !required ? undefined : input.value);
    write = (value) => {
      input.value = value === undefined || value === null ? "" : String(value);
    };
    wrapper.append(input);
  }
  if (required) input.setAttribute("aria-required", "true");
  const hint = [schema.description, bounds.length ? `(${bounds.join(", ")})` : ""]
    .filter(Boolean)
    .join(" ");
  if (hint) {
    const hintId = `${id}-hint`;
    wrapper.append(el("p", { class: "hint", id: hintId, text: hint }));
    input.setAttribute("aria-describedby", hintId);
  }
  const field = { name, schema, required, wrapper, input, read, write };
  field.reset = () => write(hasDefault ? schema.default : undefined);
  field.reset();
  return field;
}

function renderForm(template) {
  state.template = template;
  $("#template-description").textContent = template.description || "";
  const schema = template.parameters || {};
  const required = new Set(schema.required || []);
  state.fields = Object.entries(schema.properties || {}).map(([name, prop]) =>
    buildField(name, prop, required.has(name)),
  );
  $("#fields").replaceChildren(...state.fields.map((f) => f.wrapper));
  sessionStorage.setItem("comfygate.template", template.name);
}

function sameValue(a, b) {
  if (a instanceof RawNumber) return String(b) === a.digits;
  return JSON.stringify(a) === JSON.stringify(b);
}

// The parameters to send: required ones, and the others where they differ from the default
// (the gateway fills defaults in, so the body and the curl command stay short).
function formValues() {
  const values = {};
  for (const field of state.fields) {
    const value = field.read();
    if (value === undefined) continue;
    if (!field.required && sameValue(value, field.schema.default)) continue;
    values[field.name] = value;
  }
  return values;
}

// --- curl ----------------------------------------------------------------------------------

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function curlCommand() {
  const body = toJSON({ template: state.template.name, ...formValues() });
  const lines = [`curl -X POST ${shellQuote(apiUrl("/v1/generate"))}`];
  lines.push(`-H 'Content-Type: application/json'`);
  if (state.apiKey) lines.push(`-H "Authorization: Bearer $COMFYGATE_API_KEY"`);
  const batch = formValues().batch_size;
  if (typeof batch === "number" && batch > 1) {
    lines.push(`-H 'Accept: application/json'`); // several images: the job object
    lines.push(`-d ${shellQuote(body)}`);
  } else {
    lines.push(`-d ${shellQuote(body)}`);
    lines.push("-o output.png");
  }
  return lines.join(" \\\n  ");
}

async function copyCurl() {
  const command = curlCommand();
  $("#curl").textContent = command;
  $("#curl-box").hidden = false;
  const note = state.apiKey ? "Set COMFYGATE_API_KEY to your key first. " : "";
  try {
    await navigator.clipboard.writeText(command);
    $("#curl-note").textContent = `${note}Copied to the clipboard.`;
  } catch {
    $("#curl-note").textContent = `${note}Copy it from here:`;
  }
}

// --- following a job -----------------------------------------------------------------------

function setRun(status, label, percent) {
  $("#run").hidden = false;
  const badge = $("#run-status");
  badge.textContent = status;
  badge.dataset.status = status;
  $("#run-label").textContent = label;
  if (percent !== undefined) $("#progress").value = percent;
}

function setBusy(busy) {
  $("#generate").disabled = busy;
  $("#cancel").hidden = !busy;
  $("#template").disabled = busy;
}

function onJobEvent(event, data) {
  if (event === "status") {
    state.job = data;
    if (!["succeeded", "failed", "cancelled"].includes(data.status)) {
      setRun(data.status, data.status === "queued" ? "Waiting for a backend…" : "Running…");
    }
  } else if (event === "progress") {
    const max = Number(data.max) || 1;
    const value = Math.min(Number(data.value) || 0, max);
    const percent = Math.round((100 * value) / max);
    setRun("running", `${value} / ${max} steps · ${percent}%`, percent);
  } else if (event === "done") {
    state.job = data;
    finish(data);
    return false;
  }
  return true;
}

function finish(job) {
  setBusy(false);
  const seconds =
    job.started_at && job.finished_at
      ? ` in ${((Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000).toFixed(1)} s`
      : "";
  if (job.status === "succeeded") {
    setRun("succeeded", `Done${seconds}${job.cached ? " (cached)" : ""} · 100%`, 100);
    addToGallery(job);
  } else {
    setRun(job.status, job.status === "cancelled" ? "Cancelled" : "Failed");
    showError(job.error || { code: "generation_failed", message: `the job ${job.status}` });
  }
}

function parseSSE(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? [event, parseJSON(data.join("\n"))] : null;
}

// EventSource cannot send an Authorization header: with an API key, read the stream with
// fetch() and parse the events here.
async function followWithFetch(url, onEvent, signal) {
  let resp;
  try {
    resp = await fetch(apiUrl(url), { headers: authHeaders({ Accept: "text/event-stream" }), signal });
  } catch (err) {
    if (signal.aborted) return;
    throw new ApiError(0, null);
  }
  if (!resp.ok) {
    let data = null;
    try {
      data = parseJSON(await resp.text());
    } catch {
      data = null;
    }
    throw new ApiError(resp.status, data);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const parsed = parseSSE(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (parsed && onEvent(parsed[0], parsed[1]) === false) {
          await reader.cancel();
          return;
        }
      }
    }
  } catch (err) {
    if (!signal.aborted) throw new ApiError(0, null);
  }
}

function followWithEventSource(url, onEvent) {
  return new Promise((resolve, reject) => {
    const source = new EventSource(apiUrl(url));
    state.eventSource = source;
    const stop = () => {
      source.close();
      state.eventSource = null;
    };
    for (const name of ["status", "progress", "output", "done"]) {
      source.addEventListener(name, (message) => {
        if (onEvent(name, parseJSON(message.data)) === false) {
          stop();
          resolve();
        }
      });
    }
    // EventSource reconnects by itself (the gateway sends the current state first); it
    // gives up only when the answer is not an event stream (the job is gone).
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        stop();
        reject(new ApiError(0, null));
      }
    });
  });
}

async function follow(job) {
  const url = `/v1/jobs/${encodeURIComponent(job.id)}/events`;
  if (!state.apiKey) {
    await followWithEventSource(url, onJobEvent);
    return;
  }
  // A stream cut before `done` is opened again: the gateway starts with the current state.
  let ended = false;
  const onEvent = (event, data) => {
    if (event === "done") ended = true;
    return onJobEvent(event, data);
  };
  for (let attempt = 0; !ended; attempt += 1) {
    if (attempt >= 30) throw new ApiError(0, null);
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 500 * Math.min(attempt, 10)));
    state.abort = new AbortController();
    await followWithFetch(url, onEvent, state.abort.signal);
    state.abort = null;
  }
}

async function generate(event) {
  event.preventDefault();
  if (!state.template) return;
  showError(null);
  setBusy(true);
  setRun("submitting", "Submitting…", 0);
  const body = toJSON({ template: state.template.name, ...formValues() });
  try {
    const job = await api("POST", "/v1/jobs", body);
    state.job = job;
    onJobEvent("status", job);
    await follow(job);
  } catch (err) {
    setBusy(false);
    setRun("error", "Not run", 0);
    showError(err instanceof ApiError ? err.error : { code: "internal_error", message: String(err) });
  }
}

async function cancel() {
  const job = state.job;
  if (!job) return;
  try {
    await api("DELETE", `/v1/jobs/${encodeURIComponent(job.id)}`);
  } catch (err) {
    if (err instanceof ApiError && err.status !== 409) showError(err.error);
  }
}

// --- gallery -------------------------------------------------------------------------------

// An output url on another origin is a presigned storage url (OUTPUT_URLS=presigned): it
// needs no key, and the key must never go there.
function isOwnUrl(url) {
  return new URL(apiUrl(url)).origin === window.location.origin;
}

async function imageSource(url) {
  if (!state.apiKey || !isOwnUrl(url)) return apiUrl(url);
  // An <img> cannot send the key: fetch the file and show it from a blob URL.
  return URL.createObjectURL(await fetchOutput(url));
}

async function fetchOutput(url) {
  let resp;
  try {
    resp = await fetch(apiUrl(url), { headers: authHeaders() });
  } catch {
    throw new ApiError(0, null);
  }
  if (!resp.ok) {
    let data = null;
    try {
      data = parseJSON(await resp.text());
    } catch {
      data = null;
    }
    throw new ApiError(resp.status, data);
  }
  return resp.blob();
}

// A plain link sends no API key (401): with a key, fetch the file with it and save the blob.
function downloadLink(output) {
  const link = el("a", {
    href: apiUrl(output.url),
    download: output.filename,
    class: "small",
    text: "Download",
  });
  link.addEventListener("click", async (event) => {
    if (!state.apiKey || !isOwnUrl(output.url)) return;
    event.preventDefault();
    try {
      const href = URL.createObjectURL(await fetchOutput(output.url));
      const save = el("a", { href, download: output.filename, hidden: true });
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60_000);
    } catch (err) {
      showError(err instanceof ApiError ? err.error : { code: "internal_error", message: String(err) });
    }
  });
  return link;
}

function seedOf(job) {
  const props = (state.templates.find((t) => t.name === job.template) || {}).parameters;
  const name = Object.entries(props?.properties || {}).find(([, p]) => p["x-seed"])?.[0];
  return name === undefined ? undefined : job.params[name];
}

function addToGallery(job) {
  $("#gallery-empty").hidden = true;
  const seed = seedOf(job);
  for (const output of job.outputs) {
    const media = output.content_type.startsWith("image/")
      ? el("img", { alt: `${job.template} output ${output.filename}`, loading: "lazy" })
      : el("a", { href: apiUrl(output.url), text: output.filename });
    if (media.tagName === "IMG") {
      imageSource(output.url)
        .then((src) => {
          media.src = src;
        })
        .catch(() => {
          media.alt = "could not load the image";
        });
    }
    const params = el("dl", { class: "params" });
    for (const [key, value] of Object.entries(job.params)) {
      params.append(el("dt", { text: key }), el("dd", { text: showValue(value) }));
    }
    const reuse = el("button", { type: "button", class: "small", text: "Use these" });
    reuse.addEventListener("click", () => reuseParams(job));
    const caption = el(
      "figcaption",
      {},
      el("div", { class: "caption-head" },
        el("span", { class: "seed", text: seed === undefined ? job.template : `seed ${seed}` }),
        el("span", { class: "hint", text: `${job.template} · ${output.filename}` }),
      ),
      el("details", {}, el("summary", { text: "parameters" }), params),
      el("div", { class: "caption-actions" },
        reuse,
        downloadLink(output),
      ),
    );
    const item = el("li", { class: "card", "data-job": job.id }, el("figure", {}, media, caption));
    $("#gallery").prepend(item);
  }
}

function reuseParams(job) {
  const select = $("#template");
  if (state.template.name !== job.template) {
    const template = state.templates.find((t) => t.name === job.template);
    if (!template) return;
    select.value = job.template;
    renderForm(template);
  }
  for (const field of state.fields) {
    if (job.params[field.name] !== undefined) field.write(job.params[field.name]);
  }
}

// --- backends ------------------------------------------------------------------------------

async function refreshBackends() {
  if (document.hidden) return;
  const list = $("#backends");
  try {
    const data = await api("GET", "/v1/backends");
    const backends = data.backends || [];
    const healthy = backends.filter((b) => b.status === "healthy").length;
    const queued = backends.reduce((n, b) => n + (b.queue_length || 0), 0);
    const inFlight = backends.reduce((n, b) => n + (b.jobs_in_flight || 0), 0);
    $("#queue-summary").textContent =
      `${healthy} of ${backends.length} healthy · queue ${queued} · in flight ${inFlight}`;
    list.replaceChildren(
      ...backends.map((b) => {
        const facts = [
          b.websocket === "connected" ? "websocket up" : "websocket down",
          `queue ${b.queue_length ?? "?"}`,
          `in flight ${b.jobs_in_flight ?? "?"}`,
        ];
        if (typeof b.latency_ms === "number") facts.push(`${Math.round(b.latency_ms)} ms`);
        return el(
          "li",
          { class: "backend", "data-status": b.status },
          el("span", { class: "dot", "aria-hidden": "true" }),
          el("strong", { text: b.name }),
          el("span", { class: "hint", text: ` ${b.status} · ${facts.join(" · ")}` }),
          b.last_error ? el("p", { class: "hint error-facts", text: b.last_error }) : null,
        );
      }),
    );
  } catch (err) {
    $("#queue-summary").textContent =
      err instanceof ApiError ? `${ERROR_TITLES[err.error.code] || "Error"}: ${err.error.message}` : String(err);
    list.replaceChildren();
  }
}

// --- start ---------------------------------------------------------------------------------

async function loadTemplates() {
  const select = $("#template");
  let data;
  try {
    data = await api("GET", "/v1/templates");
    state.templates = data.templates || [];
  } catch (err) {
    showError(err instanceof ApiError ? err.error : { code: "internal_error", message: String(err) });
    select.replaceChildren(el("option", { text: "unavailable" }));
    return;
  }
  select.replaceChildren(
    ...state.templates.map((t) => el("option", { value: t.name, text: t.name })),
  );
  const wanted = sessionStorage.getItem("comfygate.template") || data.default_template;
  const first = state.templates.find((t) => t.name === wanted) || state.templates[0];
  if (!first) return;
  select.value = first.name;
  select.disabled = false;
  renderForm(first);
  $("#generate").disabled = false;
  $("#copy-curl").disabled = false;
}

function init() {
  const keyInput = $("#api-key");
  state.apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
  keyInput.value = state.apiKey;
  const useKey = () => {
    const key = keyInput.value.trim();
    if (key === state.apiKey) return;
    state.apiKey = key;
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    if (!state.templates.length) loadTemplates(); // it may have needed the key
    refreshBackends();
  };
  keyInput.addEventListener("change", useKey);
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useKey();
  });
  $("#template").addEventListener("change", (event) => {
    const template = state.templates.find((t) => t.name === event.target.value);
    if (template) {
      showError(null);
      renderForm(template);
    }
  });
  $("#run-form").addEventListener("submit", generate);
  $("#cancel").addEventListener("click", cancel);
  $("#copy-curl").addEventListener("click", copyCurl);
  document.addEventListener("visibilitychange", refreshBackends);
  loadTemplates();
  refreshBackends();
  setInterval(refreshBackends, BACKENDS_EVERY_MS);
}

init();
