// llmcorr dashboard: keep pages live by polling their JSON, and preview prompts as they are typed. No dependencies.
"use strict";

async function getJSON(url, options) {
  const response = await fetch(url, Object.assign({ headers: { Accept: "application/json" }, credentials: "same-origin" }, options || {}));
  if (!response.ok && response.status !== 400) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

// The runs table: refresh every second while a run goes (every 3 s otherwise), keeping the boxes ticked for Compare.
function liveRuns(table) {
  const tbody = table.querySelector("tbody");
  async function tick() {
    let delay = 3000;
    try {
      const data = await getJSON(table.dataset.liveRuns);
      const ticked = new Set([...tbody.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value));
      tbody.innerHTML = data.html;
      tbody.querySelectorAll("input[type=checkbox]").forEach((box) => { box.checked = ticked.has(box.value); });
      table.dataset.running = String(data.running);
      if (data.running > 0) delay = 1000;
    } catch (err) {
      console.warn(err);
    }
    setTimeout(tick, delay);
  }
  setTimeout(tick, table.querySelector('tr[data-status="running"]') ? 1000 : 3000);
}

// One run: while it runs, refresh its summary, metrics and rows every second; once more when it stops.
function liveRun(panel) {
  async function tick() {
    try {
      const data = await getJSON(panel.dataset.liveRun);
      panel.innerHTML = data.html;
      panel.dataset.status = data.run.status;
      document.querySelectorAll("[data-when-running]").forEach((el) => { el.hidden = data.run.status !== "running"; });
      if (data.run.status !== "running") return;
    } catch (err) {
      console.warn(err);
    }
    setTimeout(tick, 1000);
  }
  if (panel.dataset.status === "running") setTimeout(tick, 1000);
}

// The preview: re-render (debounced) whenever the prompt, its inputs or the endpoint change.
function livePreview(form) {
  const result = document.getElementById("preview-result");
  const inputs = document.getElementById("preview-inputs");
  let timer = null;
  let sequence = 0;
  async function render() {
    const mine = ++sequence;
    const body = {};
    ["path", "template", "inputs", "endpoint"].forEach((name) => { body[name] = form.elements[name].value; });
    if (!body.path.trim() && !body.template.trim()) return;
    try {
      const data = await getJSON(form.dataset.preview, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
      if (mine !== sequence) return; // a later keystroke's answer wins
      result.innerHTML = data.html;
      if (data.sample && !inputs.value.trim()) inputs.value = JSON.stringify(data.sample, null, 2);
      form.dataset.rendered = String(mine);
    } catch (err) {
      console.warn(err);
    }
  }
  function later() {
    clearTimeout(timer);
    timer = setTimeout(render, 250);
  }
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  form.addEventListener("submit", (event) => { event.preventDefault(); render(); });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live-runs]").forEach(liveRuns);
  document.querySelectorAll("[data-live-run]").forEach(liveRun);
  document.querySelectorAll("[data-preview]").forEach(livePreview);
});
