/* Stand-in for https://checkout.razorpay.com/v1/checkout.js, served by the fake API.
 *
 * Implements just enough of `new Razorpay(options).open()` for a browser test: a modal
 * with "Pay", "Fail" and "Dismiss". Pay/Fail ask the fake (same origin as this script)
 * to record a payment on options.order_id; with options.redirect the result is POSTed
 * to options.callback_url as Razorpay's form fields, otherwise options.handler or the
 * "payment.failed" handler is called. Dismiss calls options.modal.ondismiss.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var origin = script ? new URL(script.src).origin : "";

  function post(url, fields) {
    var body = new URLSearchParams(fields);
    return fetch(url, { method: "POST", body: body }).then(function (r) { return r.json(); });
  }

  function submit(url, fields) {
    var form = document.createElement("form");
    form.method = "POST";
    form.action = url;
    Object.keys(fields).forEach(function (name) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = fields[name] == null ? "" : String(fields[name]);
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }

  function errorFields(error) {
    var meta = error.metadata || {};
    return {
      "error[code]": error.code, "error[description]": error.description,
      "error[source]": error.source, "error[step]": error.step,
      "error[reason]": error.reason,
      "error[metadata][order_id]": meta.order_id, "error[metadata][payment_id]": meta.payment_id
    };
  }

  function Razorpay(options) {
    if (!options || !options.key) { throw new Error("Razorpay: options.key is required"); }
    this.options = options;
    this.handlers = {};
    this.box = null;
  }

  Razorpay.prototype.on = function (name, fn) { this.handlers[name] = fn; };

  Razorpay.prototype.close = function () {
    if (this.box) { this.box.remove(); this.box = null; }
  };

  Razorpay.prototype.open = function () {
    var self = this, o = this.options;
    var box = document.createElement("div");
    box.id = "razorpay-fake-modal";
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-label", "Fake Razorpay Checkout");
    box.style.position = "fixed"; box.style.inset = "20% 25%"; box.style.padding = "1em";
    box.style.background = "#fff"; box.style.border = "2px solid #0c2451";
    box.style.zIndex = "10000";
    var title = document.createElement("p");
    title.textContent = "Fake Razorpay: " + (o.name || "") + " " + o.amount + " " +
      (o.currency || "INR") + " for " + o.order_id + " (" +
      ((o.prefill && o.prefill.email) || "") + ")";
    box.appendChild(title);
    var status = document.createElement("p");
    status.id = "razorpay-fake-status";
    status.setAttribute("role", "status");

    function button(label, onclick) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.addEventListener("click", onclick);
      box.appendChild(b);
      return b;
    }

    function pay(outcome) {
      status.textContent = "Processing…";
      post(origin + "/_fake/checkout/" + encodeURIComponent(o.order_id) + "/pay",
           { outcome: outcome, key: o.key, method: "card",
             customer_id: o.customer_id || "", recurring: o.recurring || "" }).then(function (result) {
        if (result.error) {
          status.textContent = result.error.description;
          if (o.redirect && o.callback_url && outcome === "fail") {
            submit(o.callback_url, errorFields(result.error));
          } else if (self.handlers["payment.failed"]) {
            self.handlers["payment.failed"]({ error: result.error });
          }
          return;
        }
        status.textContent = "Paid";
        if (o.redirect && o.callback_url) {
          submit(o.callback_url, result);
        } else if (typeof o.handler === "function") {
          self.close();
          o.handler(result);
        }
      });
    }

    button("Pay", function () { pay("success"); });
    button("Fail", function () { pay("fail"); });
    button("Dismiss", function () {
      self.close();
      if (o.modal && typeof o.modal.ondismiss === "function") { o.modal.ondismiss(); }
    });
    box.appendChild(status);
    document.body.appendChild(box);
    this.box = box;
  };

  window.Razorpay = Razorpay;
})();
