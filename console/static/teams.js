/* Teams tab: get the SSO token from the Teams JS library, post it, and go where the server says. */
(function () {
  "use strict";
  var status = document.getElementById("teams-status");
  var csrf = document.querySelector("meta[name=csrf-token]").getAttribute("content");
  function fail() { status.textContent = status.getAttribute("data-failed"); }
  if (!window.microsoftTeams) { fail(); return; }
  microsoftTeams.app.initialize()
    .then(function () { return microsoftTeams.authentication.getAuthToken(); })
    .then(function (token) {
      return fetch("/console/signin/teams", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ token: token })
      });
    })
    .then(function (response) { return response.json(); })
    .then(function (body) {
      if (body && body.location) { window.location.assign(body.location); } else { fail(); }
    })
    .catch(fail);
})();
