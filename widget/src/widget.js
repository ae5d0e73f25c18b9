/* 青城诉求 chat page (shown in an iframe by embed.js, or opened directly at /widget/).
 *
 * Talks to Rasa's Socket.IO channel (events user_uttered / bot_uttered, session
 * persistence): the session id (issued by the server) and the visible history are kept in
 * localStorage (the embedding page's, via embed.js), so a page reload continues the same
 * conversation. What is kept is little and short-lived: the last MAX_HISTORY messages, for
 * HISTORY_TTL_MS after the last one, with phone and ID numbers masked (138****5678); the
 * 清除记录 button forgets it at once and starts a new session. Everything the bot or the
 * resident wrote is inserted with textContent / createTextNode, never as HTML.
 */
(function () {
  "use strict";

  var STORE_KEY = "qingcheng-widget:v1";
  var MAX_HISTORY = 30;
  var HISTORY_TTL_MS = 24 * 60 * 60 * 1000;  // a day after the last message, the page starts afresh
  var MAX_PHOTO_BYTES = 5 * 1024 * 1024;
  var PHOTO_TYPES = ["image/jpeg", "image/png", "image/webp"];
  var SESSION_ID = /^[0-9a-f]{32}$/;
  var TYPING_TIMEOUT_MS = 20000;

  function $(id) { return document.getElementById(id); }
  var logEl = $("qc-log");
  var repliesEl = $("qc-replies");
  var form = $("qc-form");
  var input = $("qc-input");
  var sendBtn = $("qc-send");
  var fileInput = $("qc-file");
  var photoLabel = $("qc-photo-label");
  var locateBtn = $("qc-locate");
  var statusEl = $("qc-status");
  var closeBtn = $("qc-close");
  var clearBtn = $("qc-clear");
  var meta = document.querySelector('meta[name="qc-socket-url"]');
  var socketUrl = meta ? meta.getAttribute("content") : "";
  var embedded = window.parent !== window;

  // --- state: session id + visible history -------------------------------------------
  // Embedded, the state lives in the embedding page's localStorage (embed.js keeps it for
  // us over postMessage): browsers that block third-party storage deny an iframe its own
  // localStorage. Opened directly at /widget/, it lives in this page's localStorage.
  // Phone and ID numbers never reach storage (the resident sees them as typed on this page
  // view): full-width digits and spaced numbers too, like the server's bot.text masking.
  function halfWidth(text) {
    return text.replace(/[\uff10-\uff19]/g, function (c) { return String.fromCharCode(c.charCodeAt(0) - 0xfee0); })
      .replace(/\u3000/g, " ");
  }
  var ID_NUMBER = /(^|[^0-9A-Za-z])(\d{6})[\s-]?\d{8}[\s-]?(\d{3}[0-9Xx])(?![0-9A-Za-z])/g;
  var MOBILE = /(^|\D)(?:\+?86[\s-]?)?(1[3-9]\d)((?:[\s.-]{0,2}\d){4})((?:[\s.-]{0,2}\d){4})(?!\d)/g;
  var LANDLINE = /(^|\D)(0\d{2,3})[\s-]?(\d{5,6})(\d{2})(?!\d)/g;
  function maskNumbers(text) {
    if (typeof text !== "string" || !text) return text;
    return halfWidth(text)
      .replace(ID_NUMBER, function (_, pre, head, tail) { return pre + head.slice(0, 3) + "***********" + tail; })
      .replace(MOBILE, function (_, pre, head, mid, last) { return pre + head + "****" + last.replace(/\D/g, ""); })
      .replace(LANDLINE, function (_, pre, area, mid, last) { return pre + area + "-****" + last; });
  }

  function storable(m) {
    var out = { from: m.from };
    if (typeof m.text === "string") out.text = maskNumbers(m.text);
    if (typeof m.image === "string") out.image = m.image;
    if (Array.isArray(m.buttons)) out.buttons = m.buttons;
    return out;
  }

  function validMessage(m) {
    return m && typeof m === "object" && (m.from === "bot" || m.from === "user" || m.from === "note");
  }

  function parseState(json) {
    try {
      var saved = JSON.parse(json || "null");
      if (saved && typeof saved.sessionId === "string" && SESSION_ID.test(saved.sessionId) &&
          Array.isArray(saved.messages) && typeof saved.savedAt === "number" &&
          Date.now() - saved.savedAt < HISTORY_TTL_MS) {
        return { sessionId: saved.sessionId, messages: saved.messages.filter(validMessage).slice(-MAX_HISTORY) };
      }
    } catch (e) { /* corrupt: start afresh */ }
    return { sessionId: null, messages: [] };  // expired, old format or none: the server issues a session id
  }

  function readLocal() {
    try { return window.localStorage.getItem(STORE_KEY); } catch (e) { return null; }  // storage blocked
  }

  var bridge = null;  // {origin} of the embedding page when it keeps our state
  var state = null;

  function save() {
    state.messages = state.messages.slice(-MAX_HISTORY);
    var json = JSON.stringify({ sessionId: state.sessionId, savedAt: Date.now(),
                                messages: state.messages.map(storable) });
    if (bridge) {
      window.parent.postMessage({ type: "qc-widget:save", state: json }, bridge.origin);
      return;
    }
    try { window.localStorage.setItem(STORE_KEY, json); } catch (e) { /* blocked: this page view only */ }
  }

  // --- rendering (text only) ------------------------------------------------------
  var WHO = { bot: "助手说：", user: "我说：", note: "提示：" };

  function sameOriginImage(url) {
    try {
      var u = new URL(url, window.location.href);
      return (u.protocol === "http:" || u.protocol === "https:") && u.origin === window.location.origin ? u.href : null;
    } catch (e) { return null; }
  }

  function renderMessage(m) {
    var el = document.createElement("div");
    el.className = "qc-msg qc-msg-" + m.from;
    var who = document.createElement("span");
    who.className = "qc-sr";
    who.textContent = WHO[m.from];
    el.appendChild(who);
    var src = typeof m.image === "string" ? sameOriginImage(m.image) : null;
    if (src) {
      var img = document.createElement("img");
      img.src = src;
      img.alt = m.from === "user" ? "我上传的现场照片" : "图片";
      img.loading = "lazy";
      el.appendChild(img);
    }
    if (typeof m.text === "string" && m.text) el.appendChild(document.createTextNode(m.text));
    logEl.insertBefore(el, typingEl && typingEl.parentNode === logEl ? typingEl : null);
  }

  function currentButtons() {
    // the quick replies of the latest bot message, until the resident answers
    for (var i = state.messages.length - 1; i >= 0; i--) {
      var m = state.messages[i];
      if (m.from === "user") return [];
      if (m.from === "bot" && Array.isArray(m.buttons) && m.buttons.length) return m.buttons;
    }
    return [];
  }

  function renderReplies() {
    repliesEl.textContent = "";
    var buttons = currentButtons();
    buttons.forEach(function (b) {
      if (!b || typeof b.title !== "string" || typeof b.payload !== "string") return;
      var btn = document.createElement("button");
      btn.type = "button";
      btn.className = "qc-reply";
      btn.textContent = b.title;
      btn.addEventListener("click", function (ev) {
        if (sendToBot(b.payload, { text: b.title }) && ev.detail === 0) input.focus();  // keyboard: keep focus in the form
      });
      repliesEl.appendChild(btn);
    });
    repliesEl.hidden = repliesEl.childNodes.length === 0;
  }

  function scrollDown() { logEl.scrollTop = logEl.scrollHeight; }

  function addMessage(m) {
    state.messages.push(m);
    save();
    renderMessage(m);
    renderReplies();
    scrollDown();
  }

  function note(text) { addMessage({ from: "note", text: text }); }

  function setStatus(text) { statusEl.textContent = text || ""; }

  var typingEl = null;
  var typingTimer = null;
  function showTyping(on) {
    if (typingTimer) { clearTimeout(typingTimer); typingTimer = null; }
    if (!on) {
      if (typingEl && typingEl.parentNode) typingEl.parentNode.removeChild(typingEl);
      return;
    }
    if (!typingEl) {
      typingEl = document.createElement("div");
      typingEl.className = "qc-typing";
      typingEl.setAttribute("aria-hidden", "true");
      typingEl.textContent = "助手正在输入…";
    }
    logEl.appendChild(typingEl);
    scrollDown();
    typingTimer = setTimeout(function () { showTyping(false); }, TYPING_TIMEOUT_MS);
  }

  // --- the connection -----------------------------------------------------------
  var ready = false;

  function updateControls() {
    sendBtn.disabled = !ready || !input.value.trim();
    locateBtn.disabled = !ready;
    fileInput.disabled = !ready;
    photoLabel.setAttribute("aria-disabled", ready ? "false" : "true");
  }

  function sendToBot(message, shown) {
    if (!ready) {
      setStatus("正在连接服务器，请稍候再发送。");
      return false;
    }
    socket.emit("user_uttered", { message: message, session_id: state.sessionId });
    var m = { from: "user" };
    if (shown.text) m.text = shown.text;
    if (shown.image) m.image = shown.image;
    addMessage(m);
    showTyping(true);
    return true;
  }

  function onBotMessage(msg) {
    if (!msg || typeof msg !== "object") return;
    var text = typeof msg.text === "string" ? msg.text : "";
    var raw = Array.isArray(msg.quick_replies) ? msg.quick_replies : (Array.isArray(msg.buttons) ? msg.buttons : []);
    var buttons = raw.filter(function (b) {
      return b && typeof b.title === "string" && typeof b.payload === "string";
    }).map(function (b) { return { title: b.title, payload: b.payload }; });
    var att = msg.attachment;
    var image = att && att.type === "image" && att.payload && typeof att.payload.src === "string" ? att.payload.src : null;
    if (!text && !buttons.length && !image) return;
    showTyping(false);
    var m = { from: "bot", text: text };
    if (buttons.length) m.buttons = buttons;
    if (image) m.image = image;
    addMessage(m);
  }

  var socket = null;
  function connect() {
    setStatus("正在连接…");
    socket = window.io(socketUrl || undefined, {
      path: "/socket.io",
      transports: ["websocket", "polling"],
      reconnectionDelayMax: 10000
    });
    socket.on("connect", function () {
      socket.emit("session_request", state.sessionId ? { session_id: state.sessionId } : {});
    });
    socket.on("session_confirm", function (sessionId) {
      if (typeof sessionId === "string" && SESSION_ID.test(sessionId) && sessionId !== state.sessionId) {
        state.sessionId = sessionId;
        save();
      }
      ready = true;
      setStatus("");
      updateControls();
    });
    socket.on("disconnect", function () {
      ready = false;
      setStatus("连接已断开，正在重新连接…");
      updateControls();
    });
    socket.on("connect_error", function () {
      ready = false;
      setStatus("暂时连不上服务器，正在重试。着急的话请拨打 12345 市民服务热线。");
      updateControls();
    });
    socket.on("bot_uttered", onBotMessage);
  }

  // --- typing -------------------------------------------------------------------
  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 120) + "px";
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    if (sendToBot(text, { text: text })) {
      input.value = "";
      autosize();
      updateControls();
    }
  });
  input.addEventListener("keydown", function (ev) {
    // Enter sends, Shift+Enter is a new line; never while an IME (pinyin) is composing
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      if (typeof form.requestSubmit === "function") form.requestSubmit();
      else form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });
  input.addEventListener("input", function () { autosize(); updateControls(); });

  // --- photo ----------------------------------------------------------------------
  fileInput.addEventListener("change", function () {
    var file = fileInput.files && fileInput.files[0];
    fileInput.value = "";
    if (!file) return;
    if (file.size > MAX_PHOTO_BYTES) { note("照片不能超过 5 MB，请压缩后再上传。"); return; }
    if (PHOTO_TYPES.indexOf(file.type) < 0) { note("只能上传 JPEG、PNG 或 WebP 格式的照片。"); return; }
    if (!ready || !state.sessionId) { setStatus("正在连接服务器，请稍候再上传。"); return; }
    var body = new FormData();
    body.append("file", file, "photo");
    setStatus("正在上传照片…");
    fileInput.disabled = true;
    fetch("upload", { method: "POST", body: body, headers: { "X-QC-Widget": "1", "X-QC-Session": state.sessionId }, credentials: "same-origin" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) { return { ok: r.ok, body: j }; });
      })
      .then(function (res) {
        setStatus("");
        if (!res.ok || typeof res.body.url !== "string") {
          note(typeof res.body.message === "string" ? res.body.message : "照片上传失败，请稍后重试。");
          return;
        }
        sendToBot("/inform" + JSON.stringify({ photo: res.body.url }), { image: typeof res.body.view === "string" ? res.body.view : res.body.url, text: "（现场照片）" });
      })
      .catch(function () {
        setStatus("");
        note("照片上传失败，请检查网络后重试。");
      })
      .then(updateControls);
  });

  // --- location -------------------------------------------------------------------
  function coordinateText(pos) {
    var lat = pos.coords.latitude, lon = pos.coords.longitude;
    return {
      lat: (lat >= 0 ? "北纬" : "南纬") + Math.abs(lat).toFixed(5),
      lon: (lon >= 0 ? "东经" : "西经") + Math.abs(lon).toFixed(5),
      acc: Math.max(1, Math.round(pos.coords.accuracy || 0))
    };
  }

  locateBtn.addEventListener("click", function () {
    if (!navigator.geolocation) {
      note("您的浏览器不支持定位，请直接输入所在的区、街道或社区。");
      return;
    }
    locateBtn.disabled = true;
    setStatus("正在获取您的位置…");
    navigator.geolocation.getCurrentPosition(function (pos) {
      setStatus("");
      var c = coordinateText(pos);
      // sent as a place the assistant keeps as the location text (WGS-84, as browsers report it)
      var place = "定位坐标 " + c.lat + " " + c.lon + "（WGS-84，精度约" + c.acc + "米）";
      if (sendToBot("/inform" + JSON.stringify({ place: place }), { text: "我的位置：" + c.lat + "°，" + c.lon + "°（精度约 " + c.acc + " 米）" })) {
        note("已发送位置坐标。系统不能把坐标换算成地址：知道所在街道或社区请告诉助手；不清楚的话，诉求将连同坐标转派单中心处理。");
      }
      updateControls();
    }, function (err) {
      setStatus("");
      note(err && err.code === 1
        ? "没有获得定位权限。请在浏览器设置中允许定位，或直接输入所在的区、街道或社区。"
        : "暂时无法获取位置，请直接输入所在的区、街道或社区。");
      updateControls();
    }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
  });

  // --- 清除记录: forget the conversation on this device, start a new session ----------------
  clearBtn.addEventListener("click", function () {
    state.messages = [];
    state.sessionId = null;
    save();
    if (!bridge) {
      try { window.localStorage.removeItem(STORE_KEY); } catch (e) { /* blocked */ }
    }
    Array.prototype.slice.call(logEl.querySelectorAll(".qc-msg")).forEach(function (el) { el.parentNode.removeChild(el); });
    showTyping(false);
    renderReplies();
    setStatus("本机的对话记录已清除。");
    if (socket && socket.connected) {
      ready = false;
      updateControls();
      socket.emit("session_request", {});  // a fresh session id from the server
    }
  });

  // --- inside the embedding page ----------------------------------------------------
  function askClose() { window.parent.postMessage({ type: "qc-widget:close" }, "*"); }
  if (embedded) {
    closeBtn.hidden = false;
    closeBtn.addEventListener("click", askClose);
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" && !ev.isComposing) askClose();
    });
  }
  window.addEventListener("message", function (ev) {
    if (ev.source !== window.parent || !ev.data || ev.data.type !== "qc-widget:focus") return;
    input.focus();
  });

  // --- restore the conversation after a reload, then connect --------------------------
  function start(json) {
    if (state) return;
    state = parseState(json);
    save();
    state.messages.forEach(renderMessage);
    renderReplies();
    scrollDown();
    updateControls();
    connect();
  }

  if (embedded) {
    var fallback = setTimeout(function () { start(readLocal()); }, 1500);  // not embedded by embed.js
    window.addEventListener("message", function onState(ev) {
      if (ev.source !== window.parent || !ev.data || ev.data.type !== "qc-widget:state") return;
      window.removeEventListener("message", onState);
      clearTimeout(fallback);
      if (state) return;
      bridge = { origin: ev.origin && ev.origin !== "null" ? ev.origin : "*" };
      start(typeof ev.data.state === "string" ? ev.data.state : null);
    });
    window.parent.postMessage({ type: "qc-widget:hello" }, "*");
  } else {
    start(readLocal());
  }
  updateControls();
})();
