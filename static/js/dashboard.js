// Dashboard behaviour that htmx attributes can't express without inline script.
// After a swap the user asked for (a submit or a click, never a background poll or
// typing in a filter), move focus to the updated region so keyboard and screen reader
// users land on the result.
(function () {
  "use strict";
  document.addEventListener("htmx:afterSwap", function (event) {
    var config = event.detail && event.detail.requestConfig;
    var trigger = config && config.triggeringEvent;
    if (!trigger || (trigger.type !== "submit" && trigger.type !== "click")) {
      return;
    }
    var target = event.detail.target;
    var root = target && target.isConnected ? target : document;
    var spot = root.querySelector ? root.querySelector("[data-focus-after-swap]") : null;
    if (!spot) {
      // outerHTML swaps replace the target: look for the new element by id.
      var id = target && target.id;
      var fresh = id ? document.getElementById(id) : null;
      spot = fresh ? fresh.querySelector("[data-focus-after-swap]") : null;
    }
    if (spot) {
      spot.focus();
    }
  });
})();
