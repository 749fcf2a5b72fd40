// Small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  // Selects marked data-autosubmit (account and language switchers) submit on change.
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("select[data-autosubmit]") && target.form) {
      target.form.submit();
    }
  });
  // Buttons marked data-confirm ask before a destructive action.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);
  // The bar at the top of the page shows while any htmx request is in flight: htmx marks only
  // the element that asked (or its hx-indicator), and the bar is outside it. The request's
  // own loadend comes once, whatever the outcome (htmx's afterRequest may come twice).
  var inFlight = 0;
  document.addEventListener("htmx:beforeSend", function (event) {
    var bar = document.querySelector(".htmx-progress");
    var xhr = event.detail.xhr;
    if (!bar || !xhr) { return; }
    inFlight += 1;
    bar.classList.add("htmx-request");
    xhr.addEventListener("loadend", function () {
      inFlight -= 1;
      if (inFlight === 0) { bar.classList.remove("htmx-request"); }
    });
  });
  // A form marked data-reset-on-success empties itself once htmx reports success (the new
  // key's dialog is showing; the form should not invite a double submit).
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.matches && form.matches("form[data-reset-on-success]") && event.detail.successful) {
      form.reset();
    }
  });
  // Copy buttons: data-copy names the input to copy, or any other element (a code block)
  // whose text to copy; the label confirms for a moment.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) { return; }
    var field = document.querySelector(button.getAttribute("data-copy"));
    if (!field) { return; }
    var text;
    if (field.matches("input, textarea")) {
      text = field.value;
      field.select();
    } else {
      // Selected too, so the execCommand fallback copies it and the reader sees what went.
      text = field.textContent;
      var range = document.createRange();
      range.selectNodeContents(field);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    var done = function () {
      var label = button.textContent;
      button.textContent = button.getAttribute("data-copied") || label;
      setTimeout(function () { button.textContent = label; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { document.execCommand("copy"); done(); });
    } else {
      document.execCommand("copy");
      done();
    }
  });
  // A posted form shows that it is working (a PDF statement or a payment can take seconds)
  // and cannot be sent twice by an impatient second click. htmx forms have their own
  // indicator. Disabled after the submit has collected the button's name; enabled again when
  // the page comes back from the history cache, or after a while if no page replaced it.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || form.hasAttribute("hx-post") || (form.method || "").toLowerCase() !== "post") { return; }
    var buttons = form.querySelectorAll("button[type=submit]:not([disabled]), button:not([type]):not([disabled])");
    form.setAttribute("aria-busy", "true");
    setTimeout(function () {
      buttons.forEach(function (button) { button.disabled = true; button.setAttribute("data-busy", ""); });
    }, 0);
    setTimeout(function () { release(form); }, 15000);
  });
  function release(form) {
    form.removeAttribute("aria-busy");
    form.querySelectorAll("button[data-busy]").forEach(function (button) {
      button.disabled = false;
      button.removeAttribute("data-busy");
    });
  }
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[aria-busy]").forEach(release);
  });
})();
