// The example chat page: everything it does goes through the library's browser client.
// "websocket-client" is mapped to the library's static file by the page's import map.
import { SocketClosedError, WebSocketClient } from "websocket-client";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const messages = document.getElementById("messages");
const presence = document.getElementById("presence");
const status = document.getElementById("status");
const notice = document.getElementById("notice");
const input = document.getElementById("message");

const client = new WebSocketClient({
  url: config.url,
  channel: config.channel,
  tokenUrl: config.tokenUrl,
});

function showMessage(event) {
  const item = document.createElement("li");
  const who = document.createElement("strong");
  who.textContent = event.user;
  item.append(who, ": ", event.message);
  item.dataset.user = event.user;
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

client.on("chat_message", (event) => {
  if (event.room === client.channel) showMessage(event);
});
client.on("history", (event) => {
  messages.replaceChildren();
  event.messages.forEach(showMessage);
  showPresence(event.users);
});
client.on("presence", (event) => {
  if (event.room === client.channel) showPresence(event.users);
});
client.on("error", (event) => {
  notice.textContent = event.error ?? "Something went wrong";
});
client.onState((state) => {
  status.textContent = state;
  document.body.dataset.socket = state;
  // History on join: API Gateway cannot push during $connect, so ask once open.
  if (state === "open") client.sendAction("fetch_history");
});

document.getElementById("composer").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  try {
    client.sendAction("chat_message", { message: text });
    input.value = "";
    notice.textContent = "";
  } catch (error) {
    if (!(error instanceof SocketClosedError)) throw error;
    notice.textContent = "Not connected: your message was not sent. Reconnecting…";
  }
});

// Switching rooms keeps the page: the client closes and reconnects to the new channel.
document.querySelectorAll("[data-room]").forEach((link) => {
  link.addEventListener("click", async (clicked) => {
    clicked.preventDefault();
    const room = link.dataset.room;
    document.querySelectorAll("[data-room]").forEach((other) => {
      other.toggleAttribute("aria-current", other === link);
    });
    document.getElementById("room-title").textContent = link.textContent;
    history.pushState({}, "", link.href);
    try {
      await client.changeChannel(room);
    } catch {
      notice.textContent = "Could not join that room.";
    }
  });
});

client.connect().catch(() => {
  notice.textContent = "Could not connect; retrying.";
});
