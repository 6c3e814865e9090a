// The privacy portal's only script. No inline handlers anywhere (the CSP forbids them):
// behaviour is attached here by data attributes, and every page works without it.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  // <form data-confirm="question">: ask before a destructive submit.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });
  // <element data-refresh="seconds">: reload while something runs in the background
  // (an export being built, an erasure in progress); the page also links "check again".
  var refreshing = document.querySelector("[data-refresh]");
  if (refreshing) {
    var seconds = parseInt(refreshing.getAttribute("data-refresh"), 10) || 2;
    window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }
});
