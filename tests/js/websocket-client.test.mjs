// Tests for the browser client. Run: node --test tests/js/
// Node 20 has no WebSocket, so every test injects a FakeWebSocket, a fake
// fetch answering like Django's token view, and a recording setTimeout (support.mjs).
import { describe, test, mock } from "node:test";
import assert from "node:assert/strict";

import {
  ConnectRefusedError,
  SocketClosedError,
  TokenRequestError,
  WebSocketClient,
  backoffDelay,
  readCookie,
} from "../../django_aws_api_gateway_websockets/static/django_aws_api_gateway_websockets/websocket-client.js";
import {
  URL_BASE,
  connectOpen,
  flush,
  makeFetch,
  setup as setupWith,
  token,
  tokenOf,
} from "./support.mjs";

// These tests count the reconnect timers one by one; the replacement before
// API Gateway's 2-hour maximum (a timer of its own) is tested in reliable-delivery.test.mjs.
const setup = (options = {}) => setupWith({ maxConnectionSeconds: 0, ...options });

describe("token request", () => {
  test("POSTs for a token with the CSRF header and same-origin credentials before opening the socket", async () => {
    const fetch = makeFetch();
    let socketsWhenFetched = null;
    const env = setup({
      fetch: (...args) => {
        socketsWhenFetched = env.sockets.length;
        return fetch(...args);
      },
    });
    const connected = env.client.connect();
    await flush();
    assert.equal(socketsWhenFetched, 0, "token must be fetched before any socket exists");
    assert.equal(fetch.mock.callCount(), 1);
    const [url, init] = fetch.mock.calls[0].arguments;
    assert.equal(url, "/api/ws-token/");
    assert.equal(init.method, "POST");
    assert.equal(init.credentials, "same-origin");
    assert.equal(init.headers["X-CSRFToken"], "csrf-value");
    assert.equal(env.sockets.length, 1);
    assert.equal(tokenOf(env.lastSocket()), token(1));
    env.lastSocket().simulateOpen();
    await connected;
  });

  test("uses a custom tokenUrl", async () => {
    const env = setup({ tokenUrl: "/custom/token/" });
    await connectOpen(env);
    assert.equal(env.fetch.mock.calls[0].arguments[0], "/custom/token/");
  });

  test("by default reads the CSRF token from the csrftoken cookie", async () => {
    globalThis.document = { cookie: "sessionid=abc; csrftoken=from-cookie; theme=dark" };
    try {
      const env = setup({ getCsrfToken: undefined }); // undefined selects the default
      await connectOpen(env);
      assert.equal(env.fetch.mock.calls[0].arguments[1].headers["X-CSRFToken"], "from-cookie");
    } finally {
      delete globalThis.document;
    }
  });

  test("connect rejects on a 403 token response and opens no socket", async () => {
    const env = setup({
      fetch: makeFetch([{ status: 403, body: { error: "Authentication required" } }]),
    });
    await assert.rejects(env.client.connect(), (error) => {
      assert.ok(error instanceof TokenRequestError);
      assert.equal(error.status, 403);
      assert.equal(error.detail, "Authentication required");
      assert.match(error.message, /403.*Authentication required/);
      return true;
    });
    assert.equal(env.sockets.length, 0);
    assert.equal(env.client.state, "closed");
    assert.deepEqual(env.states, ["connecting", "closed"]);
    assert.equal(env.timers.pending.size, 0, "a failed first connect is not retried");
  });

  test("connect rejects when the token request itself fails (network error)", async () => {
    const env = setup({ fetch: makeFetch([new TypeError("Failed to fetch")]) });
    await assert.rejects(
      env.client.connect(),
      (error) => error instanceof TypeError && !(error instanceof TokenRequestError),
    );
    assert.equal(env.sockets.length, 0);
    assert.equal(env.client.state, "closed");
  });

  test("connect rejects when the answer has no token", async () => {
    const env = setup({ fetch: makeFetch([{ status: 200, body: { expires_in: 60 } }]) });
    await assert.rejects(env.client.connect(), (error) => {
      assert.ok(error instanceof TokenRequestError);
      assert.match(error.message, /token request failed \(HTTP 200\)$/);
      assert.equal(error.detail, null);
      return true;
    });
    assert.equal(env.sockets.length, 0);
  });
});

describe("socket URL", () => {
  test("carries ws_token and the URL-encoded channel", async () => {
    const env = setup({ channel: "room 1/ü&x" });
    const socket = await connectOpen(env);
    assert.equal(socket.url, `${URL_BASE}?ws_token=${token(1)}&channel=room%201%2F%C3%BC%26x`);
    assert.equal(new URL(socket.url).searchParams.get("channel"), "room 1/ü&x");
    assert.equal(env.client.channel, "room 1/ü&x");
  });

  test("keeps a query already in the URL", async () => {
    const env = setup({ url: `${URL_BASE}?lang=en`, channel: "lobby" });
    const socket = await connectOpen(env);
    assert.equal(socket.url, `${URL_BASE}?lang=en&ws_token=${token(1)}&channel=lobby`);
  });

  test("omits channel when none is given", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    assert.equal(socket.url, `${URL_BASE}?ws_token=${token(1)}`);
    assert.equal(env.client.channel, null);
  });
});

describe("connect", () => {
  test("resolves only once the socket opens, reporting connecting then open", async () => {
    const env = setup();
    let resolved = false;
    const connected = env.client.connect().then(() => (resolved = true));
    await flush();
    assert.equal(resolved, false);
    assert.equal(env.client.state, "connecting");
    env.lastSocket().simulateOpen();
    await connected;
    assert.equal(env.client.state, "open");
    assert.deepEqual(env.states, ["connecting", "open"]);
  });

  test("rejects with SocketClosedError when the server refuses the connect", async () => {
    const env = setup();
    const connected = env.client.connect();
    await flush();
    env.lastSocket().simulateClose(1006); // closes without ever opening
    await assert.rejects(connected, (error) => {
      // Still a SocketClosedError for existing callers; the subclass says it was refused.
      assert.ok(error instanceof SocketClosedError);
      assert.ok(error instanceof ConnectRefusedError);
      assert.equal(error.code, 1006);
      return true;
    });
    assert.equal(env.client.state, "closed");
    assert.equal(env.timers.pending.size, 0);
  });

  test("a second connect() while connecting reuses the attempt", async () => {
    const env = setup();
    const first = env.client.connect();
    const second = env.client.connect();
    await flush();
    assert.equal(env.fetch.mock.callCount(), 1);
    assert.equal(env.sockets.length, 1);
    env.lastSocket().simulateOpen();
    await Promise.all([first, second]);
    await env.client.connect(); // already open: nothing new
    assert.equal(env.fetch.mock.callCount(), 1);
  });

  test("Node 20 has no global WebSocket, so a missing constructor is a clear error", () => {
    assert.throws(
      () => new WebSocketClient({ url: URL_BASE, WebSocket: undefined }),
      /WebSocket implementation/,
    );
  });
});

describe("sending", () => {
  test("send JSON-encodes the payload; sendAction puts action first", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    env.client.send({ handler: "custom", value: 3 });
    env.client.sendAction("chat_message", { message: "hi" });
    env.client.sendAction("fetch_history");
    env.client.sendAction("change_channel", { channel: "x" });
    assert.deepEqual(socket.sent.map((frame) => JSON.parse(frame)), [
      { handler: "custom", value: 3 },
      { action: "chat_message", message: "hi" },
      { action: "fetch_history" },
      { action: "change_channel", channel: "x" },
    ]);
  });

  test("sendAction's action argument wins over an action key in data", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    env.client.sendAction("chat_message", { action: "restricted", message: "hi" });
    assert.deepEqual(JSON.parse(socket.sent[0]), { action: "chat_message", message: "hi" });
  });

  test("send before connect throws SocketClosedError and warns", () => {
    const env = setup();
    assert.throws(() => env.client.sendAction("chat_message", { message: "lost?" }), SocketClosedError);
    assert.equal(env.logger.warn.mock.callCount(), 1);
    assert.match(env.logger.warn.mock.calls[0].arguments[0], /not open/);
  });

  test("send while the socket is still connecting throws and sends nothing", async () => {
    const env = setup();
    env.client.connect().catch(() => {});
    await flush();
    const socket = env.lastSocket();
    assert.equal(socket.readyState, env.FakeWebSocket.CONNECTING);
    assert.throws(() => env.client.send({ action: "x" }), SocketClosedError);
    assert.deepEqual(socket.sent, []);
    assert.equal(env.logger.warn.mock.callCount(), 1);
  });

  test("send after the connection dropped throws and sends nothing", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    socket.simulateClose(1001);
    assert.throws(() => env.client.send({ action: "x" }), SocketClosedError);
    assert.deepEqual(socket.sent, []);
  });

  test("send on a socket already CLOSING throws even though no close event came yet", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    socket.readyState = env.FakeWebSocket.CLOSING;
    assert.throws(() => env.client.send({ action: "x" }), SocketClosedError);
    assert.deepEqual(socket.sent, []);
  });
});

describe("dispatch", () => {
  test("routes by type; '*' sees everything; bare {error} goes to 'error'", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    const chat = mock.fn();
    const history = mock.fn();
    const errors = mock.fn();
    const all = mock.fn();
    env.client.on("chat_message", chat);
    env.client.on("history", history);
    env.client.on("error", errors);
    env.client.on("*", all);

    socket.simulateMessage({ type: "chat_message", message: "hi" });
    socket.simulateMessage({ error: "Channel not allowed" });
    socket.simulateMessage({ type: "presence", users: [] });

    assert.deepEqual(chat.mock.calls.map((c) => c.arguments[0]), [{ type: "chat_message", message: "hi" }]);
    assert.equal(history.mock.callCount(), 0);
    assert.deepEqual(errors.mock.calls.map((c) => c.arguments[0]), [{ error: "Channel not allowed" }]);
    assert.deepEqual(
      all.mock.calls.map((c) => c.arguments[0].type ?? "(none)"),
      ["chat_message", "(none)", "presence"],
    );
  });

  test("on() returns an unsubscribe function", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    const handler = mock.fn();
    const unsubscribe = env.client.on("ack", handler);
    socket.simulateMessage({ type: "ack" });
    unsubscribe();
    socket.simulateMessage({ type: "ack" });
    assert.equal(handler.mock.callCount(), 1);
  });

  test("non-JSON and non-object data are warned about and dispatched nowhere", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    const all = mock.fn();
    env.client.on("*", all);
    env.client.on("error", all);
    for (const data of ["not json", "42", '"text"', "null", '[{"type":"chat_message"}]']) {
      socket.simulateMessage(data);
    }
    assert.equal(all.mock.callCount(), 0);
    assert.equal(env.logger.warn.mock.callCount(), 5);
  });

  test("a throwing handler does not stop the others", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    const after = mock.fn();
    const all = mock.fn();
    env.client.on("chat_message", () => {
      throw new Error("boom");
    });
    env.client.on("chat_message", after);
    env.client.on("*", all);
    socket.simulateMessage({ type: "chat_message" });
    socket.simulateMessage({ type: "chat_message" });
    assert.equal(after.mock.callCount(), 2);
    assert.equal(all.mock.callCount(), 2);
    assert.equal(env.logger.error.mock.callCount(), 2);
  });
});

describe("backoffDelay", () => {
  const options = { baseDelay: 500, maxDelay: 30000, factor: 2, jitter: 0.5 };

  test("grows exponentially from baseDelay at attempt 0 (no jitter drawn)", () => {
    const delays = [0, 1, 2, 3].map((attempt) => backoffDelay(attempt, { ...options, random: () => 0 }));
    assert.deepEqual(delays, [500, 1000, 2000, 4000]);
  });

  test("jitter removes at most the jitter fraction", () => {
    assert.equal(backoffDelay(2, { ...options, random: () => 0.5 }), 1500);
    assert.ok(backoffDelay(2, { ...options, random: () => 0.999999 }) > 1000);
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(3, { ...options, random: Math.random });
      assert.ok(delay >= 2000 && delay <= 4000, `${delay} outside [2000, 4000]`);
    }
  });

  test("is capped at maxDelay, before jitter", () => {
    assert.equal(backoffDelay(20, { ...options, random: () => 0 }), 30000);
    assert.equal(backoffDelay(1000, { ...options, random: () => 0.5 }), 22500);
  });

  test("honours factor and a zero jitter", () => {
    assert.equal(backoffDelay(2, { baseDelay: 100, maxDelay: 1e6, factor: 3, jitter: 0, random: () => 0.9 }), 900);
  });
});

describe("reconnecting", () => {
  test("an unexpected close reconnects with growing, jittered delays and a fresh token each time", async () => {
    const env = setup({ random: () => 0.5 }); // takes away 25% with jitter 0.5
    const first = await connectOpen(env);
    first.simulateClose(1001);
    assert.equal(env.client.state, "reconnecting");
    assert.deepEqual(env.timers.delays, [375]);
    assert.equal(env.fetch.mock.callCount(), 1, "no token before the delay has passed");

    env.timers.fireNext();
    await flush();
    const second = env.lastSocket();
    second.simulateClose(1006); // refused: next attempt waits longer
    await flush();
    assert.deepEqual(env.timers.delays, [375, 750]);

    env.timers.fireNext();
    await flush();
    const third = env.lastSocket();
    third.simulateOpen();
    assert.equal(env.client.state, "open");

    assert.equal(env.fetch.mock.callCount(), 3);
    const tokens = [first, second, third].map(tokenOf);
    assert.deepEqual(tokens, [token(1), token(2), token(3)]);
    assert.equal(new Set(tokens).size, 3, "tokens are single use");
    assert.deepEqual(env.states, ["connecting", "open", "reconnecting", "open"]);
  });

  test("the backoff delay stays within the jitter bounds", async () => {
    for (const random of [() => 0, () => 0.999999]) {
      const env = setup({ random, baseDelay: 1000, jitter: 0.3 });
      (await connectOpen(env)).simulateClose();
      const [delay] = env.timers.delays;
      assert.ok(delay >= 700 && delay <= 1000, `${delay} outside [700, 1000]`);
    }
  });

  test("keeps the channel across reconnects", async () => {
    const env = setup({ channel: "lobby" });
    (await connectOpen(env)).simulateClose();
    env.timers.fireNext();
    await flush();
    assert.equal(new URL(env.lastSocket().url).searchParams.get("channel"), "lobby");
  });

  test("the attempt counter resets after a successful open", async () => {
    const env = setup({ random: () => 0 });
    (await connectOpen(env)).simulateClose();
    env.timers.fireNext();
    await flush();
    env.lastSocket().simulateClose(); // refused
    await flush();
    env.timers.fireNext();
    await flush();
    env.lastSocket().simulateOpen(); // back
    env.lastSocket().simulateClose(); // and dropped again
    assert.deepEqual(env.timers.delays, [500, 1000, 500]);
  });

  test("a failed token fetch during reconnect schedules the next attempt", async () => {
    const env = setup({
      random: () => 0,
      fetch: makeFetch([
        { status: 200, body: { token: token(1) } },
        { status: 403, body: { error: "Too many token requests" } },
        new TypeError("Failed to fetch"),
        { status: 200, body: { token: token(4) } },
      ]),
    });
    (await connectOpen(env)).simulateClose();
    for (let i = 0; i < 2; i++) {
      env.timers.fireNext();
      await flush();
    }
    assert.equal(env.sockets.length, 1, "no socket without a token");
    assert.deepEqual(env.timers.delays, [500, 1000, 2000]);
    assert.equal(env.client.state, "reconnecting");
    env.timers.fireNext();
    await flush();
    env.lastSocket().simulateOpen();
    assert.equal(tokenOf(env.lastSocket()), token(4));
    assert.equal(env.client.state, "open");
  });

  test("works with the default setTimeout under node:test mock timers", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    // undefined selects the defaults, i.e. the (now mocked) global timers
    const env = setup({ setTimeout: undefined, clearTimeout: undefined, random: () => 0, baseDelay: 200 });
    (await connectOpen(env)).simulateClose();
    t.mock.timers.tick(199);
    await flush();
    assert.equal(env.fetch.mock.callCount(), 1, "not before the delay");
    t.mock.timers.tick(1);
    await flush();
    assert.equal(env.fetch.mock.callCount(), 2);
    assert.equal(env.sockets.length, 2);
    env.client.close();
  });
});

describe("changeChannel", () => {
  test("closes the socket and reconnects to the new channel with a fresh token, without backoff", async () => {
    const env = setup({ channel: "lobby" });
    const old = await connectOpen(env);
    const messages = mock.fn();
    env.client.on("*", messages);

    const changed = env.client.changeChannel("room/2");
    assert.equal(old.closeCalls.length, 1);
    assert.equal(env.client.channel, "room/2");
    assert.equal(env.client.state, "connecting");
    old.simulateMessage({ type: "chat_message" }); // late frame from the old room
    old.simulateClose(1000); // the browser's close event for our own close()
    await flush();

    const fresh = env.lastSocket();
    assert.notEqual(fresh, old);
    assert.equal(fresh.url, `${URL_BASE}?ws_token=${token(2)}&channel=room%2F2`);
    fresh.simulateOpen();
    await changed;

    assert.equal(env.client.state, "open");
    assert.equal(env.timers.setTimeout.mock.callCount(), 0, "our own close must not trigger a reconnect");
    assert.equal(env.fetch.mock.callCount(), 2);
    assert.equal(messages.mock.callCount(), 0, "nothing from the old socket after the change");
    assert.deepEqual(env.states, ["connecting", "open", "connecting", "open"]);
  });

  test("during a pending reconnect cancels the timer", async () => {
    const env = setup();
    (await connectOpen(env)).simulateClose();
    assert.equal(env.timers.pending.size, 1);
    const changed = env.client.changeChannel("other");
    assert.equal(env.timers.pending.size, 0);
    await flush();
    env.lastSocket().simulateOpen();
    await changed;
    assert.equal(env.sockets.length, 2);
  });

  test("rejects like connect when the new channel is refused", async () => {
    const env = setup();
    await connectOpen(env);
    const changed = env.client.changeChannel("forbidden");
    await flush();
    env.lastSocket().simulateClose(1006);
    await assert.rejects(changed, SocketClosedError);
    assert.equal(env.client.state, "closed");
    assert.equal(env.timers.pending.size, 0);
  });
});

describe("close", () => {
  test("closes the socket, reports stopped and never reconnects", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    env.client.close();
    assert.equal(socket.closeCalls.length, 1);
    socket.simulateClose(1000);
    assert.equal(env.client.state, "stopped");
    assert.equal(env.timers.setTimeout.mock.callCount(), 0);
    assert.throws(() => env.client.send({ action: "x" }), SocketClosedError);
  });

  test("cancels a pending reconnect", async () => {
    const env = setup();
    (await connectOpen(env)).simulateClose();
    const [timerId] = env.timers.pending.keys();
    env.client.close();
    assert.equal(env.timers.clearTimeout.mock.calls[0].arguments[0], timerId);
    assert.equal(env.timers.pending.size, 0);
    assert.equal(env.client.state, "stopped");
  });

  test("during a reconnect attempt stops it from opening or retrying", async () => {
    const env = setup();
    (await connectOpen(env)).simulateClose();
    env.timers.fireNext();
    env.client.close(); // token request still in flight
    await flush();
    assert.equal(env.sockets.length, 1, "no socket opened after close()");
    assert.equal(env.timers.pending.size, 0);
    assert.equal(env.client.state, "stopped");
  });

  test("during connect rejects the pending connect()", async () => {
    const env = setup();
    const connected = env.client.connect();
    env.client.close();
    // Abandoned, not refused: a page can tell the two apart.
    await assert.rejects(
      connected,
      (error) => error instanceof SocketClosedError && !(error instanceof ConnectRefusedError),
    );
    await flush();
    assert.equal(env.sockets.length, 0);
    assert.equal(env.client.state, "stopped");
  });
});

describe("keepalive", () => {
  const pings = (socket) => socket.sent.filter((data) => JSON.parse(data).action === "ping").length;

  test("pings every 300 s by default while open, under API Gateway's 10-minute idle timeout", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    assert.deepEqual(env.timers.intervalDelays, [300000]);
    assert.equal(pings(socket), 0, "no ping before the interval is up");
    env.timers.tick();
    assert.deepEqual(socket.sent, ['{"action":"ping"}']);
    env.timers.tick();
    assert.equal(pings(socket), 2);
  });

  test("keepaliveSeconds sets the interval; 0 turns it off", async () => {
    const every = setup({ keepaliveSeconds: 42 });
    await connectOpen(every);
    assert.deepEqual(every.timers.intervalDelays, [42000]);

    const off = setup({ keepaliveSeconds: 0 });
    const socket = await connectOpen(off);
    assert.equal(off.timers.setInterval.mock.callCount(), 0);
    off.timers.tick();
    assert.deepEqual(socket.sent, []);
  });

  test("a keepaliveSeconds that is not a number >= 0 is a clear TypeError", () => {
    for (const keepaliveSeconds of [-1, "300", Number.NaN, Number.POSITIVE_INFINITY, null]) {
      assert.throws(() => setup({ keepaliveSeconds }), /keepaliveSeconds/);
    }
  });

  test("stops when the connection drops and starts again on the reconnected socket", async () => {
    const env = setup();
    const first = await connectOpen(env);
    first.simulateClose(1001); // API Gateway's idle or 2-hour limit
    assert.equal(env.timers.intervals.size, 0, "no ping timer while there is no socket");
    env.timers.fireNext(); // the reconnect
    await flush();
    const second = env.lastSocket();
    second.simulateOpen();
    assert.equal(env.timers.intervals.size, 1, "exactly one ping timer, for the new socket");
    env.timers.tick();
    assert.equal(pings(first), 0);
    assert.equal(pings(second), 1);
  });

  test("close() and changeChannel() leave no ping timer behind", async () => {
    const env = setup();
    await connectOpen(env);
    env.client.changeChannel("other");
    assert.equal(env.timers.intervals.size, 0);
    await flush();
    env.lastSocket().simulateOpen();
    assert.equal(env.timers.intervals.size, 1);
    env.client.close();
    assert.equal(env.timers.intervals.size, 0);
  });

  test("never pings a socket that is closing", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    socket.readyState = env.FakeWebSocket.CLOSING; // the close event has not come yet
    env.timers.tick();
    assert.deepEqual(socket.sent, []);
  });

  test("pongs are not surfaced as messages, not even to '*'", async () => {
    const env = setup();
    const socket = await connectOpen(env);
    const seen = [];
    env.client.on("*", (message) => seen.push(message));
    env.client.on("pong", (message) => seen.push(message));
    socket.simulateMessage({ type: "pong" });
    socket.simulateMessage({ type: "chat_message", message: "hi" });
    assert.deepEqual(seen, [{ type: "chat_message", message: "hi" }]);
    assert.equal(env.logger.warn.mock.callCount(), 0);
  });

  test("the ping interval does not keep a Node process alive (unref, when the timer has it)", async () => {
    const handle = { unref: mock.fn() };
    const env = setup({ setInterval: () => handle, clearInterval: mock.fn() });
    await connectOpen(env);
    assert.equal(handle.unref.mock.callCount(), 1);
  });
});

describe("readCookie", () => {
  test("finds a cookie among others, trimming spaces", () => {
    assert.equal(readCookie("csrftoken", "sessionid=s1;  csrftoken=abc123 ; theme=dark"), "abc123");
    assert.equal(readCookie("theme", "sessionid=s1; csrftoken=abc123; theme=dark"), "dark");
  });

  test("matches the whole name only", () => {
    assert.equal(readCookie("csrftoken", "xcsrftoken=no; csrftoken_old=no"), null);
  });

  test("decodes values and keeps '=' inside them", () => {
    assert.equal(readCookie("a", "a=x%20y%3D; b=1"), "x y=");
    assert.equal(readCookie("b", "a=1; b=c=d"), "c=d");
    assert.equal(readCookie("bad", "bad=%E0%A4%A"), "%E0%A4%A");
  });

  test("returns null when missing or when there are no cookies", () => {
    assert.equal(readCookie("csrftoken", ""), null);
    assert.equal(readCookie("csrftoken", "sessionid=abc"), null);
    assert.equal(readCookie("csrftoken"), null); // no document in Node
  });
});

describe("exports", () => {
  test("SocketClosedError is an Error with its own name", () => {
    const error = new SocketClosedError("gone");
    assert.ok(error instanceof Error);
    assert.equal(error.name, "SocketClosedError");
  });

  test("ConnectRefusedError and TokenRequestError carry their names and details", () => {
    const refused = new ConnectRefusedError("refused", 1006);
    assert.ok(refused instanceof SocketClosedError);
    assert.equal(refused.name, "ConnectRefusedError");
    assert.equal(refused.code, 1006);
    const token = new TokenRequestError("no token", 403, "Authentication required");
    assert.ok(token instanceof Error && !(token instanceof SocketClosedError));
    assert.equal(token.name, "TokenRequestError");
    assert.deepEqual([token.status, token.detail], [403, "Authentication required"]);
  });
});
