// The browser client's side of replay, large messages and AWS's 2-hour maximum
// (docs/reliable_delivery.md). Run: node --test tests/js/
import { describe, test } from "node:test";
import assert from "node:assert/strict";

import {
  MessageTooLargeError,
  SocketClosedError,
} from "../../django_aws_api_gateway_websockets/static/django_aws_api_gateway_websockets/websocket-client.js";
import { connectOpen, flush, setupWithClock, token, tokenOf } from "./support.mjs";

const sinceOf = (socket) => new URL(socket.url).searchParams.get("since");
const chat = (seq, text = `message ${seq}`) => ({ seq, type: "chat_message", message: text });
const replay = (messages, done, channel = "lobby") => ({ type: "replay", channel, messages, done });
const sentActions = (socket) => socket.sent.map((frame) => JSON.parse(frame)).filter((m) => m.action !== "ping");

// A client on a virtual clock with a recorder of what the page's handlers see.
function start(options = {}) {
  const env = setupWithClock({ channel: "lobby", ...options });
  const seen = [];
  env.client.on("*", (message) => seen.push(message));
  const seqs = () => seen.filter((m) => m.type === "chat_message").map((m) => m.seq);
  return { ...env, seen, seqs };
}

describe("replay position (since)", () => {
  test("the first connect carries the `since` given, and lastSeq starts there", async () => {
    const env = start({ since: 41 });
    assert.equal(env.client.lastSeq, 41);
    const socket = await connectOpen(env);
    assert.equal(sinceOf(socket), "41");
  });

  test("without `since` the first connect is live only and the first seq seen sets the position", async () => {
    const env = start();
    const socket = await connectOpen(env);
    assert.equal(sinceOf(socket), null);
    assert.equal(env.client.lastSeq, null);
    socket.simulateMessage(chat(40));
    socket.simulateMessage(chat(39)); // older than the position: already past
    socket.simulateMessage(chat(41));
    assert.deepEqual(env.seqs(), [40, 41]);
    assert.equal(env.client.lastSeq, 41);
  });

  test("a reconnect after a drop asks for everything after lastSeq, and gets it once", async () => {
    const env = start();
    const first = await connectOpen(env);
    for (const seq of [1, 2, 3]) first.simulateMessage(chat(seq));
    first.simulateClose(1006); // network loss
    assert.equal(env.client.state, "reconnecting");
    env.clock.advance(500); // the backoff
    await flush();
    const second = env.lastSocket();
    assert.notEqual(second, first);
    assert.equal(sinceOf(second), "3");
    assert.equal(tokenOf(second), token(2), "a fresh token, as for every connect");
    second.simulateOpen();
    second.simulateMessage(chat(6)); // live, ahead of the replay
    second.simulateMessage(replay([chat(3), chat(4), chat(5)], true)); // 3: the server's overlap
    assert.deepEqual(env.seqs(), [1, 2, 3, 4, 5, 6]);

    // Dropped again: the next connect resumes after 6.
    second.simulateClose(1001);
    env.clock.advance(500);
    await flush();
    assert.equal(sinceOf(env.lastSocket()), "6");
  });

  test("`since` must be null or a whole number >= 0", () => {
    for (const since of [-1, 1.5, "3", Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => start({ since }), (error) => error instanceof TypeError && /`since`/.test(error.message));
    }
    assert.equal(start({ since: 0 }).client.lastSeq, 0); // 0: everything retained
  });
});

describe("once and in order", () => {
  test("a message posted twice is shown once", async () => {
    const env = start();
    const socket = await connectOpen(env);
    for (const seq of [1, 2, 2, 1, 3, 3]) socket.simulateMessage(chat(seq));
    assert.deepEqual(env.seqs(), [1, 2, 3]);
  });

  test("messages after a hole are held until it fills, then delivered in order", async () => {
    const env = start({ since: 5 });
    const socket = await connectOpen(env);
    socket.simulateMessage(chat(7));
    socket.simulateMessage(chat(8));
    socket.simulateMessage(chat(8)); // a duplicate of a held one
    assert.deepEqual(env.seqs(), []);
    assert.equal(env.client.lastSeq, 5);
    socket.simulateMessage(chat(6));
    assert.deepEqual(env.seqs(), [6, 7, 8]);
    assert.equal(env.client.lastSeq, 8);
    env.clock.advance(10000);
    assert.deepEqual(sentActions(socket), [], "a filled hole asks for nothing");
    assert.equal(env.seen.filter((m) => m.type === "gap").length, 0);
  });

  test("messages without a seq are delivered at once, whatever is held", async () => {
    const env = start({ since: 5 });
    const socket = await connectOpen(env);
    socket.simulateMessage(chat(7));
    socket.simulateMessage({ type: "ack" });
    assert.deepEqual(env.seen, [{ type: "ack" }]);
  });

  test("a hole still open after gapWaitMs asks for one replay since lastSeq", async () => {
    const env = start({ since: 5 });
    const socket = await connectOpen(env);
    socket.simulateMessage(chat(7));
    env.clock.advance(2999);
    assert.deepEqual(sentActions(socket), []);
    env.clock.advance(1);
    assert.deepEqual(sentActions(socket), [{ action: "replay", since: 5 }]);
    socket.simulateMessage(chat(8)); // more behind the same hole: no second request
    env.clock.advance(2000);
    assert.deepEqual(sentActions(socket), [{ action: "replay", since: 5 }]);

    socket.simulateMessage(replay([chat(6), chat(7), chat(8)], true)); // the answer
    socket.simulateMessage({}); // the view's route response to the request: not the page's
    assert.deepEqual(env.seqs(), [6, 7, 8]);
    assert.equal(env.seen.filter((m) => Object.keys(m).length === 0).length, 0);
    socket.simulateMessage({}); // any other empty answer still reaches "*", as before
    assert.equal(env.seen.filter((m) => Object.keys(m).length === 0).length, 1);
    env.clock.advance(10000);
    assert.equal(env.seen.filter((m) => m.type === "gap").length, 0);
    assert.equal(sentActions(socket).length, 1);
  });

  test("a hole the replay cannot fill: after another gapWaitMs, the held are delivered, each hole a gap event", async () => {
    const env = start({ since: 5, gapWaitMs: 1000 });
    const socket = await connectOpen(env);
    socket.simulateMessage(chat(9));
    socket.simulateMessage(chat(7));
    env.clock.advance(1000);
    assert.deepEqual(sentActions(socket), [{ action: "replay", since: 5 }]);
    socket.simulateMessage(replay([], true)); // nothing to fill it with
    assert.deepEqual(env.seqs(), []);
    env.clock.advance(999);
    assert.deepEqual(env.seqs(), []);
    env.clock.advance(1);
    const shown = env.seen.filter((m) => m.type !== "replay_done");
    assert.deepEqual(
      shown.map((m) => (m.type === "gap" ? `gap ${m.since}->${m.first_seq}` : m.seq)),
      ["gap 5->7", 7, "gap 7->9", 9],
    );
    assert.deepEqual(env.seen.find((m) => m.type === "gap"), {
      type: "gap",
      channel: "lobby",
      since: 5,
      first_seq: 7,
      latest_seq: 9,
    });
    assert.equal(env.client.lastSeq, 9);
    assert.equal(sentActions(socket).length, 1, "one replay request, never more");
    socket.simulateMessage(chat(10));
    assert.deepEqual(env.seqs(), [7, 9, 10]);
  });

  test("a replay done without the missing message asks for the replay at once", async () => {
    const env = start({ since: 5 });
    const socket = await connectOpen(env);
    socket.simulateMessage(chat(9)); // live, while the connect's replay is on its way
    socket.simulateMessage(replay([chat(6), chat(7)], true));
    assert.deepEqual(env.seqs(), [6, 7]);
    assert.deepEqual(sentActions(socket), [{ action: "replay", since: 7 }]);
    socket.simulateMessage(replay([chat(8), chat(9)], true));
    assert.deepEqual(env.seqs(), [6, 7, 8, 9]);
  });

  test("a handler changing channel while a replay is delivered stops the rest of it", async () => {
    const env = start({ since: 0 });
    const socket = await connectOpen(env);
    env.client.on("chat_message", (message) => {
      if (message.seq === 2) env.client.changeChannel("other").catch(() => {});
    });
    socket.simulateMessage(replay([chat(1), chat(2), chat(3)], true));
    assert.deepEqual(env.seqs(), [1, 2]);
    assert.equal(env.seen.filter((m) => m.type === "replay_done").length, 0);
    assert.equal(env.client.lastSeq, null);
  });
});

describe("replay batches", () => {
  test("are unpacked: handlers see each message, never the batch, then replay_done", async () => {
    const env = start({ since: 5 });
    const socket = await connectOpen(env);
    const done = [];
    env.client.on("replay_done", (message) => done.push({ message, delivered: env.seqs() }));
    socket.simulateMessage(replay([chat(6), chat(7)], false));
    assert.deepEqual(done, []);
    socket.simulateMessage(replay([JSON.stringify(chat(8))], true)); // a stamped message as text, too
    assert.deepEqual(env.seqs(), [6, 7, 8]);
    assert.equal(env.seen.filter((m) => m.type === "replay").length, 0);
    assert.deepEqual(done, [{ message: { type: "replay_done", channel: "lobby", seq: 8 }, delivered: [6, 7, 8] }]);
  });

  test("an empty final batch still says replay_done, with the unchanged position", async () => {
    const env = start({ since: 12 });
    const socket = await connectOpen(env);
    socket.simulateMessage(replay([], true));
    assert.deepEqual(env.seen, [{ type: "replay_done", channel: "lobby", seq: 12 }]);
  });
});

describe("gap notices", () => {
  test("messages trimmed from the log: handlers see the notice, the replay then flows without waiting", async () => {
    const env = start({ since: 5 });
    const socket = await connectOpen(env);
    const notice = { type: "gap", channel: "lobby", since: 5, first_seq: 50, latest_seq: 52 };
    socket.simulateMessage(notice);
    assert.deepEqual(env.seen, [notice]);
    assert.equal(env.client.lastSeq, 49);
    socket.simulateMessage(replay([chat(50), chat(51), chat(52)], true));
    assert.deepEqual(env.seqs(), [50, 51, 52]);
    env.clock.advance(10000);
    assert.deepEqual(sentActions(socket), [], "the hole is known: no replay request");
  });

  test("a since from the future (a restored database) falls back to the latest seq", async () => {
    const env = start({ since: 100 });
    const socket = await connectOpen(env);
    socket.simulateMessage({ type: "gap", channel: "lobby", since: 100, first_seq: 1, latest_seq: 3 });
    assert.equal(env.client.lastSeq, 3);
    socket.simulateMessage(replay([], true));
    socket.simulateMessage(chat(4));
    assert.deepEqual(env.seqs(), [4]);

    socket.simulateClose(1001);
    env.clock.advance(500);
    await flush();
    assert.equal(sinceOf(env.lastSocket()), "4");
  });
});

describe("changeChannel and since", () => {
  test("a new channel has its own numbering: lastSeq resets, unless a since is given", async () => {
    const env = start();
    const socket = await connectOpen(env);
    socket.simulateMessage(chat(30));

    const changed = env.client.changeChannel("kitchen");
    assert.equal(env.client.lastSeq, null);
    await flush();
    const kitchen = env.lastSocket();
    assert.equal(sinceOf(kitchen), null);
    kitchen.simulateOpen();
    await changed;
    kitchen.simulateMessage(chat(1)); // not a duplicate: another channel's seq 1
    assert.deepEqual(env.seqs(), [30, 1]);

    const again = env.client.changeChannel("lobby", { since: 30 });
    await flush();
    assert.equal(sinceOf(env.lastSocket()), "30");
    env.lastSocket().simulateOpen();
    await again;
    env.lastSocket().simulateMessage(chat(30));
    env.lastSocket().simulateMessage(chat(31));
    assert.deepEqual(env.seqs(), [30, 1, 31]);
  });

  test("what is held for the old channel is dropped with it", async () => {
    const env = start({ since: 5 });
    const socket = await connectOpen(env);
    socket.simulateMessage(chat(7));
    const changed = env.client.changeChannel("kitchen");
    await flush();
    env.lastSocket().simulateOpen();
    await changed;
    env.clock.advance(10000);
    assert.deepEqual(env.seen, []);
    assert.deepEqual(sentActions(env.lastSocket()), []);
  });

  test("a since that is not a whole number >= 0 rejects and changes nothing", async () => {
    const env = start();
    await connectOpen(env);
    await assert.rejects(env.client.changeChannel("kitchen", { since: -3 }), TypeError);
    assert.equal(env.client.channel, "lobby");
    assert.equal(env.client.state, "open");
  });
});

// The server's split: slices of the message's JSON text, each sent as one part message.
const parts = (text, cuts, id = "ab".repeat(16)) => {
  const bounds = [0, ...cuts, text.length];
  return bounds.slice(1).map((end, index) => ({
    type: "part",
    id,
    index,
    count: bounds.length - 1,
    data: text.slice(bounds[index], end),
  }));
};

describe("large messages", () => {
  test("parts are reassembled in any order and dispatched as one message; handlers never see a part", async () => {
    const env = start();
    const socket = await connectOpen(env);
    const whole = { seq: 1, type: "chat_message", message: "x".repeat(300) };
    const text = JSON.stringify(whole);
    const [a, b, c] = parts(text, [100, 200]);
    for (const part of [c, a]) socket.simulateMessage(part);
    assert.deepEqual(env.seen, []);
    socket.simulateMessage(b);
    assert.deepEqual(env.seen, [whole]);
    assert.equal(env.client.lastSeq, 1, "a reassembled message goes through the seq pipeline");
    for (const part of [a, b, c]) socket.simulateMessage({ ...part, id: "cd".repeat(16) }); // posted twice
    assert.deepEqual(env.seen, [whole]);
  });

  test("text in any script survives the split, a surrogate pair cut between two parts included", async () => {
    const env = start();
    const socket = await connectOpen(env);
    const message = "é中文😀🎉 — ∑ \"quoted\" \\ \n end";
    const text = JSON.stringify({ type: "chat_message", message });
    const emoji = text.indexOf("😀");
    // Inside the pair (between its two UTF-16 halves) and right after a 3-byte character.
    const cuts = [emoji + 1, text.indexOf("文") + 1, text.indexOf("🎉") + 1].sort((x, y) => x - y);
    const pieces = parts(text, cuts);
    // On the wire each slice is JSON: a lone half travels as a \ud83d escape.
    assert.match(JSON.stringify(pieces.find((p) => p.data.endsWith("\ud83d"))), /\\ud83d/);
    for (const part of pieces.reverse()) socket.simulateMessage(part);
    assert.deepEqual(env.seen, [{ type: "chat_message", message }]);
  });

  test("a set still incomplete after 30 s is dropped with a warning; a late part cannot complete it", async () => {
    const env = start();
    const socket = await connectOpen(env);
    const [a, b, c] = parts(JSON.stringify({ type: "chat_message", message: "y".repeat(90) }), [30, 60]);
    socket.simulateMessage(a);
    socket.simulateMessage(b);
    env.clock.advance(29999);
    assert.equal(env.logger.warn.mock.callCount(), 0);
    env.clock.advance(1);
    assert.equal(env.logger.warn.mock.callCount(), 1);
    assert.match(env.logger.warn.mock.calls[0].arguments[0], /incomplete.*2 of 3 parts/);
    socket.simulateMessage(c);
    assert.deepEqual(env.seen, []);
  });

  test("parts of a socket that closed are forgotten, without a warning", async () => {
    const env = start();
    const socket = await connectOpen(env);
    socket.simulateMessage(parts('{"type":"chat_message"}', [5])[0]);
    socket.simulateClose(1006);
    env.clock.advance(60000);
    assert.equal(env.logger.warn.mock.calls.filter((call) => /incomplete/.test(call.arguments[0])).length, 0);
  });

  test("a malformed part is warned about and shown to nobody", async () => {
    const env = start();
    const socket = await connectOpen(env);
    socket.simulateMessage({ type: "part", id: "x", index: 3, count: 2, data: "{}" });
    assert.deepEqual(env.seen, []);
    assert.equal(env.logger.warn.mock.callCount(), 1);
  });
});

describe("maxMessageBytes", () => {
  const envelope = JSON.stringify({ m: "" }).length; // {"m":""}

  test("send refuses JSON over 131072 UTF-8 bytes by default and sends nothing", async () => {
    const env = start();
    const socket = await connectOpen(env);
    env.client.send({ m: "a".repeat(131072 - envelope) }); // exactly the limit
    assert.equal(socket.sent.length, 1);
    assert.throws(
      () => env.client.send({ m: "a".repeat(131072 - envelope + 1) }),
      (error) => {
        assert.ok(error instanceof MessageTooLargeError);
        assert.ok(error instanceof RangeError);
        assert.ok(!(error instanceof SocketClosedError));
        assert.equal(error.name, "MessageTooLargeError");
        assert.deepEqual([error.bytes, error.limit], [131073, 131072]);
        assert.match(error.message, /131073 bytes.*maxMessageBytes \(131072\)/);
        return true;
      },
    );
    assert.equal(socket.sent.length, 1, "nothing more was sent");
  });

  test("counts UTF-8 bytes, not characters: é is 2, 中 is 3, 😀 is 4", async () => {
    const env = start({ maxMessageBytes: envelope + 12 });
    const socket = await connectOpen(env);
    env.client.send({ m: "é中😀é" }); // 2 + 3 + 4 + 2 = 11
    env.client.sendAction("x"); // small
    assert.throws(() => env.client.send({ m: "😀😀😀a" }), MessageTooLargeError); // 13
    assert.throws(() => env.client.send({ m: "中中中中a" }), (error) => error.bytes === envelope + 13);
    assert.equal(socket.sent.length, 2);
  });

  test("an over-size message is refused even when not connected: retrying would not help", () => {
    const env = start({ maxMessageBytes: 50 });
    assert.throws(() => env.client.send({ m: "a".repeat(100) }), MessageTooLargeError);
    assert.throws(() => env.client.send({ m: "a" }), SocketClosedError);
  });

  test("maxMessageBytes must be a whole number >= 1", () => {
    for (const maxMessageBytes of [0, -1, 1.5, "131072", null, Number.POSITIVE_INFINITY]) {
      assert.throws(
        () => start({ maxMessageBytes }),
        (error) => error instanceof TypeError && /maxMessageBytes/.test(error.message),
      );
    }
  });
});

describe("the 2-hour maximum", () => {
  test("after maxConnectionSeconds a replacement opens with since, then the old closes; nothing twice, always open", async () => {
    const env = start(); // default maxConnectionSeconds: 7000, under API Gateway's 7200
    const old = await connectOpen(env);
    for (const seq of [1, 2]) old.simulateMessage(chat(seq));

    env.clock.advance(7000 * 1000 - 1);
    await flush();
    assert.equal(env.sockets.length, 1, "not before maxConnectionSeconds");
    env.clock.advance(1);
    await flush();
    assert.equal(env.sockets.length, 2);
    const fresh = env.lastSocket();
    assert.equal(tokenOf(fresh), token(2));
    assert.equal(sinceOf(fresh), "2");
    assert.equal(new URL(fresh.url).searchParams.get("channel"), "lobby");
    assert.deepEqual(old.closeCalls, [], "the old socket stays until the new one is open");

    old.simulateMessage(chat(3)); // still live on the old one meanwhile
    env.client.sendAction("chat_message", { message: "while replacing" });
    assert.equal(sentActions(old).length, 1, "sends go to the open socket");

    fresh.simulateOpen();
    assert.deepEqual(old.closeCalls, [{ code: 1000, reason: "Connection replaced" }]);
    old.simulateMessage(chat(4)); // in flight on the old one before its close
    fresh.simulateMessage(replay([chat(3), chat(4)], true));
    fresh.simulateMessage(chat(5));
    old.simulateClose(1000);
    fresh.simulateMessage(chat(5));

    assert.deepEqual(env.seqs(), [1, 2, 3, 4, 5]);
    assert.deepEqual(env.states, ["connecting", "open"], "no reconnecting, ever");
    assert.equal(env.client.state, "open");
    assert.equal(env.sockets.length, 2, "the old socket's close is not a lost connection");
    env.client.sendAction("chat_message", { message: "after" });
    assert.equal(sentActions(fresh).length, 1);

    // The keepalive follows the new socket.
    const pings = (socket) => socket.sent.filter((frame) => JSON.parse(frame).action === "ping").length;
    const before = pings(old);
    env.clock.advance(300 * 1000);
    assert.equal(pings(fresh), 1);
    assert.equal(pings(old), before);

    // And the new socket is replaced in turn, 7000 s after it opened.
    env.clock.advance(6700 * 1000 - 1);
    await flush();
    assert.equal(env.sockets.length, 2);
    env.clock.advance(1);
    await flush();
    assert.equal(env.sockets.length, 3);
    assert.equal(sinceOf(env.lastSocket()), "5");
  });

  test("a refused replacement keeps the old socket open and tries again after a backoff", async () => {
    const env = start({ maxConnectionSeconds: 60, random: () => 0 });
    const old = await connectOpen(env);
    env.clock.advance(60000);
    await flush();
    env.lastSocket().simulateClose(1006); // refused
    assert.equal(env.client.state, "open");
    assert.deepEqual(old.closeCalls, []);
    assert.match(
      env.logger.warn.mock.calls.at(-1).arguments[0],
      /replacement refused \(code 1006\); trying again in 500 ms/,
    );
    env.clock.advance(500);
    await flush();
    assert.equal(env.sockets.length, 3);
    env.lastSocket().simulateOpen();
    assert.deepEqual(old.closeCalls.map((call) => call.code), [1000]);
    assert.deepEqual(env.states, ["connecting", "open"]);
  });

  test("the old socket dropping while its replacement connects is an ordinary reconnect", async () => {
    const env = start({ maxConnectionSeconds: 60, random: () => 0 });
    const old = await connectOpen(env);
    old.simulateMessage(chat(8));
    env.clock.advance(60000);
    await flush();
    const replacement = env.lastSocket();
    old.simulateClose(1001);
    assert.deepEqual(replacement.closeCalls.map((call) => call.code), [1000]);
    assert.equal(env.client.state, "reconnecting");
    env.clock.advance(500);
    await flush();
    const next = env.lastSocket();
    assert.equal(sinceOf(next), "8");
    next.simulateOpen();
    assert.equal(env.client.state, "open");
  });

  test("maxConnectionSeconds: 0 keeps one socket for as long as the server allows", async () => {
    const env = start({ maxConnectionSeconds: 0 });
    await connectOpen(env);
    env.clock.advance(3 * 3600 * 1000);
    await flush();
    assert.equal(env.sockets.length, 1);
    assert.equal(env.fetch.mock.callCount(), 1);
  });

  test("close() during a replacement leaves nothing behind", async () => {
    const env = start({ maxConnectionSeconds: 60 });
    await connectOpen(env);
    env.clock.advance(60000);
    await flush();
    const replacement = env.lastSocket();
    env.client.close();
    assert.equal(replacement.closeCalls.length, 1);
    replacement.simulateOpen(); // too late: ignored
    assert.equal(env.client.state, "stopped");
    assert.deepEqual(env.clock.pending(), []);
  });

  test("gapWaitMs and maxConnectionSeconds must be numbers >= 0", () => {
    for (const name of ["gapWaitMs", "maxConnectionSeconds"]) {
      for (const value of [-1, "5", Number.NaN, Number.POSITIVE_INFINITY, null]) {
        assert.throws(
          () => start({ [name]: value }),
          (error) => error instanceof TypeError && error.message.startsWith(`\`${name}\` must be a number`),
        );
      }
    }
  });
});

describe("stalled connections", () => {
  const pong = { type: "pong" };

  test("a socket that answered pings and then goes silent is given up and replaced with since", async () => {
    const env = start({ keepaliveSeconds: 5, pongTimeoutSeconds: 2, random: () => 0 });
    const socket = await connectOpen(env);
    socket.simulateMessage(chat(1));
    env.clock.advance(5000); // first ping
    socket.simulateMessage(pong); // the route answers pings
    env.clock.advance(5000); // second ping: never answered (the path died, no close)
    env.clock.advance(1999);
    assert.deepEqual(socket.closeCalls, [], "within the timeout nothing happens");
    env.clock.advance(1);
    assert.deepEqual(socket.closeCalls, [{ code: 4000, reason: "No answer to keepalive" }]);
    assert.equal(env.client.state, "reconnecting");
    env.clock.advance(1000); // the backoff
    await flush();
    const fresh = env.lastSocket();
    assert.notEqual(fresh, socket);
    assert.equal(sinceOf(fresh), "1", "resumes where the stalled socket left off");
    fresh.simulateOpen();
    await flush();
    assert.equal(env.client.state, "open");
    socket.simulateClose(1006); // the browser gives up on the old one much later
    assert.equal(env.client.state, "open", "the old socket's late close changes nothing");
  });

  test("any message after a ping counts as an answer", async () => {
    const env = start({ keepaliveSeconds: 5, pongTimeoutSeconds: 2 });
    const socket = await connectOpen(env);
    env.clock.advance(5000);
    socket.simulateMessage(pong);
    env.clock.advance(5000);
    socket.simulateMessage(chat(1)); // a broadcast arrives before the pong
    env.clock.advance(5000 + 1500); // the next ping, then 1.5 s of silence
    socket.simulateMessage(chat(2));
    env.clock.advance(3000);
    assert.deepEqual(socket.closeCalls, []);
    assert.equal(env.client.state, "open");
  });

  test("without a pong ever (a gateway with no route responses) silence is not a stall", async () => {
    const env = start({ keepaliveSeconds: 5, pongTimeoutSeconds: 2 });
    const socket = await connectOpen(env);
    env.clock.advance(60000);
    assert.deepEqual(socket.closeCalls, []);
    assert.equal(env.client.state, "open");
  });

  test("pongTimeoutSeconds 0 turns the check off; bad values are a clear TypeError", async () => {
    const env = start({ keepaliveSeconds: 5, pongTimeoutSeconds: 0 });
    const socket = await connectOpen(env);
    env.clock.advance(5000);
    socket.simulateMessage(pong);
    env.clock.advance(60000);
    assert.deepEqual(socket.closeCalls, []);
    for (const pongTimeoutSeconds of [-1, "10", Number.NaN, null]) {
      assert.throws(() => start({ pongTimeoutSeconds }), /pongTimeoutSeconds/);
    }
  });
});
