// Theme (light, dark or system) kept in localStorage; the service worker; and, on any page
// shown without a session, the removal of every page kept for offline reading.
(function () {
  "use strict";
  var root = document.documentElement;
  function applyTheme(theme) {
    if (theme === "light" || theme === "dark") { root.dataset.theme = theme; } else { delete root.dataset.theme; }
  }
  applyTheme(localStorage.getItem("protonn-theme"));

  function forgetPages() {
    if (!("caches" in window)) { return Promise.resolve(); }
    return caches.keys().then(function (names) {
      return Promise.all(names.filter(function (n) { return n.indexOf("protonn-pages-") === 0; })
        .map(function (n) { return caches.delete(n); }));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("theme");
    if (select) {
      select.value = localStorage.getItem("protonn-theme") || "system";
      select.addEventListener("change", function () {
        localStorage.setItem("protonn-theme", select.value);
        applyTheme(select.value);
      });
    }
    if (document.body.dataset.auth !== "true") { forgetPages(); }
    document.querySelectorAll("form[data-logout]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (form.dataset.cleared === "1") { return; }
        event.preventDefault();
        forgetPages().then(function () { form.dataset.cleared = "1"; form.submit(); }, function () { form.submit(); });
      });
    });
    document.querySelectorAll("[data-confirm]").forEach(function (el) {
      el.addEventListener("click", function (event) {
        if (!window.confirm(el.dataset.confirm)) { event.preventDefault(); }
      });
    });
  });

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {});
  }
})();
