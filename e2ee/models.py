"""End-to-end encryption: device keys, one-time and fallback keys, cross-signing keys and signatures,
device-list changes, and to-device messages (spec: "End-to-End Encryption", "Send-to-Device").

Keys and messages of a device hang off ``accounts.Device`` (CASCADE): deleting a device deletes its
keys and its undelivered messages. Two tables are syncable and carry a position of the one stream
counter (events/stream.py): ``DeviceListChange`` (one row per user, its newest change) and
``ToDeviceMessage``.
"""

from __future__ import annotations

from django.db import models


class DeviceKeys(models.Model):
    """The identity keys a device uploaded (``device_keys`` of /keys/upload), as signed by it."""

    device = models.OneToOneField("accounts.Device", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    keys = models.JSONField()


class OneTimeKey(models.Model):
    """One one-time key; handed out once by /keys/claim (the row is deleted as it is claimed)."""

    device = models.ForeignKey("accounts.Device", on_delete=models.CASCADE, related_name="+")
    algorithm = models.CharField(max_length=255)
    key_id = models.CharField(max_length=255)
    key = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "algorithm", "key_id"], name="otk_unique_per_device")
        ]


class FallbackKey(models.Model):
    """The device's fallback key for one algorithm: handed out (and marked used) when no one-time
    key of that algorithm is left; replaced by the next upload."""

    device = models.ForeignKey("accounts.Device", on_delete=models.CASCADE, related_name="+")
    algorithm = models.CharField(max_length=255)
    key_id = models.CharField(max_length=255)
    key = models.JSONField()
    used = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "algorithm"], name="fallback_key_unique_per_algorithm")
        ]


class CrossSigningKey(models.Model):
    """A user's master, self-signing or user-signing key (its public key is ``public_key``)."""

    MASTER, SELF_SIGNING, USER_SIGNING = "master", "self_signing", "user_signing"

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    usage = models.CharField(max_length=32)
    public_key = models.CharField(max_length=255)
    key = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "usage"], name="cross_signing_key_unique_usage")
        ]


class KeySignature(models.Model):
    """A signature that ``signer`` uploaded (/keys/signatures/upload) on a key of ``target_user``: a
    device (``target_key_id`` is the device ID) or a cross-signing key (its public key). Merged into
    the signed object's ``signatures`` when keys are queried."""

    signer = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    signer_key_id = models.CharField(max_length=255)  # "ed25519:<public key or device ID>"
    target_user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    target_key_id = models.CharField(max_length=255)
    signature = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["target_user", "target_key_id", "signer", "signer_key_id"],
                name="key_signature_unique",
            )
        ]


class DeviceListChange(models.Model):
    """The newest change of a user's device list or keys (device keys, cross-signing keys, signatures):
    reported in /sync ``device_lists.changed`` and /keys/changes to the users sharing a room."""

    user = models.OneToOneField("accounts.User", on_delete=models.CASCADE, related_name="+")
    stream_pos = models.BigIntegerField(db_index=True)


class ToDeviceMessageQuerySet(models.QuerySet["ToDeviceMessage"]):
    def acknowledge(self, *, device_pk: int, upto: int) -> int:
        """Delete what the device has received: a /sync with ``since=upto`` acknowledges every message
        at or below ``upto`` (they were in the response whose next_batch it is)."""
        return self.filter(device_id=device_pk, stream_pos__lte=upto).delete()[0]


class ToDeviceMessage(models.Model):
    """A message for one device, delivered by /sync until acknowledged."""

    device = models.ForeignKey("accounts.Device", on_delete=models.CASCADE, related_name="+")
    sender = models.CharField(max_length=255)
    type = models.CharField(max_length=255)
    content = models.JSONField()
    stream_pos = models.BigIntegerField()

    objects = ToDeviceMessageQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["device", "stream_pos"], name="to_device_by_device")]


class ToDeviceTransaction(models.Model):
    """A sendToDevice transaction already done: a replay of ``(device, txn_id)`` sends nothing."""

    device = models.ForeignKey("accounts.Device", on_delete=models.CASCADE, related_name="+")
    txn_id = models.CharField(max_length=255)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "txn_id"], name="to_device_txn_unique")]


class KeyBackupVersion(models.Model):
    """A server-side key backup (spec "Server-side key backups"); its version is the row's ID. The
    newest one not deleted is the user's current backup. ``etag`` changes whenever its keys do."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    algorithm = models.CharField(max_length=255)
    auth_data = models.JSONField()
    etag = models.BigIntegerField(default=0)
    deleted = models.BooleanField(default=False)


class BackedUpRoomKey(models.Model):
    """One megolm session key in a backup (``KeyBackupData``: first_message_index, forwarded_count,
    is_verified, session_data)."""

    backup = models.ForeignKey(KeyBackupVersion, on_delete=models.CASCADE, related_name="+")
    room_id = models.CharField(max_length=255)
    session_id = models.CharField(max_length=255)
    data = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["backup", "room_id", "session_id"], name="backed_up_room_key_unique"
            )
        ]
