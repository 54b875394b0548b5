/* Reports: draw the ECharts charts from the JSON data blocks the page carries. */
(function () {
  "use strict";
  if (!window.echarts) { return; }
  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  var charts = [];
  function draw(id, option) {
    var el = document.getElementById(id);
    if (!el) { return; }
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    chart.setOption(option);
    charts.push(chart);
    el.setAttribute("data-drawn", "1");
  }
  var usage = data("usage-data");
  if (usage) {
    draw("usage-chart", {
      tooltip: { trigger: "axis" },
      legend: { type: "scroll", top: 0 },
      grid: { left: 40, right: 16, top: 40, bottom: 40 },
      xAxis: { type: "category", data: usage.days },
      yAxis: { type: "value", minInterval: 1 },
      series: usage.series.map(function (s) { return { name: s.name, type: "line", data: s.data, smooth: true }; })
    });
  }
  var rate = data("rate-data");
  if (rate) {
    draw("rate-chart", {
      tooltip: { trigger: "axis", valueFormatter: function (v) { return v + "%"; } },
      grid: { left: 90, right: 24, top: 16, bottom: 24 },
      xAxis: { type: "value", max: 100 },
      yAxis: { type: "category", data: rate.tags, inverse: true },
      series: [{ type: "bar", data: rate.rates, label: { show: true, position: "right", formatter: "{c}%" } }]
    });
  }
  var matrix = data("matrix-data");
  if (matrix) {
    draw("matrix-chart", {
      tooltip: { position: "top" },
      grid: { left: 90, right: 16, top: 16, bottom: 90 },
      xAxis: { type: "category", data: matrix.tags, axisLabel: { rotate: 45 } },
      yAxis: { type: "category", data: matrix.tags },
      visualMap: { min: 0, max: Math.max(1, matrix.max), calculable: true, orient: "horizontal", left: "center", bottom: 0 },
      series: [{ type: "heatmap", data: matrix.cells, label: { show: true } }]
    });
  }
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
})();
