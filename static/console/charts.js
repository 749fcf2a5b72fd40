// Draws the plotly figures of a page: each element with data-plotly names the json_script
// element that holds its figure (the CSP allows no inline script, so the data travels as
// JSON and this file draws it). Runs on load and again for regions htmx swaps in.
(function () {
  "use strict";
  function draw(root) {
    if (!window.Plotly || !root || !root.querySelectorAll) { return; }
    root.querySelectorAll("[data-plotly]").forEach(function (element) {
      var source = document.getElementById(element.getAttribute("data-plotly"));
      if (!source) { return; }
      var figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(element, figure.data, figure.layout || {}, {
        displaylogo: false,
        responsive: true,
        modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"]
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  // After settling, not after swapping: htmx's settle step puts back the server's attributes
  // on elements whose id was already on the page, which would strip plotly's classes.
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.detail.target); });
})();
