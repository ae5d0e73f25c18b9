// 常用语 on a ticket's action forms: picking one fills its text box (as plain text, never
// markup); the worker edits it there, and what is in the box is what is sent.
(function () {
  "use strict";
  var picks = document.querySelectorAll("select.phrase-pick");
  Array.prototype.forEach.call(picks, function (select) {
    select.addEventListener("change", function () {
      var option = select.options[select.selectedIndex];
      var box = document.getElementById(select.getAttribute("data-target"));
      if (!box || !option || !option.value) { return; }
      box.value = option.getAttribute("data-text");
      box.focus();
    });
  });
})();
