// Dashboard charts: data comes from the page (#dashboard-data), the library from
// /console/static/vendor/echarts.min.js (installed by `make console-assets`, never a CDN).
(function () {
  "use strict";
  var el = document.getElementById("dashboard-data");
  if (!el || typeof window.echarts === "undefined") { return; }
  var data = JSON.parse(el.textContent);
  var charts = [];
  function chart(id, option) {
    var node = document.getElementById(id);
    if (!node) { return; }
    var c = window.echarts.init(node, null, { renderer: "svg" });
    c.setOption(Object.assign({ animation: false, tooltip: { trigger: "axis" } }, option));
    charts.push(c);
  }
  chart("chart-per-day", {
    legend: { type: "scroll", top: 0 },
    grid: { left: 32, right: 8, top: 36, bottom: 24 },
    xAxis: { type: "category", data: data.perDay.days },
    yAxis: { type: "value", minInterval: 1 },
    series: data.perDay.series.map(function (s) { return { name: s.name, type: "bar", stack: "n", data: s.data }; })
  });
  chart("chart-per-street", {
    grid: { left: 8, right: 16, top: 8, bottom: 8, containLabel: true },
    xAxis: { type: "value", minInterval: 1 },
    yAxis: { type: "category", data: data.perStreet.names.slice().reverse() },
    series: [{ type: "bar", data: data.perStreet.counts.slice().reverse(), itemStyle: { color: "#0b5cad" } }]
  });
  chart("chart-open", {
    legend: { top: 0 },
    grid: { left: 8, right: 16, top: 32, bottom: 8, containLabel: true },
    xAxis: { type: "value", minInterval: 1 },
    yAxis: { type: "category", data: data.openVsOverdue.names.slice().reverse() },
    series: [
      { name: "在办", type: "bar", data: data.openVsOverdue.open.slice().reverse(), itemStyle: { color: "#0b5cad" } },
      { name: "超期", type: "bar", data: data.openVsOverdue.overdue.slice().reverse(), itemStyle: { color: "#b42318" } }
    ]
  });
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
})();
