// molzoo search page: plain DOM, no framework, no network call other than this server's /api/v1.
"use strict";
const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const state = { models: [], lastResult: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "html") node.innerHTML = value; // only for the server's RDKit SVG drawings
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

// A single token made of SMILES characters whose lowercase letters are aromatic atoms reads as a SMILES.
function looksLikeSmiles(text) {
  const t = text.trim();
  if (!t || /\s/.test(t) || !/^[A-Za-z0-9@+\-\[\]()=#$%\/\\.:*~]+$/.test(t)) return false;
  const bare = t.replace(/\[[^\]]*\]/g, "").replace(/Cl|Br/g, "");
  return !/[a-z]/.test(bare.replace(/[cnospb]/g, "")) && !/[AD-EG-HJ-MQ-RT-Z]/.test(bare);
}

function mode() {
  const chosen = document.querySelector('input[name="mode"]:checked').value;
  if (chosen !== "auto") return chosen;
  return looksLikeSmiles($("query").value) ? "smiles" : "text";
}

function updateDetected() {
  const text = $("query").value.trim();
  const chosen = document.querySelector('input[name="mode"]:checked').value;
  $("detected").textContent = !text ? "" : chosen === "auto"
    ? `detected: ${mode() === "smiles" ? "a SMILES (finds descriptions)" : "a description (finds molecules)"}` : "";
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(API + path, options);
  } catch (err) {
    throw new Error(`the server cannot be reached (${err.message})`);
  }
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
  return data;
}

function showError(message) {
  $("error").textContent = message ? `Error: ${message}` : "";
  $("error").hidden = !message;
}

function showNotes(notes) {
  $("notes").replaceChildren(...(notes || []).map((n) => el("p", {}, n)));
}

function moleculeLink(cid, label) {
  const model = encodeURIComponent($("model").value);
  return el("a", { href: `#/molecule/${encodeURIComponent(cid)}?model=${model}`, class: "view" }, label || `CID ${cid}`);
}

function scoreText(score) { return `score ${score.toFixed(3)}`; }

function contributions(hit) {
  if (!hit.contributions) return null;
  const parts = Object.entries(hit.contributions).map(([label, value]) => `${label} ${value >= 0 ? "+" : ""}${value.toFixed(2)}`);
  return el("div", { class: "contrib", title: "each member's weighted, z-scored contribution" }, parts.join(" · "));
}

function moleculeCard(hit) {
  return el("li", { class: "card molecule", "data-cid": hit.cid, "data-rank": hit.rank },
    el("div", { class: "head" }, el("span", { class: "rank" }, `#${hit.rank}`), el("span", { class: "score" }, scoreText(hit.score))),
    el("div", { class: "drawing", html: hit.svg || "" }),
    moleculeLink(hit.cid, `CID ${hit.cid} · view and neighbours`),
    el("div", { class: "smiles" }, hit.smiles),
    hit.description ? el("div", { class: "desc" }, hit.description) : null,
    contributions(hit));
}

function descriptionCard(hit) {
  return el("li", { class: "card description", "data-cid": hit.cid, "data-rank": hit.rank },
    el("div", { class: "head" }, el("span", { class: "rank" }, `#${hit.rank}`), el("span", { class: "score" }, scoreText(hit.score))),
    el("div", { class: "desc" }, hit.description),
    moleculeLink(hit.cid, `CID ${hit.cid} · view the molecule`),
    contributions(hit));
}

function renderNames(query, names) {
  const block = $("names-block");
  if (!names || !names.length) { block.hidden = true; return; }
  const out = $("names");
  out.replaceChildren();
  let at = 0;
  for (const n of names) {
    if (n.start < at) continue;
    out.append(query.slice(at, n.start));
    out.append(el("mark", { class: "chem-name", title: `parsed as ${n.smiles}`, tabindex: "0" }, query.slice(n.start, n.end)));
    at = n.end;
  }
  out.append(query.slice(at));
  block.hidden = false;
}

function renderResults(result) {
  const list = $("results");
  const molecules = result.target === "molecules";
  list.className = molecules ? "cards molecules" : "cards descriptions";
  list.replaceChildren(...result.results.map(molecules ? moleculeCard : descriptionCard));
  const title = $("results-title");
  title.textContent = `${result.results.length} ${result.target} closest to the ${result.query_type === "text" ? "description" : "molecule"}` +
    ` · ${result.model} · ${result.timing_ms.total.toFixed(0)} ms`;
  title.hidden = false;
}

async function search(event) {
  if (event) event.preventDefault();
  const text = $("query").value.trim();
  if (!text) { showError("type a description or a SMILES first"); $("query").focus(); return; }
  const kind = mode();
  const body = { k: Number($("k").value), model: $("model").value || null, names: true, depict: true };
  body[kind === "smiles" ? "smiles" : "query"] = text;
  $("go").disabled = true;
  document.body.setAttribute("aria-busy", "true");
  try {
    const result = await api("/search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    showError("");
    showNotes(result.notes);
    renderNames(text, result.names);
    if (kind === "smiles") $("names-block").hidden = true;
    renderResults(result);
    state.lastResult = result;
    closeMolecule(false);
  } catch (err) {
    showError(err.message);
    $("results").replaceChildren();
    $("results-title").hidden = true;
    $("names-block").hidden = true;
  } finally {
    $("go").disabled = false;
    document.body.removeAttribute("aria-busy");
  }
}

async function openMolecule(cid, model) {
  const view = $("molecule-view");
  try {
    const m = await api(`/molecules/${encodeURIComponent(cid)}?k=8${model ? `&model=${encodeURIComponent(model)}` : ""}`);
    showError("");
    const neighbours = el("ol", { class: "cards molecules" }, ...m.neighbours.map(moleculeCard));
    const texts = el("ol", { class: "cards descriptions" }, ...m.descriptions.map(descriptionCard));
    view.replaceChildren(
      el("h2", { id: "molecule-title", tabindex: "-1" }, `Molecule CID ${m.cid}`),
      el("div", { class: "main" }, el("div", { class: "drawing", html: m.svg }),
        el("div", {}, el("p", { class: "smiles" }, m.smiles), el("p", {}, m.description || "(no description in the gallery)"),
          el("a", { href: "#", id: "close-molecule" }, "← back to the results (Esc)"))),
      el("h3", {}, m.neighbours.length ? "Nearest molecules (the model's molecule embeddings)" : "No molecule neighbours for this model"),
      neighbours,
      el("h3", {}, "Closest descriptions"),
      texts);
    view.hidden = false;
    $("molecule-title").focus();
  } catch (err) {
    showError(err.message);
  }
}

function closeMolecule(restoreFocus = true) {
  $("molecule-view").hidden = true;
  if (restoreFocus) $("query").focus();
}

function route() {
  const match = location.hash.match(/^#\/molecule\/([^?]+)(?:\?model=(.*))?$/);
  if (match) openMolecule(decodeURIComponent(match[1]), match[2] ? decodeURIComponent(match[2]) : null);
  else closeMolecule(false);
}

async function loadModels() {
  try {
    const data = await api("/models");
    state.models = data.models;
    $("model").replaceChildren(...data.models.map((m) => el("option", { value: m.name }, `${m.name} (${m.composition})`)));
    $("model").value = data.default;
    describeModel();
  } catch (err) {
    showError(err.message);
  }
}

function describeModel() {
  const m = state.models.find((x) => x.name === $("model").value);
  if (!m) return;
  const t2m = ((m.test_metrics || {}).all || {}).text_to_molecule;
  $("model-info").textContent = `${m.kind} · spec ${m.spec_hash}` + (t2m && t2m.mrr != null ? ` · test MRR ${(100 * t2m.mrr).toFixed(1)} % (gallery all)` : "");
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", search);
  $("query").addEventListener("input", updateDetected);
  $("query").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); search(); }
  });
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener("change", updateDetected);
  $("model").addEventListener("change", describeModel);
  document.addEventListener("keydown", (e) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (e.key === "/" && !typing) { e.preventDefault(); $("query").focus(); }
    if (e.key === "Escape" && !$("molecule-view").hidden) { location.hash = "#"; }
  });
  window.addEventListener("hashchange", route);
  loadModels().then(route);
});
