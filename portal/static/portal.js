// The portal's progressive enhancement (every page works without it):
// - an element with data-poll="<url>" asks that JSON url every second for
//   {done, value, max, text}, shows it in its <progress> and [data-poll-text], and reloads
//   the page once done (the server then renders the finished state);
// - a form with data-confirm="<question>" asks before it is sent.
"use strict";
(function () {
  function poll(element) {
    var url = element.getAttribute("data-poll");
    var bar = element.querySelector("progress");
    var text = element.querySelector("[data-poll-text]");
    function ask() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (state) {
          if (!state) { return; }
          if (bar && state.max) { bar.max = state.max; bar.value = state.value; }
          if (text && state.text) { text.textContent = state.text; }
          if (state.done) { window.location.reload(); } else { window.setTimeout(ask, 1000); }
        })
        .catch(function () { window.setTimeout(ask, 3000); });
    }
    window.setTimeout(ask, 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  });
})();
