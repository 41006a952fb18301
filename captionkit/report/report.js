// Sortable tables: click a header to sort its rows by that column (numbers by data-value).
(function () {
  "use strict";
  function cellKey(row, index, numeric) {
    var cell = row.children[index];
    if (!cell) { return numeric ? -Infinity : ""; }
    if (numeric) {
      var v = parseFloat(cell.getAttribute("data-value"));
      if (isNaN(v)) { v = parseFloat(cell.textContent); }
      return isNaN(v) ? -Infinity : v;
    }
    return cell.textContent.trim().toLowerCase();
  }
  function sortBy(table, th, index) {
    var numeric = th.getAttribute("data-sort") === "num";
    var descending = !th.classList.contains("sorted-desc");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellKey(a, index, numeric), y = cellKey(b, index, numeric);
      var order = x < y ? -1 : (x > y ? 1 : 0);
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.classList.remove("sorted-asc", "sorted-desc");
    });
    th.classList.add(descending ? "sorted-desc" : "sorted-asc");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      if (th.hasAttribute("data-sort")) {
        th.addEventListener("click", function () { sortBy(table, th, index); });
      }
    });
  });
})();
