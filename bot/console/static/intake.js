// 来电登记 (and a 坐席's 代登记 on a 转人工 conversation): while the operator types, ask the console for the routing explainer's proposal
// (GET /console/intake/proposal) and prefill category and street; the operator confirms or
// changes them. What was proposed goes along in hidden fields (a change is a correction for
// the review inbox). Text from the server is set with textContent, never as HTML.
(function () {
  "use strict";
  var form = document.getElementById("intake-form");
  if (!form) { return; }
  var out = document.getElementById("intake-proposal-text");
  var timer = null;
  var seq = 0;
  var touched = { category: false, street: false };  // the operator's own choice is never overwritten

  form.elements.category.addEventListener("change", function () { touched.category = true; });
  form.elements.street.addEventListener("change", function () {
    touched.street = true;
    form.elements.community.value = "";  // the proposed community belongs to the proposed street
  });

  function show(p) {
    if (!p.available) { out.textContent = p.message; return; }
    if (!p.category) { out.textContent = "暂无建议，请手动选择类别和街道。"; return; }
    var where = p.street ? (p.street_name + (p.community_name ? " " + p.community_name : "")) : "地点未能确定";
    var route = p.manual ? "转派单中心人工派单" : ("主办 " + p.lead_name + (p.co_names.length ? "，协办/属地 " + p.co_names.join("、") : ""));
    out.textContent = "类别：" + p.category_name + "（置信度 " + Math.round((p.confidence || 0) * 100) + "%）；地点：" + where + "；" + route + "。" + (p.reason ? " 依据：" + p.reason : "");
  }

  function apply(p) {
    if (!p.available || !p.category) { return; }
    form.elements.proposed_category.value = p.category;
    form.elements.proposed_street.value = p.street || "";
    if (!touched.category) { form.elements.category.value = p.category; }
    if (!touched.street) {
      form.elements.street.value = p.street || "";
      form.elements.community.value = p.community || "";
    }
  }

  function ask() {
    var text = form.elements.description.value.trim();
    if (!text) { return; }
    var mine = ++seq;
    var url = form.dataset.proposal + "?text=" + encodeURIComponent(text) + "&place=" + encodeURIComponent(form.elements.place.value.trim());
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (p) { if (mine === seq) { show(p); apply(p); } })
      .catch(function () { if (mine === seq) { out.textContent = "自动建议暂不可用，请手动选择类别和街道。"; } });
  }

  function later() { clearTimeout(timer); timer = setTimeout(ask, 500); }
  form.elements.description.addEventListener("input", later);
  form.elements.place.addEventListener("input", later);
  if (form.dataset.askNow && form.elements.description.value.trim()) { ask(); }  // prefilled: the resident's words
  form.addEventListener("submit", function () {
    var button = form.querySelector("button[type=submit]");
    setTimeout(function () { button.disabled = true; }, 0);  // one click, one ticket (the token guards the rest)
  });
})();
