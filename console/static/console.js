/* Kebiao console: progressive enhancement only; every page works without it. No inline scripts (CSP). */
(function () {
  "use strict";
  document.querySelectorAll("[data-color]").forEach(function (el) {
    el.style.backgroundColor = el.getAttribute("data-color");
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  var problems = document.getElementById("problems");
  if (problems) {
    var first = document.querySelector("[aria-invalid=true]");
    (first || problems).focus();
  }
})();
