/* 青城诉求 widget loader. Any page embeds the assistant with one tag:
 *
 *   <script src="https://<our server>/widget/embed.js" async></script>
 *
 * It adds a launcher button (bottom right) and, when opened, a panel with the chat page
 * (/widget/ of the same server) in an iframe, so the host page's styles and scripts and
 * the widget cannot interfere with each other. Optional: data-label="…" (button text).
 * Full screen on phones (≤ 480 px wide); Esc or the × in the panel closes it.
 */
(function () {
  "use strict";
  if (window.__qingchengWidget) return;
  var script = document.currentScript;
  if (!script || !script.src) return;
  window.__qingchengWidget = true;

  var base = new URL(".", script.src);  // …/widget/
  var origin = base.origin;
  var label = script.getAttribute("data-label") || "在线反映";
  var OPEN_KEY = "qingcheng-widget:open";
  var STATE_KEY = "qingcheng-widget:v1";

  var css = [
    ":host { all: initial; }",
    ".launcher { position: fixed; right: 16px; bottom: 16px; z-index: 2147483000;",
    "  display: inline-flex; align-items: center; gap: 6px; min-height: 48px; padding: 0 20px;",
    "  border: 2px solid #ffffff; border-radius: 24px; background: #0a4f9e; color: #ffffff;",
    "  font: 600 16px/1.2 system-ui, -apple-system, 'PingFang SC', 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif;",
    "  box-shadow: 0 4px 14px rgba(0, 0, 0, 0.3); cursor: pointer; }",
    ".launcher:hover { background: #083f7e; }",
    ".launcher:focus-visible { outline: 3px solid #f5a300; outline-offset: 2px; }",
    ".panel { position: fixed; right: 16px; bottom: 80px; z-index: 2147483001; display: none;",
    "  width: 380px; height: min(640px, calc(100vh - 96px)); border-radius: 12px; overflow: hidden;",
    "  background: #ffffff; box-shadow: 0 8px 28px rgba(0, 0, 0, 0.35); }",
    ".panel.open { display: block; }",
    "iframe { display: block; width: 100%; height: 100%; border: 0; }",
    "@media (max-width: 480px) {",
    "  .panel { top: 0; right: 0; bottom: 0; left: 0; width: 100%; height: 100%; border-radius: 0; }",
    "  .panel.open + .launcher, .launcher[aria-expanded='true'] { display: none; }",
    "}"
  ].join("\n");

  var host = document.createElement("div");
  host.id = "qingcheng-widget";
  var root = host.attachShadow({ mode: "open" });
  var style = document.createElement("style");
  style.textContent = css;

  var panel = document.createElement("div");
  panel.className = "panel";
  panel.id = "qc-panel";
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", "青城诉求 在线反映");

  var frame = document.createElement("iframe");
  frame.title = "青城诉求在线反映对话窗口";
  frame.setAttribute("allow", "geolocation");  // the 发送位置 button asks the browser for the position

  var launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "launcher";
  launcher.setAttribute("aria-controls", "qc-panel");
  launcher.setAttribute("aria-expanded", "false");
  var SVG = "http://www.w3.org/2000/svg";
  var icon = document.createElementNS(SVG, "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("width", "20");
  icon.setAttribute("height", "20");
  icon.setAttribute("aria-hidden", "true");
  icon.setAttribute("focusable", "false");
  var path = document.createElementNS(SVG, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6v2h2V9H7zm4 0v2h2V9h-2zm4 0v2h2V9h-2z");
  icon.appendChild(path);
  var text = document.createElement("span");
  text.textContent = label;
  launcher.appendChild(icon);
  launcher.appendChild(text);
  launcher.title = "青城诉求：在线反映问题、查询工单";

  panel.appendChild(frame);
  root.appendChild(style);
  root.appendChild(panel);
  root.appendChild(launcher);

  function remember(open) {
    try { window.sessionStorage.setItem(OPEN_KEY, open ? "1" : "0"); } catch (e) { /* ignore */ }
  }

  var loaded = false;
  frame.addEventListener("load", function () { loaded = !!frame.getAttribute("src"); });  // not the initial about:blank

  function focusChat() {
    if (loaded) frame.contentWindow.postMessage({ type: "qc-widget:focus" }, origin);
  }

  function open(focus) {
    if (!frame.getAttribute("src")) {
      frame.src = base.href;  // loaded on first open only: no connection for visitors who never chat
      if (focus) frame.addEventListener("load", focusChat, { once: true });
    }
    panel.classList.add("open");
    launcher.setAttribute("aria-expanded", "true");
    remember(true);
    if (focus) { frame.focus(); focusChat(); }
  }

  function close() {
    panel.classList.remove("open");
    launcher.setAttribute("aria-expanded", "false");
    remember(false);
    launcher.focus();
  }

  launcher.addEventListener("click", function () {
    if (panel.classList.contains("open")) close(); else open(true);
  });
  // The chat's session id and history are kept here, in this page's localStorage: a
  // browser that blocks third-party storage gives the iframe none of its own.
  function readState() {
    try { return window.localStorage.getItem(STATE_KEY); } catch (e) { return null; }
  }
  function writeState(json) {
    try { window.localStorage.setItem(STATE_KEY, json); } catch (e) { /* storage full or blocked */ }
  }
  // A day after the last message the history goes as soon as a page with this script loads,
  // whether or not the resident opens the chat again (widget.js: HISTORY_TTL_MS).
  var HISTORY_TTL_MS = 24 * 60 * 60 * 1000;
  (function expireState() {
    var raw = readState();
    if (raw === null) return;
    var saved = null;
    try { saved = JSON.parse(raw); } catch (e) { /* corrupt: forget it */ }
    if (!saved || typeof saved.savedAt !== "number" || !(Date.now() - saved.savedAt < HISTORY_TTL_MS)) {
      try { window.localStorage.removeItem(STATE_KEY); } catch (e) { /* blocked */ }
    }
  })();

  window.addEventListener("message", function (ev) {
    if (ev.origin !== origin || ev.source !== frame.contentWindow || !ev.data) return;
    var type = ev.data.type;
    if (type === "qc-widget:close") {
      close();
    } else if (type === "qc-widget:hello") {
      frame.contentWindow.postMessage({ type: "qc-widget:state", state: readState() }, origin);
    } else if (type === "qc-widget:save" && typeof ev.data.state === "string" && ev.data.state.length < 2000000) {
      writeState(ev.data.state);
    }
  });

  function mount() {
    document.body.appendChild(host);
    var wasOpen = false;
    try { wasOpen = window.sessionStorage.getItem(OPEN_KEY) === "1"; } catch (e) { /* ignore */ }
    if (wasOpen) open(false);  // a reload keeps the panel open, on the same conversation
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
