// The playground: the conversation lives in this page; each message is POSTed with the whole
// conversation so far, the reply is read from the stream as it arrives, then the message's
// tokens and cost are loaded from its usage record (an HTML fragment from the server).
(function () {
  "use strict";
  var root = document.getElementById("playground");
  if (!root) { return; }
  var config = root.dataset;
  var refusals = JSON.parse(config.refusals || "{}");
  var list = document.getElementById("playground-messages");
  var emptyHint = document.getElementById("playground-empty");
  var compose = document.getElementById("playground-compose");
  var input = document.getElementById("playground-input");
  var sendButton = document.getElementById("playground-send");
  var clearButton = document.getElementById("playground-clear");
  var fields = {
    model: document.getElementById("playground-model"),
    project: document.getElementById("playground-project"),
    system: document.getElementById("playground-system"),
    maxTokens: document.getElementById("playground-max-tokens"),
    temperature: document.getElementById("playground-temperature")
  };
  var history = [];  // the user and assistant messages answered so far
  var inFlight = null;  // the AbortController of the message being answered

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (error) {
      return "";
    }
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function keepInView(wasNearBottom) {
    if (wasNearBottom) { list.scrollTop = list.scrollHeight; }
  }

  function bubble(role, label, text) {
    var item = document.createElement("div");
    item.className = "message message-" + role;
    var heading = document.createElement("div");
    heading.className = "role";
    heading.textContent = label;
    var content = document.createElement("div");
    content.className = "content";
    content.textContent = text;
    item.appendChild(heading);
    item.appendChild(content);
    if (emptyHint) { emptyHint.hidden = true; }
    var atBottom = nearBottom();
    list.appendChild(item);
    keepInView(atBottom);
    return item;
  }

  function showError(item, text, detail, link) {
    item.classList.add("message-error");
    item.removeAttribute("aria-busy");
    var box = document.createElement("div");
    box.className = "playground-error";
    box.setAttribute("role", "alert");
    var main = document.createElement("p");
    main.textContent = text;
    box.appendChild(main);
    if (detail) {
      var small = document.createElement("p");
      small.className = "muted";
      small.textContent = detail;
      box.appendChild(small);
    }
    if (link) {
      var anchor = document.createElement("a");
      anchor.href = link.href;
      anchor.textContent = link.label;
      box.appendChild(anchor);
    }
    item.appendChild(box);
  }

  // BigModel's error body {"error": {"code", "message"}}: the translated explanation first,
  // then the code and the API's own message.
  function showRefusal(item, status, error) {
    var code = String((error && error.code) || "");
    var message = String((error && error.message) || "");
    var translated = refusals[status + " " + code] || refusals[code] || message;
    var detail = code ? config.labelCode + " " + code + (message && message !== translated ? " · " + message : "") : "";
    var link = code === "1113" && config.rechargeUrl ? { href: config.rechargeUrl, label: config.labelRecharge } : null;
    showError(item, translated || config.labelFailed, detail, link);
  }

  function parameters() {
    var body = {
      model: fields.model.value,
      project: fields.project.value,
      messages: []
    };
    var system = fields.system.value.trim();
    if (system) { body.messages.push({ role: "system", content: system }); }
    body.messages = body.messages.concat(history);
    var maxTokens = fields.maxTokens.value.trim();
    if (maxTokens) { body.max_tokens = Number(maxTokens); }
    var temperature = fields.temperature.value.trim();
    if (temperature) { body.temperature = Number(temperature); }
    return body;
  }

  function loadResult(item, requestId) {
    var url = config.resultUrl.replace("REQUEST_ID", encodeURIComponent(requestId));
    var usage = document.createElement("div");
    usage.className = "playground-usage";
    item.appendChild(usage);
    return fetch(url, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        var atBottom = nearBottom();
        usage.innerHTML = html;  // rendered and escaped by the server
        keepInView(atBottom);
      })
      .catch(function () { usage.remove(); });
  }

  // Reads `data: ...` events; calls onChunk for each JSON chunk and resolves with true when
  // the stream ended with [DONE].
  function readStream(response, onChunk) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var done = false;
    function handle(event) {
      event.split("\n").forEach(function (line) {
        if (line.indexOf("data:") !== 0) { return; }
        var data = line.slice(5).trim();
        if (data === "[DONE]") { done = true; return; }
        if (data) { onChunk(JSON.parse(data)); }
      });
    }
    function pump() {
      return reader.read().then(function (step) {
        if (step.done) {
          buffer += decoder.decode();
          if (buffer.trim()) { handle(buffer); }
          return done;
        }
        buffer += decoder.decode(step.value, { stream: true });
        var events = buffer.split("\n\n");
        buffer = events.pop();
        events.forEach(handle);
        return pump();
      });
    }
    return pump();
  }

  function finish() {
    inFlight = null;
    sendButton.disabled = false;
    list.removeAttribute("aria-busy");
  }

  function send() {
    var text = input.value.trim();
    if (!text || inFlight) { return; }
    var userMessage = { role: "user", content: text };
    var body = parameters();
    body.messages.push(userMessage);
    var userItem = bubble("user", config.labelUser, text);
    var item = bubble("assistant", config.labelAssistant, "");
    var content = item.querySelector(".content");
    item.setAttribute("aria-busy", "true");
    list.setAttribute("aria-busy", "true");
    input.value = "";
    sendButton.disabled = true;
    var controller = new AbortController();
    inFlight = controller;
    var reply = "";
    var failed = function () {
      userItem.classList.add("message-failed");
      if (!input.value) { input.value = text; }  // ready to send again
    };
    fetch(config.chatUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "X-CSRFToken": csrfToken()
      },
      body: JSON.stringify(body),
      signal: controller.signal
    }).then(function (response) {
      var type = response.headers.get("content-type") || "";
      var requestId = response.headers.get("x-request-id");
      if (type.indexOf("application/json") === 0) {
        return response.json().then(function (data) {
          failed();
          showRefusal(item, response.status, data.error);
        });
      }
      if (!response.ok || type.indexOf("text/event-stream") !== 0) {
        failed();
        // A redirect to the sign-in page comes back as that page.
        showError(item, response.redirected ? config.labelSignedOut : config.labelFailed,
          response.ok ? "" : "HTTP " + response.status);
        return null;
      }
      var streamError = null;
      return readStream(response, function (chunk) {
        if (chunk.error) { streamError = chunk.error; return; }
        (chunk.choices || []).forEach(function (choice) {
          var delta = (choice.delta && choice.delta.content) || "";
          if (delta) {
            var atBottom = nearBottom();
            reply += delta;
            content.textContent = reply;
            keepInView(atBottom);
          }
        });
      }).then(function (completed) {
        item.removeAttribute("aria-busy");
        if (streamError || !completed) {
          failed();
          if (streamError) { showRefusal(item, 0, streamError); } else { showError(item, config.labelFailed); }
        } else {
          history.push(userMessage, { role: "assistant", content: reply });
        }
        // Answered or failed upstream, the message has a usage record: show what it cost.
        if (requestId) { return loadResult(item, requestId); }
        return null;
      });
    }).catch(function (error) {
      if (error && error.name === "AbortError") { return; }
      failed();
      showError(item, config.labelFailed);
    }).then(settled, settled);
    function settled() {
      if (inFlight === controller) { finish(); }  // not a later message's (after Clear)
    }
  }

  compose.addEventListener("submit", function (event) {
    event.preventDefault();
    send();
  });

  input.addEventListener("keydown", function (event) {
    // Enter sends; Shift+Enter is a new line; Enter that confirms an input method's
    // composition (Chinese, Japanese) is not a send.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      send();
    }
  });

  clearButton.addEventListener("click", function () {
    if (inFlight) { inFlight.abort(); }
    history = [];
    Array.prototype.slice.call(list.querySelectorAll(".message")).forEach(function (item) {
      item.remove();
    });
    if (emptyHint) { emptyHint.hidden = false; }
    finish();
    input.focus();
  });
})();
