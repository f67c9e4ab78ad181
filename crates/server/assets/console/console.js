// signalbox console: the little the pages need beyond htmx. No inline scripts (the pages'
// Content-Security-Policy allows scripts from this origin only).
"use strict";
document.addEventListener("htmx:responseError", (event) => {
  // A refused or failed in-place update: say so where screen readers hear it, instead of
  // leaving the page silently unchanged.
  const status = document.getElementById("console-status");
  if (!status) return;
  const xhr = event.detail.xhr;
  let text = xhr.status + " " + xhr.statusText;
  const match = /<p class="error"[^>]*>([^<]*)<\/p>/.exec(xhr.responseText || "");
  if (match) {
    const tmp = document.createElement("textarea");
    tmp.innerHTML = match[1];
    text += ": " + tmp.value;
  }
  status.textContent = text;
  status.classList.add("is-error");
});
document.addEventListener("htmx:afterSwap", () => {
  const status = document.getElementById("console-status");
  if (status && status.classList.contains("is-error")) {
    status.textContent = "";
    status.classList.remove("is-error");
  }
});
// Forms that ask before doing something that cannot be undone (revoking a key, purging).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
}, true);
