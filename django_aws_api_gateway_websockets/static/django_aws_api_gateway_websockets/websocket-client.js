// Browser client for Serverless Django WebSockets.
//
// The browser talks to an AWS API Gateway WebSocket API; Django only sees the
// resulting Lambda events. So Django cannot read the session from the socket
// itself: before EVERY connect the client POSTs to a Django view for a
// single-use token and puts it in the connect URL. The rest of this module is
// about keeping that promise through reconnects and channel changes.
//
// No dependencies and no build step:
//   <script type="module">
//     import { WebSocketClient } from "/static/django_aws_api_gateway_websockets/websocket-client.js";
//     const client = new WebSocketClient({ url: "wss://…/production", channel: "lobby" });
//     client.on("chat_message", (message) => render(message));
//     await client.connect();
//     client.sendAction("chat_message", { message: "hi" });
//   </script>
//
// Every global (WebSocket, fetch, timers, random, console) can be injected, so
// the same code runs under Node's test runner, which has no WebSocket.

const OPEN = 1; // WebSocket.OPEN; the number is fixed by the WHATWG spec
// API Gateway closes a connection its client sent nothing on for 10 minutes
// (1001 "Going away"); browsers cannot send ping frames, so a tiny message the
// library's view answers without a database write keeps it open.
const PING = JSON.stringify({ action: "ping" });
const PONG_TYPE = "pong";

/** Raised instead of silently dropping a message or a connection attempt. */
export class SocketClosedError extends Error {
  name = "SocketClosedError";
}

/**
 * The socket closed before it opened: the server refused the $connect (the
 * view answered 4xx) or could not be reached. Browsers give no status, only
 * the close `code` (1006 in both cases). A SocketClosedError, so existing
 * `instanceof SocketClosedError` checks still catch it; other
 * SocketClosedErrors from connect() mean the attempt was abandoned on purpose
 * (changeChannel(), close()).
 */
export class ConnectRefusedError extends SocketClosedError {
  name = "ConnectRefusedError";

  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

/** The token view did not issue a token: `status` is its HTTP status, `detail` its `error`. */
export class TokenRequestError extends Error {
  name = "TokenRequestError";

  constructor(message, status, detail = null) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

/** Value of cookie `name`, or null. Django's CSRF cookie is read this way. */
export function readCookie(name, cookieString = globalThis.document?.cookie ?? "") {
  for (const pair of cookieString.split(";")) {
    const separator = pair.indexOf("=");
    if (separator === -1 || pair.slice(0, separator).trim() !== name) continue;
    const value = pair.slice(separator + 1).trim();
    try {
      return decodeURIComponent(value);
    } catch {
      return value; // not percent-encoded after all; the raw value is the best answer
    }
  }
  return null;
}

/**
 * Delay in ms before reconnect number `attempt` (0-based): exponential, capped,
 * then shortened by a random fraction of up to `jitter` so that many browsers
 * dropped at once (deploy, network blip) do not all come back in the same
 * instant and trip the token rate limit together. Result is in [d*(1-jitter), d].
 */
export function backoffDelay(
  attempt,
  { baseDelay = 500, maxDelay = 30000, factor = 2, jitter = 0.5, random = Math.random } = {},
) {
  const delay = Math.min(maxDelay, baseDelay * factor ** attempt);
  return delay * (1 - jitter * random());
}

export class WebSocketClient {
  #url;
  #tokenUrl;
  #channel;
  #WebSocket;
  #fetch;
  #getCsrfToken;
  #backoff;
  #setTimeout;
  #clearTimeout;
  #setInterval;
  #clearInterval;
  #keepaliveMs;
  #logger;

  #state = "closed";
  #socket = null;
  #attempt = 0; // consecutive failed reconnects; drives the backoff
  #timer = null; // pending reconnect
  #keepalive = null; // ping interval of the open socket
  #pending = null; // promise of the connection attempt in flight
  #abortPending = null; // rejects that promise when we abandon the attempt
  // Bumped whenever we abandon a socket or attempt on purpose. Callbacks from an
  // older generation (a socket we closed ourselves, a token that arrives after
  // close()) must not touch the state or trigger a reconnect.
  #generation = 0;

  #handlers = new Map(); // type -> Set of handlers
  #stateHandlers = new Set();

  constructor({
    url,
    tokenUrl = "/api/ws-token/",
    channel = null,
    WebSocket = globalThis.WebSocket,
    fetch = globalThis.fetch,
    getCsrfToken = () => readCookie("csrftoken"),
    baseDelay = 500,
    maxDelay = 30000,
    factor = 2,
    jitter = 0.5,
    random = Math.random,
    setTimeout = globalThis.setTimeout,
    clearTimeout = globalThis.clearTimeout,
    setInterval = globalThis.setInterval,
    clearInterval = globalThis.clearInterval,
    keepaliveSeconds = 300,
    logger = console,
  } = {}) {
    if (!url) throw new TypeError("WebSocketClient needs the API Gateway `url` (wss://…)");
    if (typeof WebSocket !== "function") {
      throw new TypeError("No WebSocket implementation: pass one as the `WebSocket` option");
    }
    if (typeof keepaliveSeconds !== "number" || !(keepaliveSeconds >= 0) || keepaliveSeconds === Infinity) {
      throw new TypeError("`keepaliveSeconds` must be a number of seconds >= 0 (0 turns the keepalive off)");
    }
    this.#url = url;
    this.#tokenUrl = tokenUrl;
    this.#channel = channel;
    this.#WebSocket = WebSocket;
    // Browsers throw "Illegal invocation" when fetch/setTimeout are called as
    // methods of another object, so keep them as plain function calls.
    this.#fetch = (...args) => fetch(...args);
    this.#setTimeout = (...args) => setTimeout(...args);
    this.#clearTimeout = (...args) => clearTimeout(...args);
    this.#setInterval = (...args) => setInterval(...args);
    this.#clearInterval = (...args) => clearInterval(...args);
    this.#keepaliveMs = keepaliveSeconds * 1000;
    this.#getCsrfToken = getCsrfToken;
    this.#backoff = { baseDelay, maxDelay, factor, jitter, random };
    this.#logger = logger;
  }

  get state() {
    return this.#state;
  }

  get channel() {
    return this.#channel;
  }

  /** handler(message) for messages of `type`; "*" sees every message. Returns an unsubscribe function. */
  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(handler);
    return () => this.#handlers.get(type)?.delete(handler);
  }

  /** handler(state) on every state change. Returns an unsubscribe function. */
  onState(handler) {
    this.#stateHandlers.add(handler);
    return () => this.#stateHandlers.delete(handler);
  }

  /**
   * Resolves once the socket is open. Rejects when the token request fails or
   * the server refuses the connect (the socket closes without opening): with a
   * TokenRequestError or a ConnectRefusedError, so a page can say why. A failed
   * first connect is not retried here, since a 403 (logged out) would only fail
   * again: the page decides. Calling it while already connecting or open is harmless.
   */
  async connect() {
    if (this.#pending) return this.#pending;
    if (this.#state === "open") return;
    return this.#start("connecting");
  }

  /** API Gateway fixes the channel at $connect, so a room change is a new connection. */
  async changeChannel(channel) {
    this.#channel = channel;
    this.#attempt = 0;
    return this.#start("connecting");
  }

  /** Stop for good (until the next connect()): no socket, no pending reconnect. */
  close() {
    this.#abandon("Client closed");
    this.#setState("stopped");
  }

  /** JSON-encodes and sends; throws SocketClosedError rather than losing the message. */
  send(payload) {
    if (this.#socket?.readyState !== OPEN) {
      const reason = `Cannot send: WebSocket is not open (client state "${this.#state}")`;
      this.#logger.warn(reason, payload);
      throw new SocketClosedError(reason);
    }
    this.#socket.send(JSON.stringify(payload));
  }

  /** The gateway's route selection reads `action`. */
  sendAction(action, data = {}) {
    // The argument wins over an "action" key inside data.
    this.send({ ...data, action });
  }

  // Drop whatever socket, attempt or timer we have, without reconnecting.
  #abandon(reason) {
    this.#generation++;
    if (this.#timer !== null) this.#clearTimeout(this.#timer);
    this.#timer = null;
    this.#stopKeepalive();
    this.#socket?.close(1000, reason);
    this.#socket = null;
    this.#abortPending?.(new SocketClosedError(reason));
    this.#abortPending = null;
    this.#pending = null;
  }

  // One connection attempt: fresh token, then socket. `mode` is the state to
  // show meanwhile; "reconnecting" attempts retry on failure, others reject.
  #start(mode) {
    this.#abandon("Connection replaced");
    const generation = this.#generation;
    const current = () => generation === this.#generation;
    this.#setState(mode);

    const attempt = new Promise((resolve, reject) => {
      this.#abortPending = reject;
      this.#requestToken()
        .then((token) => {
          if (!current()) return; // abandoned while the token was on its way
          let opened = false;
          const socket = new this.#WebSocket(this.#socketUrl(token));
          this.#socket = socket;
          socket.onopen = () => {
            if (!current()) return;
            opened = true;
            this.#attempt = 0;
            this.#abortPending = null;
            this.#startKeepalive(socket);
            this.#setState("open");
            resolve();
          };
          socket.onmessage = (event) => {
            if (current()) this.#dispatch(event.data);
          };
          socket.onclose = (event) => {
            if (!current()) return; // a socket we closed ourselves
            this.#socket = null;
            this.#stopKeepalive();
            if (opened) {
              this.#scheduleReconnect(`connection lost (code ${event.code})`);
            } else {
              // All the browser tells us about a refused $connect (bad token, 403).
              reject(
                new ConnectRefusedError(`WebSocket closed before opening (code ${event.code})`, event.code),
              );
            }
          };
        })
        .catch(reject);
    });

    this.#pending = attempt;
    attempt.then(
      () => {
        if (current()) this.#pending = null;
      },
      (error) => {
        if (!current()) return; // whoever abandoned it owns the state now
        this.#pending = null;
        this.#abortPending = null;
        if (mode === "reconnecting") this.#scheduleReconnect(`reconnect failed: ${error.message}`);
        else this.#setState("closed");
      },
    );
    return attempt;
  }

  // A ping every keepaliveSeconds while `socket` is open: well inside API
  // Gateway's idle timeout, and one cheap read on the server.
  #startKeepalive(socket) {
    this.#stopKeepalive();
    if (this.#keepaliveMs === 0) return;
    this.#keepalive = this.#setInterval(() => {
      if (socket === this.#socket && socket.readyState === OPEN) socket.send(PING);
    }, this.#keepaliveMs);
    // Node (tests, scripts): the interval alone must not keep the process alive.
    this.#keepalive?.unref?.();
  }

  #stopKeepalive() {
    if (this.#keepalive !== null) this.#clearInterval(this.#keepalive);
    this.#keepalive = null;
  }

  #scheduleReconnect(why) {
    const delay = backoffDelay(this.#attempt++, this.#backoff);
    this.#logger.warn(`WebSocket ${why}; reconnecting in ${Math.round(delay)} ms`);
    this.#setState("reconnecting");
    this.#timer = this.#setTimeout(() => {
      this.#timer = null;
      this.#start("reconnecting");
    }, delay);
  }

  async #requestToken() {
    const csrfToken = this.#getCsrfToken();
    const response = await this.#fetch(this.#tokenUrl, {
      method: "POST",
      credentials: "same-origin", // the session cookie is what proves who we are
      headers: { Accept: "application/json", ...(csrfToken ? { "X-CSRFToken": csrfToken } : {}) },
    });
    const body = await response.json().catch(() => null);
    if (!response.ok || typeof body?.token !== "string" || !body.token) {
      const detail = typeof body?.error === "string" ? body.error : null;
      const message = `WebSocket token request failed (HTTP ${response.status})`;
      throw new TokenRequestError(detail ? `${message}: ${detail}` : message, response.status, detail);
    }
    return body.token;
  }

  #socketUrl(token) {
    const params = [`ws_token=${encodeURIComponent(token)}`];
    if (this.#channel != null && this.#channel !== "") {
      params.push(`channel=${encodeURIComponent(this.#channel)}`);
    }
    // Keep any query string the caller already put in the URL.
    let separator = "&";
    if (!this.#url.includes("?")) separator = "?";
    else if (/[?&]$/.test(this.#url)) separator = "";
    return this.#url + separator + params.join("&");
  }

  #dispatch(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      // fall through to the warning below
    }
    if (message === null || typeof message !== "object" || Array.isArray(message)) {
      this.#logger.warn("Ignoring WebSocket message that is not a JSON object:", data);
      return;
    }
    // The answer to our keepalive ping is not the page's business.
    if (message.type === PONG_TYPE) return;
    // Some server replies are a bare {"error": "..."}; let "error" handlers see them.
    const type = typeof message.type === "string" ? message.type : "error" in message ? "error" : null;
    const targets = type !== null && type !== "*" ? [type, "*"] : ["*"];
    for (const target of targets) {
      // Copy, so a handler may unsubscribe itself while we iterate.
      for (const handler of [...(this.#handlers.get(target) ?? [])]) {
        this.#safely(handler, message, `handler for "${target}"`);
      }
    }
  }

  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    for (const handler of [...this.#stateHandlers]) this.#safely(handler, state, "state handler");
  }

  // One broken handler must not starve the others or kill the socket callbacks.
  #safely(handler, argument, what) {
    try {
      handler(argument);
    } catch (error) {
      this.#logger.error(`WebSocket ${what} threw:`, error);
    }
  }
}
