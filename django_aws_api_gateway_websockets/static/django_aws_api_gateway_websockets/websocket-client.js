// Browser client for Serverless Django WebSockets.
//
// The browser talks to an AWS API Gateway WebSocket API; Django only sees the
// resulting Lambda events. So Django cannot read the session from the socket
// itself: before EVERY connect the client POSTs to a Django view for a
// single-use token and puts it in the connect URL. The rest of this module is
// about keeping that promise through reconnects and channel changes, and about
// showing every message of a channel once and in order across them (replay).
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
// Messages of the library's own wire format (docs/reliable_delivery.md), never shown as they come.
const PART_TYPE = "part";
const REPLAY_TYPE = "replay";
const GAP_TYPE = "gap";
const REPLAY_DONE_TYPE = "replay_done";
// A large message's parts come on one connection, one right after the other: 30 s is a dead set.
const PART_EXPIRY_MS = 30000;
// API Gateway refuses a client message over 128 KiB (and closes the socket with 1009).
const DEFAULT_MAX_MESSAGE_BYTES = 131072;

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

/**
 * send() refused a payload whose JSON is over `maxMessageBytes` (UTF-8 bytes):
 * API Gateway would drop the connection for it, so nothing was sent. Retrying
 * will not help, hence a RangeError rather than a SocketClosedError.
 */
export class MessageTooLargeError extends RangeError {
  name = "MessageTooLargeError";

  constructor(message, bytes, limit) {
    super(message);
    this.bytes = bytes;
    this.limit = limit;
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

// A position in a channel's replay log: the server's `since` is `^[0-9]{1,18}$`.
const isSeq = (value) => Number.isSafeInteger(value) && value >= 0;

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

function parseObject(text) {
  try {
    const value = JSON.parse(text);
    return isObject(value) ? value : null;
  } catch {
    return null;
  }
}

// UTF-8 size of `text` without encoding it. JSON.stringify escapes lone
// surrogates, so every surrogate here is half of a 4-byte pair.
function utf8Length(text) {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) continue;
    if (unit < 0x800) bytes += 1;
    else if (unit >= 0xd800 && unit <= 0xdfff) bytes += 1; // each half: 2 units, 4 bytes a pair
    else bytes += 2;
  }
  return bytes;
}

function checkDuration(name, value, unit, zero) {
  if (typeof value !== "number" || !(value >= 0) || value === Infinity) {
    throw new TypeError(`\`${name}\` must be a number of ${unit} >= 0 (${zero})`);
  }
}

function checkSince(value, where) {
  if (value !== null && !isSeq(value)) {
    throw new TypeError(`${where} must be null or a whole number >= 0 (the last seq already seen)`);
  }
}

/**
 * Reassembles `{"type": "part"}` messages of one socket: the slices of a large
 * message's JSON text, `count` of them, in any order. A set not complete after
 * 30 s is dropped with a warning, so a lost part cannot hold memory for ever.
 */
class MessageParts {
  #sets = new Map(); // id -> { count, slices, received, timer }
  #setTimeout;
  #clearTimeout;
  #warn;

  constructor({ setTimeout, clearTimeout, warn }) {
    this.#setTimeout = setTimeout;
    this.#clearTimeout = clearTimeout;
    this.#warn = warn;
  }

  /** The whole message's text once `part` completes its set, else null. */
  add(part) {
    const { id, index, count, data } = part;
    const valid =
      typeof id === "string" && id !== "" && Number.isSafeInteger(count) && count >= 1 &&
      Number.isSafeInteger(index) && index >= 0 && index < count && typeof data === "string";
    if (!valid) {
      this.#warn("Ignoring a malformed WebSocket message part:", part);
      return null;
    }
    let set = this.#sets.get(id);
    if (set === undefined) {
      set = { count, slices: new Array(count), received: 0, timer: null };
      set.timer = this.#setTimeout(() => this.#expire(id), PART_EXPIRY_MS);
      set.timer?.unref?.();
      this.#sets.set(id, set);
    } else if (set.count !== count) {
      this.#warn(`Ignoring a WebSocket message part of ${id} with count ${count}, not ${set.count}`);
      return null;
    }
    if (set.slices[index] === undefined) {
      set.slices[index] = data;
      set.received += 1;
    }
    if (set.received < set.count) return null;
    this.#drop(id);
    return set.slices.join("");
  }

  /** Forget every set (the socket closed: its missing parts will never come). */
  clear() {
    for (const id of [...this.#sets.keys()]) this.#drop(id);
  }

  #expire(id) {
    const set = this.#sets.get(id);
    if (set === undefined) return;
    this.#sets.delete(id);
    this.#warn(
      `Dropped an incomplete large WebSocket message (${set.received} of ${set.count} parts ` +
        `after ${PART_EXPIRY_MS / 1000} s)`,
    );
  }

  #drop(id) {
    const set = this.#sets.get(id);
    if (set === undefined) return;
    this.#clearTimeout(set.timer);
    this.#sets.delete(id);
  }
}

/**
 * Delivers messages stamped with the channel's `seq` once each and in order.
 * A duplicate (seq <= lastSeq) is dropped; a message after a hole is held
 * until the hole fills. A hole still open after `waitMs` (or after a replay
 * that did not fill it) asks the server for a replay once; after another
 * `waitMs` what is held is delivered anyway, each hole announced by `gap`.
 */
class Sequencer {
  #lastSeq;
  #held = new Map(); // seq -> message, all > lastSeq + 1
  #timer = null;
  #asked = false; // the one replay request for the current hole went out
  #waitMs;
  #deliver;
  #ask;
  #gap;
  #setTimeout;
  #clearTimeout;

  constructor({ since, waitMs, deliver, ask, gap, setTimeout, clearTimeout }) {
    this.#lastSeq = since;
    this.#waitMs = waitMs;
    this.#deliver = deliver;
    this.#ask = ask;
    this.#gap = gap;
    this.#setTimeout = setTimeout;
    this.#clearTimeout = clearTimeout;
  }

  get lastSeq() {
    return this.#lastSeq;
  }

  /** A new numbering (another channel): forget the position and whatever is held. */
  reset(since) {
    this.#stopTimer();
    this.#held.clear();
    this.#lastSeq = since;
  }

  accept(message) {
    const { seq } = message;
    if (this.#lastSeq !== null && (seq <= this.#lastSeq || this.#held.has(seq))) return; // seen
    if (this.#lastSeq === null || seq === this.#lastSeq + 1) {
      this.#deliverOne(message); // with no position yet, the first seq seen sets it
      this.release();
      return;
    }
    this.#held.set(seq, message);
    this.#arm();
  }

  /** Take `seq` as the position (a gap notice said so); held messages up to it are stale. */
  moveTo(seq) {
    this.#lastSeq = seq;
    for (const held of [...this.#held.keys()]) if (held <= seq) this.#held.delete(held);
  }

  /** Deliver the held messages that follow the position without a hole. */
  release() {
    while (this.#lastSeq !== null && this.#held.has(this.#lastSeq + 1)) {
      const next = this.#held.get(this.#lastSeq + 1);
      this.#held.delete(this.#lastSeq + 1);
      this.#deliverOne(next);
    }
    if (this.#held.size === 0) this.#stopTimer();
  }

  /** A replay finished: a hole it did not fill will not fill by waiting. */
  replayDone() {
    if (this.#held.size === 0 || this.#asked) return;
    this.#stopTimer();
    this.#waited();
  }

  /** The socket is gone: no waiting (the reconnect replays from the position). */
  pause() {
    this.#stopTimer();
  }

  /** A socket opened: wait again for whatever hole is left. */
  resume() {
    if (this.#held.size > 0) this.#arm();
  }

  #deliverOne(message) {
    this.#lastSeq = message.seq;
    this.#deliver(message);
  }

  #arm() {
    if (this.#timer !== null) return;
    this.#timer = this.#setTimeout(() => {
      this.#timer = null;
      this.#waited();
    }, this.#waitMs);
    this.#timer?.unref?.();
  }

  #waited() {
    if (this.#held.size === 0) return;
    if (!this.#asked) {
      this.#asked = true;
      this.#ask(this.#lastSeq);
      this.#arm();
      return;
    }
    this.#asked = false;
    const latest = Math.max(...this.#held.keys());
    for (const seq of [...this.#held.keys()].sort((a, b) => a - b)) {
      // A handler may have changed channel (reset) meanwhile: then nothing is held any more.
      if (!this.#held.has(seq)) continue;
      const message = this.#held.get(seq);
      this.#held.delete(seq);
      if (seq !== this.#lastSeq + 1) this.#gap({ since: this.#lastSeq, first_seq: seq, latest_seq: latest });
      this.#deliverOne(message);
    }
  }

  #stopTimer() {
    if (this.#timer !== null) this.#clearTimeout(this.#timer);
    this.#timer = null;
    this.#asked = false;
  }
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
  #maxConnectionMs;
  #pongTimeoutMs;
  #stall = null; // timer: the socket has not answered the last ping
  // Sockets whose pings have been answered once: the route answers pings, so
  // silence after a ping means the connection stalled (a dead network path
  // that never closes), not a gateway without route responses.
  #answersPings = new WeakSet();
  #maxMessageBytes;
  #logger;
  #sequencer;

  #state = "closed";
  #socket = null;
  #attempt = 0; // consecutive failed reconnects; drives the backoff
  #timer = null; // pending reconnect
  #keepalive = null; // ping interval of the open socket
  #renewal = null; // timer: replace the open socket before API Gateway's 2-hour maximum
  #replacement = null; // the replacing socket while it connects
  #renewAttempt = 0; // consecutive failed replacements
  #pending = null; // promise of the connection attempt in flight
  #abortPending = null; // rejects that promise when we abandon the attempt
  #parts = null; // part sets of the current socket
  // socket -> answers ({}) still due to our own replay requests: not the page's business either
  #replayAnswers = new WeakMap();
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
    since = null,
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
    gapWaitMs = 3000,
    maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES,
    maxConnectionSeconds = 7000,
    pongTimeoutSeconds = 10,
    logger = console,
  } = {}) {
    if (!url) throw new TypeError("WebSocketClient needs the API Gateway `url` (wss://…)");
    if (typeof WebSocket !== "function") {
      throw new TypeError("No WebSocket implementation: pass one as the `WebSocket` option");
    }
    checkDuration("keepaliveSeconds", keepaliveSeconds, "seconds", "0 turns the keepalive off");
    checkDuration("gapWaitMs", gapWaitMs, "milliseconds", "0 asks for a replay at once");
    checkDuration("maxConnectionSeconds", maxConnectionSeconds, "seconds", "0 turns the replacement off");
    checkDuration("pongTimeoutSeconds", pongTimeoutSeconds, "seconds", "0 turns stall detection off");
    if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < 1) {
      throw new TypeError("`maxMessageBytes` must be a whole number of bytes >= 1 (API Gateway's limit: 131072)");
    }
    checkSince(since, "`since`");
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
    this.#maxConnectionMs = maxConnectionSeconds * 1000;
    this.#pongTimeoutMs = pongTimeoutSeconds * 1000;
    this.#maxMessageBytes = maxMessageBytes;
    this.#getCsrfToken = getCsrfToken;
    this.#backoff = { baseDelay, maxDelay, factor, jitter, random };
    this.#logger = logger;
    this.#sequencer = new Sequencer({
      since,
      waitMs: gapWaitMs,
      deliver: (message) => this.#emit(message),
      ask: (position) => this.#askReplay(position),
      gap: (hole) => this.#emit({ type: GAP_TYPE, channel: this.#channel, ...hole }),
      setTimeout: this.#setTimeout,
      clearTimeout: this.#clearTimeout,
    });
  }

  get state() {
    return this.#state;
  }

  get channel() {
    return this.#channel;
  }

  /** Highest `seq` delivered to handlers (or the `since` given), null before any: the next connect's `since`. */
  get lastSeq() {
    return this.#sequencer.lastSeq;
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

  /**
   * API Gateway fixes the channel at $connect, so a room change is a new connection.
   * The new channel has its own numbering: `since` is its position (null: live only).
   */
  async changeChannel(channel, { since = null } = {}) {
    checkSince(since, "changeChannel()'s `since`");
    this.#channel = channel;
    this.#attempt = 0;
    this.#sequencer.reset(since);
    return this.#start("connecting");
  }

  /** Stop for good (until the next connect()): no socket, no pending reconnect. */
  close() {
    this.#abandon("Client closed");
    this.#setState("stopped");
  }

  /**
   * JSON-encodes and sends. Throws MessageTooLargeError for JSON over
   * maxMessageBytes and SocketClosedError when not open, rather than losing the message.
   */
  send(payload) {
    const text = JSON.stringify(payload);
    if (typeof text !== "string") throw new TypeError(`Cannot send ${typeof payload}: it has no JSON form`);
    const bytes = text.length * 3 <= this.#maxMessageBytes ? text.length : utf8Length(text);
    if (bytes > this.#maxMessageBytes) {
      throw new MessageTooLargeError(
        `Cannot send: the message is ${bytes} bytes of JSON, over maxMessageBytes (${this.#maxMessageBytes})`,
        bytes,
        this.#maxMessageBytes,
      );
    }
    if (this.#socket?.readyState !== OPEN) {
      const reason = `Cannot send: WebSocket is not open (client state "${this.#state}")`;
      this.#logger.warn(reason, payload);
      throw new SocketClosedError(reason);
    }
    this.#socket.send(text);
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
    this.#stopConnectionTimers();
    this.#replacement?.close(1000, reason);
    this.#replacement = null;
    this.#socket?.close(1000, reason);
    this.#socket = null;
    this.#parts?.clear();
    this.#parts = null;
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
          this.#socket = this.#openSocket(token, current, {
            opened: (socket, parts) => {
              this.#attempt = 0;
              this.#abortPending = null;
              this.#use(socket, parts);
              this.#setState("open");
              resolve();
            },
            // All the browser tells us about a refused $connect (bad token, 403).
            refused: (code) => {
              this.#socket = null;
              reject(new ConnectRefusedError(`WebSocket closed before opening (code ${code})`, code));
            },
          });
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

  // A socket of this generation: `opened(socket, parts)` when it opens,
  // `refused(code)` when it closes first. Once it is the connection, its close
  // is a lost connection; a socket retired by its replacement just ends.
  #openSocket(token, current, { opened, refused }) {
    const socket = new this.#WebSocket(this.#socketUrl(token));
    const parts = new MessageParts({
      setTimeout: this.#setTimeout,
      clearTimeout: this.#clearTimeout,
      warn: (...args) => current() && this.#logger.warn(...args),
    });
    let open = false;
    socket.onopen = () => {
      if (!current()) return;
      open = true;
      opened(socket, parts);
    };
    socket.onmessage = (event) => {
      if (current()) this.#receive(event.data, socket, parts, current);
    };
    socket.onclose = (event) => {
      parts.clear();
      if (!current()) return; // a socket we closed ourselves
      if (!open) refused(event.code);
      else if (socket === this.#socket) this.#lost(event.code);
    };
    return socket;
  }

  // `socket` (just opened) is now the connection.
  #use(socket, parts) {
    this.#socket = socket;
    this.#parts = parts;
    this.#renewAttempt = 0;
    this.#startKeepalive(socket);
    this.#scheduleRenewal(socket);
    this.#sequencer.resume();
  }

  #lost(code) {
    this.#socket = null;
    this.#parts = null;
    this.#stopConnectionTimers();
    this.#replacement?.close(1000, "Connection lost");
    this.#replacement = null;
    this.#scheduleReconnect(typeof code === "number" ? `connection lost (code ${code})` : code);
  }

  #stopConnectionTimers() {
    this.#stopKeepalive();
    if (this.#renewal !== null) this.#clearTimeout(this.#renewal);
    this.#renewal = null;
    this.#sequencer.pause();
  }

  // A ping every keepaliveSeconds while `socket` is open: well inside API
  // Gateway's idle timeout, and one cheap read on the server.
  #startKeepalive(socket) {
    this.#stopKeepalive();
    if (this.#keepaliveMs === 0) return;
    this.#keepalive = this.#setInterval(() => {
      if (socket !== this.#socket || socket.readyState !== OPEN) return;
      socket.send(PING);
      if (this.#pongTimeoutMs > 0 && this.#answersPings.has(socket) && this.#stall === null) {
        this.#stall = this.#setTimeout(() => this.#stalled(socket), this.#pongTimeoutMs);
        this.#stall?.unref?.();
      }
    }, this.#keepaliveMs);
    // Node (tests, scripts): the interval alone must not keep the process alive.
    this.#keepalive?.unref?.();
  }

  #stopKeepalive() {
    if (this.#keepalive !== null) this.#clearInterval(this.#keepalive);
    this.#keepalive = null;
    this.#clearStall();
  }

  #clearStall() {
    if (this.#stall !== null) this.#clearTimeout(this.#stall);
    this.#stall = null;
  }

  // Nothing came back within pongTimeoutSeconds of a ping: the browser may not
  // notice a dead path for many minutes, so give the socket up now and
  // reconnect (since=lastSeq replays what the stall held back).
  #stalled(socket) {
    this.#stall = null;
    if (socket !== this.#socket) return;
    socket.close(4000, "No answer to keepalive");
    this.#lost(`no answer to keepalive in ${this.#pongTimeoutMs / 1000} s`);
  }

  // API Gateway closes every connection after 2 hours. Before that, open a
  // replacement (make before break): the page stays "open" throughout.
  #scheduleRenewal(socket, delay = this.#maxConnectionMs) {
    if (this.#renewal !== null) this.#clearTimeout(this.#renewal);
    this.#renewal = null;
    if (this.#maxConnectionMs === 0) return;
    this.#renewal = this.#setTimeout(() => {
      this.#renewal = null;
      this.#renew(socket);
    }, delay);
    this.#renewal?.unref?.();
  }

  // Replace `old`: a new token and socket with since=lastSeq; `old` is closed
  // only once the new one is open. Both deliver meanwhile; seq drops the doubles.
  #renew(old) {
    const generation = this.#generation;
    const alive = () => generation === this.#generation && old === this.#socket;
    if (!alive() || old.readyState !== OPEN) return;
    const retry = (why) => {
      if (!alive()) return; // old dropped meanwhile: the reconnect took over
      const delay = backoffDelay(this.#renewAttempt++, this.#backoff);
      this.#logger.warn(`WebSocket replacement ${why}; trying again in ${Math.round(delay)} ms`);
      this.#scheduleRenewal(old, delay);
    };
    this.#requestToken()
      .then((token) => {
        if (!alive()) return;
        this.#replacement = this.#openSocket(token, () => generation === this.#generation, {
          opened: (socket, parts) => {
            this.#replacement = null;
            if (!alive()) {
              socket.close(1000, "Connection replaced");
              return;
            }
            this.#use(socket, parts);
            old.close(1000, "Connection replaced");
          },
          refused: (code) => {
            this.#replacement = null;
            retry(`refused (code ${code})`);
          },
        });
      })
      .catch((error) => retry(`failed: ${error.message}`));
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
    // Where to resume: the server replays what came after it before live messages.
    const since = this.#sequencer.lastSeq;
    if (since !== null) params.push(`since=${since}`);
    // Keep any query string the caller already put in the URL.
    let separator = "&";
    if (!this.#url.includes("?")) separator = "?";
    else if (/[?&]$/.test(this.#url)) separator = "";
    return this.#url + separator + params.join("&");
  }

  // Ask the server (once per hole) to replay what followed `position`.
  #askReplay(position) {
    const socket = this.#socket;
    if (socket?.readyState !== OPEN) return;
    socket.send(JSON.stringify({ action: "replay", since: position }));
    this.#replayAnswers.set(socket, (this.#replayAnswers.get(socket) ?? 0) + 1);
  }

  // One frame of a socket: the library's own messages are handled here, the rest go to handlers.
  #receive(data, socket, parts, current) {
    // Anything arriving proves the path works: the stall check waits no longer.
    if (socket === this.#socket) this.#clearStall();
    const message = parseObject(data);
    if (message === null) {
      this.#logger.warn("Ignoring WebSocket message that is not a JSON object:", data);
      return;
    }
    if (Object.keys(message).length === 0 && this.#replayAnswers.get(socket) > 0) {
      this.#replayAnswers.set(socket, this.#replayAnswers.get(socket) - 1);
      return; // the view's answer to a replay request the client sent by itself
    }
    switch (message.type) {
      case PONG_TYPE: // the answer to our keepalive ping is not the page's business
        this.#answersPings.add(socket);
        return;
      case PART_TYPE: {
        const whole = parts.add(message);
        if (whole !== null) this.#receive(whole, socket, parts, current); // as if it had come in one piece
        return;
      }
      case REPLAY_TYPE:
        if (Array.isArray(message.messages)) {
          this.#unpackReplay(message, current);
          return;
        }
        break;
      case GAP_TYPE:
        this.#onGapNotice(message);
        return;
    }
    this.#accept(message);
  }

  #accept(message) {
    if (isSeq(message.seq)) this.#sequencer.accept(message);
    else this.#emit(message);
  }

  #unpackReplay(batch, current) {
    for (const item of batch.messages) {
      if (!current()) return; // a handler changed channel or closed the client
      const message = typeof item === "string" ? parseObject(item) : isObject(item) ? item : null;
      if (message === null) this.#logger.warn("Ignoring a replayed message that is not a JSON object:", item);
      else this.#accept(message);
    }
    if (batch.done !== true || !current()) return;
    const channel = typeof batch.channel === "string" ? batch.channel : this.#channel;
    this.#emit({ type: REPLAY_DONE_TYPE, channel, seq: this.#sequencer.lastSeq });
    this.#sequencer.replayDone();
  }

  // The server cannot replay everything after our `since`: trimmed (the
  // position jumps to just before the oldest retained message), or from the
  // future (a restored database: the position falls back to the latest).
  #onGapNotice(notice) {
    const { since, first_seq: first, latest_seq: latest } = notice;
    const position = this.#sequencer.lastSeq;
    let target = null;
    if (isSeq(since) && isSeq(latest) && since > latest && (position === null || position > latest)) {
      target = latest;
    } else if (isSeq(first) && first >= 1 && position !== null && first - 1 > position) {
      target = first - 1;
    }
    if (target !== null) this.#sequencer.moveTo(target);
    this.#emit(notice);
    this.#sequencer.release();
  }

  // To the handlers of the message's type, then to "*".
  #emit(message) {
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
