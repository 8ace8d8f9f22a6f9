// leadrouter console: live parts of a page. An element with data-live="URL" is replaced by
// what URL answers, every data-every seconds (default 2), while the page is visible. No
// framework; without JavaScript the page still works (it is rendered whole on the server).
(function () {
  "use strict";
  function refresh(element) {
    if (document.hidden) return;
    fetch(element.getAttribute("data-live"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401 || response.redirected) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) { if (html !== null) element.innerHTML = html; })
      .catch(function () { /* the next tick tries again */ });
  }
  document.querySelectorAll("[data-live]").forEach(function (element) {
    var every = Number(element.getAttribute("data-every") || "2") * 1000;
    setInterval(function () { refresh(element); }, every);
  });
})();
