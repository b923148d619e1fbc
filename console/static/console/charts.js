/* Console charts: small SVG line and bar charts drawn from JSON data islands.
 * Served by the app (no CDN). Each chart's figures are also in a table beside it,
 * which is what screen readers read; the SVG is aria-hidden.
 *
 * <div class="console-chart" data-chart="ID" data-kind="line|bar"></div>
 * <script type="application/json" id="ID">{"labels": [...], "series": [{"name", "values", "style"}]}</script>
 */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var COLOURS = ["#000091", "#e1000f", "#18753c", "#b34000", "#6a6af4"];

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function draw(holder) {
    var island = document.getElementById(holder.getAttribute("data-chart"));
    if (!island) { return; }
    var data = JSON.parse(island.textContent);
    var kind = holder.getAttribute("data-kind") || "line";
    var width = 640, height = 240, left = 56, right = 12, top = 12, bottom = 32;
    var all = [];
    data.series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null) { all.push(v); } }); });
    var max = Math.max.apply(null, all.concat([1]));
    var svg = el("svg", {viewBox: "0 0 " + width + " " + height, role: "img", "aria-hidden": "true",
                         "class": "console-chart__svg", width: "100%"}, holder);
    var plotW = width - left - right, plotH = height - top - bottom;
    var n = Math.max(data.labels.length, 1);
    function x(i) { return left + (n === 1 ? plotW / 2 : (i * plotW) / (n - 1)); }
    function y(v) { return top + plotH - (v / max) * plotH; }
    el("line", {x1: left, y1: top + plotH, x2: width - right, y2: top + plotH, stroke: "#666"}, svg);
    el("line", {x1: left, y1: top, x2: left, y2: top + plotH, stroke: "#666"}, svg);
    [0, 0.5, 1].forEach(function (f) {
      var t = el("text", {x: left - 6, y: y(max * f) + 4, "text-anchor": "end", "font-size": 11}, svg);
      t.textContent = Math.round(max * f).toLocaleString("fr-FR");
    });
    [0, n - 1].forEach(function (i) {
      if (data.labels[i] === undefined) { return; }
      var t = el("text", {x: x(i), y: height - 10, "text-anchor": i ? "end" : "start", "font-size": 11}, svg);
      t.textContent = data.labels[i];
    });
    data.series.forEach(function (s, k) {
      var colour = COLOURS[k % COLOURS.length];
      if (kind === "bar") {
        var slot = plotW / n, barW = Math.max(2, (slot * 0.8) / data.series.length);
        s.values.forEach(function (v, i) {
          if (v === null) { return; }
          var bx = left + i * slot + slot * 0.1 + k * barW;
          el("rect", {x: bx, y: y(v), width: barW, height: top + plotH - y(v), fill: colour,
                      "class": "console-chart__bar", "data-value": v}, svg);
        });
      } else {
        var points = [];
        s.values.forEach(function (v, i) { if (v !== null) { points.push(x(i) + "," + y(v)); } });
        el("polyline", {points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 2,
                        "stroke-dasharray": s.style === "goal" ? "6 4" : "none",
                        "class": "console-chart__line", "data-series": s.name}, svg);
        s.values.forEach(function (v, i) {
          if (v !== null && s.style === "milestones") {
            el("circle", {cx: x(i), cy: y(v), r: 4, fill: colour, "class": "console-chart__milestone"}, svg);
          }
        });
      }
    });
    var legend = document.createElement("p");
    legend.className = "fr-text--xs console-chart__legend";
    legend.setAttribute("aria-hidden", "true");
    data.series.forEach(function (s, k) {
      var key = document.createElement("span");
      key.style.color = COLOURS[k % COLOURS.length];
      key.textContent = "■ " + s.name + "  ";
      legend.appendChild(key);
    });
    holder.appendChild(legend);
    holder.setAttribute("data-drawn", "yes");
  }

  document.querySelectorAll(".console-chart").forEach(draw);
})();
