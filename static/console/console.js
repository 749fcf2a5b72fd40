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
})();
