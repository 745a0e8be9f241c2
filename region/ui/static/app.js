// The images page's own script: the live status stream and the chunked upload.
// Forms work without it; htmx (vendored next to it) handles Connect and the sync switch.
(function () {
  "use strict";
  const CHUNK = 4 << 20;

  function statusMap(root) {
    const seen = new Map();
    root.querySelectorAll("[data-status-of]").forEach((cell) => {
      const text = cell.querySelector(".status-text");
      seen.set(cell.dataset.statusOf, text ? text.textContent.trim() : "");
    });
    return seen;
  }

  function announce(text) {
    const log = document.getElementById("announcer");
    if (!log) return;
    const line = document.createElement("p");
    line.textContent = text;
    log.appendChild(line);
    while (log.childNodes.length > 5) log.removeChild(log.firstChild);
  }

  function startEvents() {
    const url = document.body.dataset.events;
    const live = document.getElementById("live-status");
    if (!url || !live || !window.EventSource) return;
    const source = new EventSource(url);
    source.addEventListener("status", (event) => {
      const before = statusMap(live);
      const hadBanner = !!document.getElementById("import-banner");
      live.innerHTML = event.data;
      if (window.htmx) window.htmx.process(live);
      const after = statusMap(live);
      after.forEach((status, image) => {
        if (before.get(image) !== status) announce(`${image}: ${status}`);
      });
      const hasBanner = !!document.getElementById("import-banner");
      if (hasBanner && !hadBanner) announce("Import started.");
      if (!hasBanner && hadBanner) announce("Import finished.");
    });
  }

  async function sha256(file) {
    if (!(window.crypto && crypto.subtle)) return null;
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Each message goes next to the control its field belongs to (data-error-for lists the
  // API's field names); anything else goes to the form's general error line.
  function clearErrors(form) {
    form.querySelectorAll("[data-error-for], #upload-error").forEach((box) => {
      box.hidden = true;
      box.textContent = "";
    });
    form.querySelectorAll("[aria-invalid]").forEach((control) => control.removeAttribute("aria-invalid"));
  }

  function showError(form, message, field) {
    const boxes = Array.from(form.querySelectorAll("[data-error-for]"));
    const box = boxes.find((b) => b.dataset.errorFor.split(" ").includes(field)) || form.querySelector("#upload-error");
    box.textContent = box.textContent ? `${box.textContent} ${message}` : message;
    box.hidden = false;
    const control = box.dataset.control && document.getElementById(box.dataset.control);
    if (control) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
    }
  }

  async function showResponseErrors(form, response) {
    const text = await response.text();
    let data = null;
    try { data = JSON.parse(text); } catch (e) { data = null; }
    if (data && typeof data === "object" && !Array.isArray(data)) {
      Object.entries(data).reverse().forEach(([field, msgs]) => showError(form, [].concat(msgs).join(" "), field));
    } else {
      showError(form, text || `The region answered ${response.status}.`);
    }
  }

  async function upload(form) {
    const csrf = document.body.dataset.csrf;
    const file = form.querySelector("#up-file").files[0];
    const bar = form.querySelector("#upload-progress");
    const status = form.querySelector("#upload-status");
    clearErrors(form);
    if (!file) { showError(form, "Choose a file to upload.", "content"); return; }
    const fields = new FormData(form);
    fields.delete("content");
    const digest = await sha256(file);
    if (digest) { fields.set("sha256", digest); fields.set("size", String(file.size)); }
    else { fields.set("content", file); }
    bar.hidden = false; bar.value = 0; status.textContent = "Starting upload…";
    const made = await fetch(form.action, { method: "POST", body: fields, headers: { "X-CSRFToken": csrf }, credentials: "same-origin" });
    if (made.status !== 201) { await showResponseErrors(form, made); status.textContent = ""; bar.hidden = true; return; }
    const resource = await made.json();
    const pending = Object.values(resource.sets || {}).flatMap((s) => Object.values(s.files)).find((f) => f.upload_uri);
    if (pending) {
      const parts = pending.upload_uri.split("/").filter(Boolean);
      const fileId = parts[parts.length - 1];
      const chunkUrl = `${form.action}/${resource.id}/${fileId}`;
      for (let offset = 0; offset < file.size; offset += CHUNK) {
        const piece = file.slice(offset, Math.min(file.size, offset + CHUNK));
        const put = await fetch(chunkUrl, { method: "PUT", body: piece, headers: { "X-CSRFToken": csrf, "Content-Type": "application/octet-stream" }, credentials: "same-origin" });
        if (put.status !== 200) { await showResponseErrors(form, put); status.textContent = ""; return; }
        bar.value = Math.round((100 * Math.min(file.size, offset + CHUNK)) / file.size);
        status.textContent = `Uploading ${bar.value}%`;
      }
    }
    bar.value = 100;
    status.textContent = `Uploaded ${resource.name}.`;
    form.reset();
  }

  document.addEventListener("DOMContentLoaded", () => {
    startEvents();
    const form = document.getElementById("upload-form");
    if (form) {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        upload(form).catch((err) => showError(form, `Upload failed: ${err}`));
      });
    }
  });
})();
