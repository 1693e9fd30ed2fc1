/* Opens Razorpay Checkout on /checkout/razorpay/<payment id>.
 *
 * The options (key id, amount, Razorpay order id, prefill, callback_url with
 * redirect: true) come from the data-options attribute written by the server, so the
 * page needs no inline script. Dismissing the modal goes to the cancel page.
 */
(function () {
  "use strict";

  function start() {
    var root = document.getElementById("razorpay-checkout");
    if (!root) { return; }
    var button = document.getElementById("razorpay-pay");
    if (typeof window.Razorpay !== "function") {
      document.getElementById("razorpay-unavailable").hidden = false;
      return;
    }
    var options = JSON.parse(root.dataset.options);
    var cancelUrl = root.dataset.cancelUrl;
    options.modal = {
      ondismiss: function () { window.location.assign(cancelUrl); }
    };
    function open() { new window.Razorpay(options).open(); }
    button.addEventListener("click", open);
    button.disabled = false;
    if (root.dataset.autoOpen === "true") { open(); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
