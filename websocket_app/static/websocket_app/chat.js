// The example chat page: everything it does goes through the library's browser client.
// "websocket-client" is mapped to the library's static file by the page's import map.
import {
  ConnectRefusedError,
  SocketClosedError,
  TokenRequestError,
  WebSocketClient,
  backoffDelay,
} from "websocket-client";

// A first connect (page load, room change) that fails is tried this many times in all, with
// the client's backoff, then the page stops and offers "Try again". A token refusal (logged
// out) is not retried: it would only fail again. A connection that was open and dropped is
// the client's to retry, for ever.
const CONNECT_ATTEMPTS = 4;

const STATE_LABELS = {
  connecting: "connecting…",
  open: "connected",
  reconnecting: "connection lost; reconnecting…",
  closed: "not connected",
  stopped: "not connected",
};

const config = JSON.parse(document.getElementById("chat-config").textContent);
const messages = document.getElementById("messages");
const presence = document.getElementById("presence");
const status = document.getElementById("status");
const noticeText = document.getElementById("notice-text");
const retryButton = document.getElementById("retry");
const reloginLink = document.getElementById("relogin");
const input = document.getElementById("message");
const roomTitle = document.getElementById("room-title");
const roomLinks = [...document.querySelectorAll("[data-room]")];
const siteName = document.title.split(" · ").at(-1);
const socketHost = new URL(config.url).host;

const client = new WebSocketClient({
  url: config.url,
  channel: config.channel,
  tokenUrl: config.tokenUrl,
  // The room's history is the replay of its last messages (the server picks where it
  // starts); after that the client resumes from what it has shown, on every reconnect.
  since: config.since,
});

function say(text, { retry = false, relogin = false } = {}) {
  noticeText.textContent = text;
  retryButton.hidden = !retry;
  reloginLink.hidden = !relogin;
  if (relogin) reloginLink.href = `${config.loginUrl}?next=${encodeURIComponent(location.pathname)}`;
}

// Today's messages show the time, older ones the date too; the full date is the tooltip.
function formatTime(date) {
  const today = date.toDateString() === new Date().toDateString();
  const options = { hour: "2-digit", minute: "2-digit" };
  if (!today) Object.assign(options, { day: "numeric", month: "short" });
  return date.toLocaleString(undefined, options);
}

function showMessage(event) {
  const item = document.createElement("li");
  item.dataset.user = event.user;
  if (event.seq !== undefined) item.dataset.seq = event.seq;
  const who = document.createElement("strong");
  who.className = "user";
  who.textContent = event.user;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.append(who);
  const sent = new Date(event.created_on);
  if (!Number.isNaN(sent.getTime())) {
    const when = document.createElement("time");
    when.dateTime = event.created_on;
    when.title = sent.toLocaleString();
    when.textContent = formatTime(sent);
    meta.append(" ", when);
  }
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = event.message;
  item.append(meta, text);
  messages.append(item);
  item.scrollIntoView({ block: "end" });
}

function showPresence(users) {
  presence.replaceChildren(
    ...users.map((name) => {
      const item = document.createElement("li");
      item.textContent = name;
      return item;
    }),
  );
}

// Why a connect failed, in words a developer can act on, and whether trying again can help;
// null when the attempt was abandoned on purpose (a newer room change took over).
function diagnose(error) {
  if (error instanceof TokenRequestError) {
    if (error.status === 401 || error.status === 403) {
      const why = error.detail ?? `HTTP ${error.status}`;
      return {
        retry: false,
        text: `The site refused a connection token (${why}): your login has probably expired.`,
      };
    }
    return { retry: true, text: `The site could not issue a connection token (HTTP ${error.status}).` };
  }
  if (error instanceof ConnectRefusedError) {
    const where =
      location.host === socketHost ? socketHost : `${socketHost}, from this page on ${location.host}`;
    return {
      retry: true,
      text:
        `The WebSocket server refused the connection or could not be reached (${where}). ` +
        "Usually the socket's host is not in ALLOWED_HOSTS or this page's origin is not allowed " +
        '(WEBSOCKETS["allowed_origins"]); the server\'s log names the check.',
    };
  }
  if (error instanceof SocketClosedError) return null;
  return { retry: true, text: "The site could not be reached." };
}

let retryTimer = null;

function cancelRetry() {
  clearTimeout(retryTimer);
  retryTimer = null;
}

// start() is one attempt (connect or changeChannel); failures follow CONNECT_ATTEMPTS.
function connectWithRetries(start, attempt = 1) {
  cancelRetry();
  start().then(
    () => say(""),
    (error) => {
      const problem = diagnose(error);
      if (problem === null) return;
      if (!problem.retry) {
        say(problem.text, { relogin: true });
      } else if (attempt < CONNECT_ATTEMPTS) {
        const delay = backoffDelay(attempt - 1);
        const seconds = Math.max(1, Math.round(delay / 1000));
        say(`${problem.text} Retrying in ${seconds} s (attempt ${attempt + 1} of ${CONNECT_ATTEMPTS}).`);
        retryTimer = setTimeout(() => connectWithRetries(() => client.connect(), attempt + 1), delay);
      } else {
        say(`${problem.text} Stopped after ${CONNECT_ATTEMPTS} attempts.`, { retry: true });
      }
    },
  );
}

retryButton.addEventListener("click", () => {
  say("");
  connectWithRetries(() => client.connect());
});

client.on("chat_message", (event) => {
  if (event.room === client.channel) showMessage(event);
});
// The library's presence events (the view's PRESENCE): someone joined or left; "users" is who
// is here now. Our own join is not sent to us (we were still connecting): who_is_here lists us.
client.on("presence", (event) => {
  if (event.channel === client.channel) showPresence(event.users);
});
client.on("here_now", (event) => {
  if (event.channel === client.channel) showPresence(event.users);
});
// Messages the replay log no longer holds (trimmed, or older than what the client asked for).
client.on("gap", (event) => {
  if (event.channel !== client.channel) return;
  const item = document.createElement("li");
  item.className = "gap";
  item.textContent = "Older messages are no longer available.";
  messages.append(item);
});
client.on("error", (event) => {
  say(event.error ?? "Something went wrong");
});
client.onState((state) => {
  status.textContent = STATE_LABELS[state] ?? state;
  document.body.dataset.socket = state;
  // Who is here, on every (re)connect: API Gateway cannot push during $connect, and
  // presence events sent while the socket was down are not replayed.
  if (state === "open") client.sendAction("who_is_here");
});

document.getElementById("composer").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  try {
    client.sendAction("chat_message", { message: text });
    input.value = "";
    say("");
  } catch (error) {
    if (!(error instanceof SocketClosedError)) throw error;
    say("Not connected: your message was not sent.");
  }
});

// Switching rooms keeps the page: the client closes and reconnects to the new channel. Each
// switch is a history entry, so Back and Forward switch too (popstate).
function joinRoom(room) {
  const link = roomLinks.find((candidate) => candidate.dataset.room === room);
  for (const other of roomLinks) {
    if (other === link) other.setAttribute("aria-current", "page");
    else other.removeAttribute("aria-current");
  }
  roomTitle.textContent = link.textContent;
  document.title = `${link.textContent} · ${siteName}`;
  messages.replaceChildren();
  presence.replaceChildren();
  say("");
  const since = Number(link.dataset.since) || 0;
  connectWithRetries(() => client.changeChannel(room, { since }));
}

for (const link of roomLinks) {
  link.addEventListener("click", (clicked) => {
    // A new tab or window is the browser's business.
    if (clicked.button !== 0 || clicked.metaKey || clicked.ctrlKey || clicked.shiftKey) return;
    clicked.preventDefault();
    if (link.dataset.room === client.channel) return;
    history.pushState({ room: link.dataset.room }, "", link.href);
    joinRoom(link.dataset.room);
  });
}

history.replaceState({ room: config.channel }, "", location.href);
window.addEventListener("popstate", (event) => {
  const room = event.state?.room;
  // An entry this page did not make (or a room no longer listed): let the server decide.
  if (!roomLinks.some((link) => link.dataset.room === room)) location.reload();
  else if (room !== client.channel) joinRoom(room);
});

connectWithRetries(() => client.connect());
