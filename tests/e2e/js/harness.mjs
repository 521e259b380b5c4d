// Shared pieces of the matrix-js-sdk end-to-end scripts (conversation.mjs, e2ee.mjs): step logging, a
// global timeout, the SDK's logger, an HTTP trace of every request (to say exactly what failed and
// which endpoints were used), account registration/login, clients and their sync loops.
//
// A script calls `setup(name)` first (it reads the homeserver URL from argv), then `run(main)`,
// which exits 0 on success, 1 on failure (with the HTTP trace), 2 on the global timeout.
// E2E_VERBOSE=1 also prints the SDK's debug/info log and every HTTP request.

import * as sdk from "matrix-js-sdk";
import { logger as sdkGlobalLogger } from "matrix-js-sdk/lib/logger.js";

export { sdk };

export const STEP_TIMEOUT_MS = Number(process.env.E2E_STEP_TIMEOUT_MS ?? 20_000);
export const VERBOSE = Boolean(process.env.E2E_VERBOSE);
const PASSWORD = "correct horse battery staple";

export let baseUrl = "";
const started = Date.now();
export const clients = [];
let globalTimer;

export function elapsed() {
    return `${((Date.now() - started) / 1000).toFixed(2)}s`.padStart(7);
}

export function step(message) {
    console.log(`[${elapsed()}] ${message}`);
}

export function fail(message) {
    throw new Error(message);
}

/** Read the base URL from argv and arm the global timeout (ms; E2E_TIMEOUT_MS overrides). */
export function setup(scriptName, globalTimeoutMs) {
    baseUrl = process.argv[2];
    if (!baseUrl) {
        console.error(`usage: ${scriptName} <homeserver base URL>`);
        process.exit(64);
    }
    const timeoutMs = Number(process.env.E2E_TIMEOUT_MS ?? globalTimeoutMs);
    globalTimer = setTimeout(() => {
        console.error(`[${elapsed()}] FAILED: global timeout of ${timeoutMs} ms reached`);
        dumpHttpLog();
        process.exit(2);
    }, timeoutMs);
}

/** Run the script's main(); exit with its outcome (stopping every client first). */
export async function run(main) {
    try {
        await main();
        clearTimeout(globalTimer);
        for (const client of clients) client.stopClient();
        process.exit(0);
    } catch (err) {
        console.error(`[${elapsed()}] FAILED: ${err?.stack ?? err}`);
        if (err instanceof sdk.MatrixError) console.error(`  HTTP ${err.httpStatus} ${JSON.stringify(err.data)}`);
        dumpHttpLog();
        for (const client of clients) client.stopClient();
        process.exit(1);
    }
}

// -- the SDK's log: warnings and errors always, the rest with E2E_VERBOSE ------------------------------

export function makeLogger(prefix) {
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

export const httpLog = [];
export const unexpectedHttpErrors = [];
const unsupportedUnstable = new Set();
const expectedErrors = [];

/**
 * Declare an error answer the spec prescribes for a request the SDK makes as a probe, e.g. GET
 * /room_keys/version -> 404 M_NOT_FOUND when there is no backup. `test(method, path, status, body)`.
 */
export function allowHttpError(description, test) {
    expectedErrors.push({ description, test, seen: 0 });
}

export function dumpHttpLog() {
    console.error("HTTP requests made (client, method, path, status):");
    for (const line of httpLog) console.error(`  ${line}`);
}

export function tracingFetch(name) {
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
            // A user-interactive auth stage: 401 with the flows (register, device deletion, ...).
            const uiaStage = response.status === 401 && body.includes('"flows"');
            // An unstable (MSC) endpoint the server doesn't implement: 404 M_UNRECOGNIZED is the
            // answer the spec asks for, and the SDK treats it as "feature not supported".
            const unstableUnsupported =
                url.pathname.startsWith("/_matrix/client/unstable/") &&
                response.status === 404 &&
                body.includes('"M_UNRECOGNIZED"');
            const expected = expectedErrors.find((e) => e.test(method, url.pathname, response.status, body));
            if (unstableUnsupported) {
                unsupportedUnstable.add(`${method} ${url.pathname}`);
            } else if (expected) {
                expected.seen += 1;
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
        .replace(/\/sendToDevice\/[^/]+\/[^/]+$/, "/sendToDevice/{eventType}/{txnId}")
        .replace(/\/(receipt)\/[^/]+\/[^/]+$/, "/$1/{receiptType}/{eventId}")
        .replace(/\/typing\/[^/]+$/, "/typing/{userId}")
        .replace(/\/account_data\/[^/]+$/, "/account_data/{type}")
        .replace(/\/filter\/[^/]+$/, "/filter/{filterId}")
        .replace(/\/devices\/[^/]+$/, "/devices/{deviceId}")
        .replace(/\/(invite|join)\/[^/]+$/, "/$1/{roomIdOrAlias}");
}

/** Fail on any unexpected HTTP error; print the endpoints used. */
export function reportHttp() {
    if (unexpectedHttpErrors.length) {
        fail(`the server answered these requests with an error:\n  ${unexpectedHttpErrors.join("\n  ")}`);
    }
    for (const endpoint of unsupportedUnstable) {
        step(`note: unstable endpoint not implemented (404 M_UNRECOGNIZED, the SDK carries on): ${endpoint}`);
    }
    for (const e of expectedErrors) {
        if (e.seen) step(`note: ${e.seen} expected error answer(s): ${e.description}`);
    }
    const endpoints = new Set(httpLog.map((line) => templateOf(line.split(" ").slice(1, 3).join(" "))));
    step(`OK: ${httpLog.length} HTTP requests, ${endpoints.size} distinct endpoints:`);
    for (const e of [...endpoints].sort()) console.log(`           ${e}`);
}

// -- helpers --------------------------------------------------------------------------------------

/** Resolve once check() is truthy: checked now and whenever one of `events` fires on `emitter`. */
export function waitUntil(emitter, events, check, what, timeoutMs = STEP_TIMEOUT_MS) {
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

/** Poll an async check every `intervalMs` until it returns a truthy value. */
export async function pollUntil(check, what, { timeoutMs = STEP_TIMEOUT_MS, intervalMs = 200 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await check();
        if (value) return value;
        if (Date.now() > deadline) fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
}

/** Resolve after `ms`. */
export function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function registerAccount(name) {
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

export async function loginAccount(name, username) {
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

export function makeClient(name, account) {
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

export async function startAndWaitPrepared(name, client) {
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

export function liveEvents(client, roomId) {
    return client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
}

/** Wait until `client`'s sync loop has completed `n` more /sync responses. */
export function nextSyncs(client, n, what) {
    let seen = 0;
    return waitUntil(
        client,
        [sdk.ClientEvent.Sync],
        () => {
            // Called once at once (not a sync) and then once per sync.
            seen += 1;
            return seen > n;
        },
        what ?? `${n} more syncs of ${client.displayNameForLog}`,
    );
}

/** A joins-room helper: `client` waits until its sync shows `userId`'s membership in the room. */
export function waitMembership(client, roomId, userId, membership, what) {
    return waitUntil(
        client,
        [sdk.ClientEvent.Room, sdk.RoomMemberEvent.Membership, sdk.ClientEvent.Sync],
        () => client.getRoom(roomId)?.getMember(userId)?.membership === membership,
        what,
    );
}

/** `sender` sends `body`; `receiver` must see it arrive in its live timeline through its sync loop. */
export async function exchange(sender, receiver, roomId, body) {
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
