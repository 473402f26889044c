// Fakes shared by the browser client's tests: Node 20 has no WebSocket, so every
// test injects a FakeWebSocket, a fetch answering like Django's token view, and
// timers it controls (recorded ones fired by hand, or a virtual clock).
import { mock } from "node:test";
import assert from "node:assert/strict";

import {
  WebSocketClient,
} from "../../django_aws_api_gateway_websockets/static/django_aws_api_gateway_websockets/websocket-client.js";

export const URL_BASE = "wss://abc123.execute-api.eu-west-1.amazonaws.com/production";
export const token = (n) => n.toString(16).padStart(64, "0"); // 64 hex, like the server's

// A fresh class per test, so constructed sockets never leak between tests.
export function makeFakeWebSocket() {
  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    static instances = [];

    constructor(url) {
      this.url = url;
      this.readyState = FakeWebSocket.CONNECTING;
      this.sent = [];
      this.closeCalls = [];
      FakeWebSocket.instances.push(this);
    }

    send(data) {
      // A real WebSocket throws InvalidStateError while CONNECTING.
      if (this.readyState !== FakeWebSocket.OPEN) throw new Error("InvalidStateError");
      this.sent.push(data);
    }

    close(code, reason) {
      // Like a browser: CLOSING now, the close event comes later (simulateClose).
      this.closeCalls.push({ code, reason });
      this.readyState = FakeWebSocket.CLOSING;
    }

    simulateOpen() {
      this.readyState = FakeWebSocket.OPEN;
      this.onopen?.({ type: "open" });
    }

    simulateMessage(data) {
      this.onmessage?.({ type: "message", data: typeof data === "string" ? data : JSON.stringify(data) });
    }

    simulateClose(code = 1006) {
      this.readyState = FakeWebSocket.CLOSED;
      this.onclose?.({ type: "close", code, reason: "", wasClean: code === 1000 });
    }
  }
  return FakeWebSocket;
}

// fetch answering like WebSocketTokenView: a new token per call, or the given responses in order.
export function makeFetch(responses = null) {
  let n = 0;
  return mock.fn(async () => {
    n += 1;
    const next = responses?.[n - 1] ?? { status: 200, body: { token: token(n), expires_in: 60 } };
    if (next instanceof Error) throw next;
    return new Response(JSON.stringify(next.body), {
      status: next.status,
      headers: { "Content-Type": "application/json" },
    });
  });
}

// Records timers instead of running them; tests fire them explicitly.
export function makeTimers() {
  const pending = new Map();
  const delays = [];
  const intervals = new Map();
  const intervalDelays = [];
  let nextId = 1;
  return {
    pending,
    delays,
    setTimeout: mock.fn((callback, delay) => {
      const id = nextId++;
      pending.set(id, callback);
      delays.push(delay);
      return id;
    }),
    clearTimeout: mock.fn((id) => pending.delete(id)),
    // Intervals apart: the keepalive must not show up among the reconnect timers.
    intervals,
    intervalDelays,
    setInterval: mock.fn((callback, delay) => {
      const id = nextId++;
      intervals.set(id, callback);
      intervalDelays.push(delay);
      return id;
    }),
    clearInterval: mock.fn((id) => intervals.delete(id)),
    tick() {
      for (const callback of [...intervals.values()]) callback();
    },
    fireNext() {
      assert.ok(pending.size > 0, "expected a pending timer");
      const [id, callback] = pending.entries().next().value;
      pending.delete(id);
      callback();
    },
  };
}

// Let fetch/json promise chains settle.
export const flush = () => new Promise((resolve) => setImmediate(resolve));

export function setup(options = {}) {
  const FakeWebSocket = makeFakeWebSocket();
  const fetch = options.fetch ?? makeFetch();
  const timers = makeTimers();
  const logger = { warn: mock.fn(), error: mock.fn() };
  const states = [];
  const client = new WebSocketClient({
    url: URL_BASE,
    WebSocket: FakeWebSocket,
    fetch,
    getCsrfToken: () => "csrf-value",
    random: () => 0.5,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    setInterval: timers.setInterval,
    clearInterval: timers.clearInterval,
    logger,
    ...options,
  });
  client.onState((state) => states.push(state));
  const sockets = FakeWebSocket.instances;
  const lastSocket = () => sockets.at(-1);
  return { client, FakeWebSocket, fetch, timers, logger, states, sockets, lastSocket };
}

// connect() and let the server accept it.
export async function connectOpen(env) {
  const connected = env.client.connect();
  await flush();
  env.lastSocket().simulateOpen();
  await connected;
  return env.lastSocket();
}

export const tokenOf = (socket) => new URL(socket.url).searchParams.get("ws_token");

// Timers on a virtual clock: advance(ms) runs whatever falls due, in time order,
// timers set meanwhile included. For tests about waits (gapWaitMs, 30 s part
// expiry, the replacement after maxConnectionSeconds) rather than about which timers exist.
export function makeClock() {
  let now = 0;
  let nextId = 1;
  const timers = new Map(); // id -> { at, callback, every }
  const add = (callback, delay, every) => {
    const id = nextId++;
    timers.set(id, { at: now + Math.max(0, delay), callback, every });
    return id;
  };
  return {
    setTimeout: mock.fn((callback, delay = 0) => add(callback, delay, null)),
    clearTimeout: mock.fn((id) => timers.delete(id)),
    setInterval: mock.fn((callback, delay) => add(callback, delay, delay)),
    clearInterval: mock.fn((id) => timers.delete(id)),
    get now() {
      return now;
    },
    /** Delays (from now) of the timers still pending, soonest first. */
    pending() {
      return [...timers.values()].map((timer) => timer.at - now).sort((a, b) => a - b);
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let due = null;
        for (const [id, timer] of timers) {
          if (timer.at <= end && (due === null || timer.at < due[1].at)) due = [id, timer];
        }
        if (due === null) break;
        const [id, timer] = due;
        now = timer.at;
        if (timer.every === null) timers.delete(id);
        else timer.at += timer.every;
        timer.callback();
      }
      now = end;
    },
  };
}

// setup() on a virtual clock.
export function setupWithClock(options = {}) {
  const clock = makeClock();
  const { setTimeout, clearTimeout, setInterval, clearInterval } = clock;
  const env = setup({ setTimeout, clearTimeout, setInterval, clearInterval, ...options });
  return { ...env, clock };
}
