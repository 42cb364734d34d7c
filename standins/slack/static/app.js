// The idops demo's Slack page: renders FakeSlack's state and sends commands and clicks back to it.
// Every string from the bot or a provider reaches the DOM through textContent, never innerHTML.
"use strict";

// The emoji the bot's blocks use, by Slack name -> Twemoji file (/ui/emoji/<code points>.svg, CC-BY 4.0):
// shown as images, so they look the same whatever fonts the machine has.
const EMOJI = new Map(Object.entries({
  warning: "26a0", white_check_mark: "2705", heavy_check_mark: "2714", x: "274c", rotating_light: "1f6a8",
  lock: "1f512", unlock: "1f513", hourglass: "231b", hourglass_flowing_sand: "23f3", bell: "1f514",
  zzz: "1f4a4", no_entry: "26d4", key: "1f511", mag: "1f50d", red_circle: "1f534",
  large_orange_circle: "1f7e0", large_yellow_circle: "1f7e1", large_green_circle: "1f7e2",
  white_circle: "26aa", arrow_up: "2b06", arrow_down: "2b07", information_source: "2139", shield: "1f6e1",
  bust_in_silhouette: "1f464", busts_in_silhouette: "1f465", wave: "1f44b", eyes: "1f440", repeat: "1f501",
  clock3: "1f552", link: "1f517", gear: "2699", alarm_clock: "23f0", clipboard: "1f4cb",
  arrow_right: "27a1", bulb: "1f4a1", crown: "1f451", grey_question: "2753", ballot_box_with_check: "2611",
  stopwatch: "23f1", leftwards_arrow_with_hook: "21a9",
}));
const EMOJI_BY_CHAR = new Map([...EMOJI.values()].map((points) => [emojiChar(points), points]));

const ui = {
  user: null,
  pane: null, // a channel id or "home"
  version: -1,
  state: null,
  poll: null,
  modalKey: "",
  confirmOpen: false,
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function emojiChar(points) {
  return String.fromCodePoint(...points.split("-").map((hex) => parseInt(hex, 16)));
}

function emojiImage(points, name) {
  const img = el("img", "emoji");
  img.src = "/ui/emoji/" + points + ".svg";
  img.alt = emojiChar(points);
  img.title = ":" + (name || [...EMOJI].find(([, p]) => p === points)[0]) + ":";
  img.draggable = false;
  return img;
}

// Text with :shortcodes: (and the same emoji typed as characters) as images; the rest as text nodes.
function emojiNodes(text) {
  const out = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(/:([a-z0-9_+-]+):|(\p{Extended_Pictographic})\uFE0F?/gu)) {
    const points = match[1] ? EMOJI.get(match[1]) : EMOJI_BY_CHAR.get(match[2]);
    if (!points) continue;
    if (match.index > last) out.appendChild(document.createTextNode(text.slice(last, match.index)));
    out.appendChild(emojiImage(points, match[1]));
    last = match.index + match[0].length;
  }
  if (last < text.length) out.appendChild(document.createTextNode(text.slice(last)));
  return out;
}

// For places that hold only text (select options, placeholders): shortcodes as characters.
function emojiText(text) {
  return text.replace(/:([a-z0-9_+-]+):/g, (whole, name) => (EMOJI.has(name) ? emojiChar(EMOJI.get(name)) : whole));
}

// Slack's three entities; plain_text and mrkdwn alike are shown decoded.
function decode(text) {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function userName(id) {
  const user = ui.state && ui.state.users[id];
  return user ? user.name : id;
}

function channelName(id) {
  const channel = ui.state && ui.state.channels.find((c) => c.id === id);
  return channel ? channel.name : id;
}

// One <…> entity of Slack's mrkdwn: mentions, channel links, special mentions, dates and links.
function entity(inner) {
  const [target, label] = splitOnce(inner, "|");
  if (target.startsWith("@")) return el("span", "mention", "@" + (label || userName(target.slice(1))));
  if (target.startsWith("#")) return el("span", "mention", "#" + (label || channelName(target.slice(1))));
  if (target.startsWith("!subteam^")) {
    const id = target.slice("!subteam^".length);
    return el("span", "mention", label || "@" + ((ui.state.usergroups || {})[id] || id));
  }
  if (target.startsWith("!date^")) return document.createTextNode(decode(label || target));
  if (target.startsWith("!")) return el("span", "broadcast", "@" + (label || target.slice(1)));
  if (/^https?:\/\//i.test(target) || target.startsWith("mailto:")) {
    const link = el("a", null, decode(label || target.replace(/^mailto:/, "")));
    link.href = decode(target);
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    return link;
  }
  return document.createTextNode(decode(label || target));
}

function splitOnce(text, sep) {
  const at = text.indexOf(sep);
  return at < 0 ? [text, null] : [text.slice(0, at), text.slice(at + 1)];
}

// One line of Slack mrkdwn (bold, italic, strike, code, <…> entities) as DOM nodes.
function inline(src) {
  const out = document.createDocumentFragment();
  const style = { "*": false, "_": false, "~": false };
  let buf = "";
  const wrap = (node) => {
    let n = node;
    for (const [mark, tag] of [["~", "s"], ["_", "em"], ["*", "strong"]]) {
      if (style[mark]) { const w = el(tag); w.appendChild(n); n = w; }
    }
    return n;
  };
  const flush = () => {
    if (buf) out.appendChild(wrap(emojiNodes(decode(buf))));
    buf = "";
  };
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === "`") {
      const end = src.indexOf("`", i + 1);
      if (end > i + 1) { flush(); out.appendChild(wrap(el("code", null, decode(src.slice(i + 1, end))))); i = end + 1; continue; }
    }
    if (c === "<") {
      const end = src.indexOf(">", i + 1);
      if (end > 0) { flush(); out.appendChild(wrap(entity(src.slice(i + 1, end)))); i = end + 1; continue; }
    }
    if (c in style) {
      if (style[c]) { flush(); style[c] = false; i++; continue; }
      const opens = i === 0 || /[\s(\[{>*_~]/.test(src[i - 1]);
      if (opens && src.indexOf(c, i + 1) > i + 1) { flush(); style[c] = true; i++; continue; }
    }
    buf += c;
    i++;
  }
  flush();
  return out;
}

// Slack mrkdwn: ``` code blocks, "> " quotes and line breaks around inline formatting.
function mrkdwn(src) {
  const out = document.createDocumentFragment();
  src.split(/```([\s\S]*?)```/).forEach((part, index) => {
    if (index % 2) { out.appendChild(el("pre", null, decode(part))); return; }
    let quote = null;
    part.split("\n").forEach((line, n) => {
      const quoted = /^(>|&gt;) ?/.exec(line);
      if (quoted) {
        if (!quote) quote = out.appendChild(el("blockquote"));
        else quote.appendChild(el("br"));
        quote.appendChild(inline(line.slice(quoted[0].length)));
        return;
      }
      if (n > 0 && !quote) out.appendChild(el("br"));
      quote = null;
      out.appendChild(inline(line));
    });
  });
  return out;
}

function textObject(obj) {
  if (!obj) return document.createTextNode("");
  if (typeof obj === "string") return mrkdwn(obj);
  // `verbatim` only stops Slack auto-linking bare URLs, channel names and mentions, which this renderer
  // never does; bold, quotes, dates and explicit <…> links render either way
  if (obj.type === "mrkdwn") return mrkdwn(obj.text || "");
  const text = decode(obj.text || "");
  return obj.type === "plain_text" && obj.emoji === false ? document.createTextNode(text) : emojiNodes(text);
}

// A text object's text as a string (decoded), for attributes, options and status lines.
function plain(obj) {
  return obj && typeof obj.text === "string" ? emojiText(decode(obj.text)) : "";
}

// --- Block Kit ----------------------------------------------------------------------------------

function renderButton(element, where) {
  const button = el("button", "bk" + (element.style ? " " + element.style : ""));
  button.appendChild(textObject(element.text));
  button.type = "button";
  button.dataset.actionId = element.action_id || "";
  if (element.value !== undefined) button.dataset.value = element.value;
  button.addEventListener("click", () => {
    if (element.url && /^https?:\/\//i.test(element.url)) window.open(element.url, "_blank", "noopener");
    if (element.confirm) confirmThen(element.confirm, () => click(where, element, button));
    else click(where, element, button);
  });
  return button;
}

function renderElement(element, where) {
  if (!element) return document.createTextNode("");
  if (element.type === "button") return renderButton(element, where);
  if (element.type === "image") return el("span", "alt", "[image: " + (element.alt_text || "") + "]");
  if (element.type === "mrkdwn" || element.type === "plain_text") {
    const span = el("span");
    span.appendChild(textObject(element));
    return span;
  }
  const placeholder = plain(element.placeholder) || element.type;
  const select = el("select");
  select.disabled = true;
  select.appendChild(el("option", null, placeholder));
  return select;
}

function renderBlock(block, where, errors) {
  const box = el("div", "block");
  box.dataset.blockType = block.type;
  switch (block.type) {
    case "header":
      box.classList.add("block-header");
      box.appendChild(textObject(block.text));
      break;
    case "section": {
      box.classList.add("section");
      const main = el("div", "main");
      if (block.text) main.appendChild(el("div")).appendChild(textObject(block.text));
      if (block.fields) {
        const fields = main.appendChild(el("div", "fields"));
        for (const field of block.fields) fields.appendChild(el("div")).appendChild(textObject(field));
      }
      box.appendChild(main);
      if (block.accessory) box.appendChild(renderElement(block.accessory, where));
      break;
    }
    case "context":
      box.classList.add("context");
      for (const element of block.elements || []) {
        const span = box.appendChild(el("span"));
        if (element.type === "image") span.appendChild(renderElement(element, where));
        else span.appendChild(textObject(element));
      }
      break;
    case "divider":
      return el("hr", "divider");
    case "actions":
      box.classList.add("actions");
      for (const element of block.elements || []) box.appendChild(renderElement(element, where));
      break;
    case "image":
      box.appendChild(el("span", "alt", "[image: " + (block.alt_text || "") + "]"));
      break;
    case "input":
      return renderInput(block, errors);
    case "rich_text":
      box.textContent = richText(block.elements || []);
      break;
    default:
      box.appendChild(el("span", "alt", "[" + block.type + " block]"));
  }
  return box;
}

function richText(elements) {
  return elements.map((e) => (e.text !== undefined ? e.text : richText(e.elements || []))).join("");
}

function renderBlocks(blocks, where, errors) {
  const frag = document.createDocumentFragment();
  for (const block of blocks || []) frag.appendChild(renderBlock(block, where, errors || {}));
  return frag;
}

function renderInput(block, errors) {
  const box = el("div", "block input-block");
  box.dataset.blockId = block.block_id || "";
  const element = block.element || {};
  const id = "in-" + (block.block_id || "") + "-" + (element.action_id || "");
  const label = box.appendChild(el("label", null, plain(block.label) + (block.optional ? " (optional)" : "")));
  label.htmlFor = id;
  let control;
  if (element.type === "static_select" || element.type === "radio_buttons") {
    control = el("select");
    control.appendChild(el("option", null, plain(element.placeholder) || "Choose…")).value = "";
    for (const option of element.options || []) {
      const opt = control.appendChild(el("option", null, plain(option.text)));
      opt.value = option.value;
    }
  } else {
    control = el(element.multiline ? "textarea" : "input");
    if (element.multiline) control.rows = 3;
    if (element.placeholder) control.placeholder = plain(element.placeholder);
    if (element.initial_value) control.value = element.initial_value;
    if (element.max_length) control.maxLength = element.max_length;
  }
  control.id = id;
  control.name = id;
  control.dataset.blockId = block.block_id || "";
  control.dataset.actionId = element.action_id || "";
  box.appendChild(control);
  if (block.hint) box.appendChild(el("div", "hint-text", plain(block.hint)));
  const error = errors[block.block_id];
  if (error) box.appendChild(el("div", "error", error));
  return box;
}

// --- messages and panes -------------------------------------------------------------------------

function messageNode(message, where, extraClass) {
  const row = el("div", "msg" + (extraClass ? " " + extraClass : ""));
  row.dataset.ts = message.ts;
  row.dataset.channel = message.channel || "";
  row.appendChild(el("div", "avatar", "id"));
  const body = row.appendChild(el("div", "body"));
  if (message.is_ephemeral) body.appendChild(el("div", "only-you", "Only visible to you"));
  const meta = body.appendChild(el("div", "meta"));
  meta.appendChild(el("span", "name", "idops"));
  meta.appendChild(el("span", "tag", "APP"));
  meta.appendChild(el("span", null, new Date(parseFloat(message.ts) * 1000).toLocaleTimeString()));
  if (message.edited) meta.appendChild(el("span", "edited", "(edited)"));
  if (message.blocks && message.blocks.length) body.appendChild(renderBlocks(message.blocks, where));
  else body.appendChild(el("div")).appendChild(mrkdwn(message.text || ""));
  return row;
}

function renderChannel(channel) {
  const pane = document.getElementById("pane");
  const items = [];
  for (const message of channel.messages) items.push({ ts: message.ts, message, ephemeral: false });
  for (const message of ui.state.ephemerals) {
    if (message.channel === channel.id && !message.thread_ts) items.push({ ts: message.ts, message, ephemeral: true });
  }
  items.sort((a, b) => parseFloat(a.ts) - parseFloat(b.ts));
  if (!items.length) pane.appendChild(el("div", "empty", "No messages yet in #" + channel.name + "."));
  for (const item of items) {
    const m = item.message;
    const kind = item.ephemeral ? "ephemeral" : "message";
    pane.appendChild(messageNode(m, { kind, channel: channel.id, ts: m.ts }, item.ephemeral ? "ephemeral" : ""));
    const replies = (m.replies || []).slice();
    for (const e of ui.state.ephemerals) if (e.channel === channel.id && e.thread_ts === m.ts) replies.push(e);
    if (replies.length) {
      replies.sort((a, b) => parseFloat(a.ts) - parseFloat(b.ts));
      pane.appendChild(el("div", "thread-count", replies.length + (replies.length === 1 ? " reply" : " replies")));
      const thread = pane.appendChild(el("div", "thread"));
      for (const reply of replies) {
        const ephemeral = !!reply.is_ephemeral;
        const where = { kind: ephemeral ? "ephemeral" : "message", channel: channel.id, ts: reply.ts };
        thread.appendChild(messageNode(reply, where, ephemeral ? "ephemeral" : ""));
      }
    }
  }
}

function renderHome() {
  const pane = document.getElementById("pane");
  const home = ui.state.home;
  if (!home) { pane.appendChild(el("div", "empty", "The App Home has not been published for you yet.")); return; }
  pane.appendChild(renderBlocks(home.blocks, { kind: "view", view_id: home.id, view_type: "home" }));
}

function render() {
  const state = ui.state;
  const select = document.getElementById("user-select");
  if (select.options.length !== state.people.length) {
    select.textContent = "";
    for (const person of state.people) {
      const user = state.users[person.id] || { name: person.id, real_name: person.id };
      const option = select.appendChild(el("option", null, user.real_name + " (" + person.role + ")"));
      option.value = person.id;
    }
  }
  select.value = ui.user;
  if (!ui.pane) ui.pane = state.channels.length ? state.channels[0].id : "home";

  const list = document.getElementById("channel-list");
  list.textContent = "";
  for (const channel of state.channels) {
    const item = list.appendChild(el("li")).appendChild(el("button", "nav-item", "# " + channel.name));
    item.type = "button";
    item.dataset.channel = channel.id;
    item.appendChild(el("span", "count", String(channel.messages.length)));
    if (ui.pane === channel.id) item.classList.add("active");
    item.addEventListener("click", () => { ui.pane = channel.id; render(); });
  }
  document.getElementById("home-tab").classList.toggle("active", ui.pane === "home");

  const pane = document.getElementById("pane");
  const atBottom = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
  pane.textContent = "";
  const channel = state.channels.find((c) => c.id === ui.pane);
  document.getElementById("pane-title").textContent = channel ? "# " + channel.name : "idops · Home";
  if (channel) renderChannel(channel);
  else renderHome();
  if (atBottom && channel) pane.scrollTop = pane.scrollHeight;
  renderModal();
}

// --- modals and confirm dialogs -----------------------------------------------------------------

function renderModal() {
  if (ui.confirmOpen) return;
  const overlay = document.getElementById("overlay");
  const stack = ui.state.modals || [];
  const view = stack[stack.length - 1];
  const key = view ? JSON.stringify([view.id, view.hash, view.errors || null]) : "";
  if (key === ui.modalKey) return;
  ui.modalKey = key;
  overlay.textContent = "";
  overlay.hidden = !view;
  if (!view) return;
  const dialog = overlay.appendChild(el("form", "dialog"));
  dialog.dataset.viewId = view.id;
  dialog.appendChild(el("h2")).appendChild(textObject(view.title));
  const content = dialog.appendChild(el("div", "content"));
  content.appendChild(renderBlocks(view.blocks, { kind: "view", view_id: view.id, view_type: "modal" }, view.errors));
  const buttons = dialog.appendChild(el("div", "buttons"));
  const cancel = buttons.appendChild(el("button", "bk", plain(view.close) || "Cancel"));
  cancel.type = "button";
  cancel.addEventListener("click", () => send("/_ui/close", { user: ui.user, view_id: view.id }, "closed the dialog"));
  if (view.submit) {
    const submit = buttons.appendChild(el("button", "bk primary", plain(view.submit)));
    submit.type = "submit";
  }
  dialog.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = {};
    for (const control of dialog.querySelectorAll("[data-block-id][data-action-id]")) {
      if (!(control.tagName === "INPUT" || control.tagName === "TEXTAREA" || control.tagName === "SELECT")) continue;
      const block = (values[control.dataset.blockId] = values[control.dataset.blockId] || {});
      block[control.dataset.actionId] = control.value;
    }
    send("/_ui/submit", { user: ui.user, view_id: view.id, values }, "submitted " + plain(view.title));
  });
  const first = dialog.querySelector("input, textarea, select");
  if (first) first.focus();
}

function confirmThen(confirm, proceed) {
  const overlay = document.getElementById("overlay");
  ui.confirmOpen = true;
  overlay.textContent = "";
  overlay.hidden = false;
  const dialog = overlay.appendChild(el("div", "dialog confirm"));
  dialog.setAttribute("role", "dialog");
  dialog.appendChild(el("h2", null, plain(confirm.title) || "Are you sure?"));
  dialog.appendChild(el("div", "content")).appendChild(textObject(confirm.text));
  const buttons = dialog.appendChild(el("div", "buttons"));
  const close = () => { ui.confirmOpen = false; ui.modalKey = "-"; overlay.hidden = true; overlay.textContent = ""; renderModal(); };
  const deny = buttons.appendChild(el("button", "bk", plain(confirm.deny) || "Cancel"));
  deny.type = "button";
  deny.addEventListener("click", close);
  const ok = buttons.appendChild(el("button", "bk " + (confirm.style === "danger" ? "danger" : "primary"), plain(confirm.confirm) || "Yes"));
  ok.type = "button";
  ok.addEventListener("click", () => { close(); proceed(); });
}

// --- talking to the stand-in --------------------------------------------------------------------

function status(text, isError) {
  const node = document.getElementById("status");
  node.textContent = text;
  node.classList.toggle("error", !!isError);
}

async function send(path, body, description) {
  status("… " + description);
  try {
    const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) { status(answer.error || "failed (HTTP " + response.status + ")", true); return false; }
    if (answer.status && answer.status !== 200) { status(description + ": the bot answered HTTP " + answer.status, true); return false; }
    status(description);
    return true;
  } catch (error) {
    status("the Slack stand-in is not reachable: " + error, true);
    return false;
  }
}

function click(where, element, button) {
  button.disabled = true;
  send("/_ui/click", { user: ui.user, where, action_id: element.action_id, value: element.value === undefined ? null : element.value },
    "clicked " + plain(element.text)).finally(() => { button.disabled = false; });
}

async function pollLoop() {
  for (;;) {
    const controller = new AbortController();
    ui.poll = controller;
    const user = ui.user;
    try {
      const url = "/_ui/state?user=" + encodeURIComponent(user) + "&version=" + ui.version;
      const response = await fetch(url, { signal: controller.signal });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const state = await response.json();
      if (user !== ui.user) continue;
      ui.state = state;
      ui.version = state.version;
      render();
    } catch (error) {
      if (error.name === "AbortError") continue;
      status("lost the Slack stand-in (" + error.message + "); retrying…", true);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

function switchUser(user) {
  ui.user = user;
  ui.version = -1;
  ui.modalKey = "-";
  const params = new URLSearchParams(location.search);
  params.set("user", user);
  history.replaceState(null, "", "?" + params.toString());
  if (ui.poll) ui.poll.abort();
}

async function start() {
  const wanted = new URLSearchParams(location.search).get("user");
  const { people } = await (await fetch("/_ui/people")).json();
  ui.user = people.some((p) => p.id === wanted) ? wanted : people[0].id;
  document.getElementById("user-select").addEventListener("change", (event) => switchUser(event.target.value));
  document.getElementById("home-tab").addEventListener("click", () => {
    ui.pane = "home";
    render();
    send("/_ui/home", { user: ui.user }, "opened the App Home");
  });
  document.getElementById("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("command");
    const line = input.value.trim();
    if (!line) return;
    const channel = ui.pane === "home" ? (ui.state.channels[0] || {}).id : ui.pane;
    if (await send("/_ui/command", { user: ui.user, line, channel }, line)) input.value = "";
  });
  pollLoop();
}

start();
