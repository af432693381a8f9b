package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/selfservice/biometric"
)

// RunDevices checks devicekey.Persister: one active device per fingerprint (free again
// once deactivated), lookups, lists oldest first, changes only by the owner of an
// active device.
func RunDevices(t *testing.T, newStore func(t *testing.T) DeviceStore) {
	run(t, newStore, deviceFingerprints, deviceOwner)
}

// RunDeviceChallenges checks biometric.Persister's challenges: a login challenge only
// for an active device, read with its device and owner, consumed once, not after expiry
// nor once its device is gone.
func RunDeviceChallenges(t *testing.T, newStore func(t *testing.T) DeviceStore) {
	run(t, newStore, challengeRegister, challengeLogin)
}

func newDevice(t *testing.T, p devicekey.Persister, owner int64, fingerprint string) *devicekey.Device {
	t.Helper()
	d := &devicekey.Device{ID: uuid.NewString(), UserID: owner, DeviceName: "phone", DeviceType: "ios",
		DeviceFingerprint: fingerprint, KeyAlgorithm: "ES256", PublicKey: "pk"}
	must(t, p.CreateDevice(context.Background(), d))
	return d
}

func deviceFingerprints(t *testing.T, p DeviceStore) {
	ctx := context.Background()
	owner := newIdentity(t, p)
	d := newDevice(t, p, owner, "fp")
	if !d.IsActive {
		t.Fatalf("a new device is active: %+v", d)
	}
	wantErr(t, "an active fingerprint again", p.CreateDevice(ctx, &devicekey.Device{ID: uuid.NewString(), UserID: owner,
		DeviceFingerprint: "fp", KeyAlgorithm: "ES256", PublicKey: "pk"}), devicekey.ErrFingerprintTaken)
	got, err := p.FindActiveDeviceByFingerprint(ctx, "fp")
	if err != nil || got.ID != d.ID || got.UserID != owner {
		t.Fatalf("by fingerprint: %+v %v", got, err)
	}
	ok, err := p.DeactivateDevice(ctx, owner, d.ID)
	wantOK(t, "deactivate", ok, err, true)
	_, err = p.FindActiveDeviceByFingerprint(ctx, "fp")
	wantErr(t, "fingerprint of an inactive device", err, devicekey.ErrDeviceNotFound)
	again := newDevice(t, p, owner, "fp")
	all, err := p.ListDevices(ctx, owner, false)
	must(t, err)
	active, err := p.ListDevices(ctx, owner, true)
	must(t, err)
	wantOrdered(t, "all devices", all, func(d devicekey.Device) (time.Time, string) { return d.CreatedAt, d.ID }, d.ID, again.ID)
	if len(active) != 1 || active[0].ID != again.ID {
		t.Fatalf("active devices: %+v", active)
	}
}

func deviceOwner(t *testing.T, p DeviceStore) {
	ctx := context.Background()
	owner, other := newIdentity(t, p), newIdentity(t, p)
	d := newDevice(t, p, owner, "fp-"+uuid.NewString())
	_, err := p.GetDevice(ctx, "nope")
	wantErr(t, "unknown device", err, devicekey.ErrDeviceNotFound)
	ok, err := p.UpdateDeviceFCMToken(ctx, other, d.ID, ptr("tok"))
	wantOK(t, "token by another identity", ok, err, false)
	ok, err = p.UpdateDeviceFCMToken(ctx, owner, d.ID, ptr("tok"))
	wantOK(t, "token", ok, err, true)
	at := time.Now()
	must(t, p.TouchDevice(ctx, d.ID, at))
	got, err := p.GetDevice(ctx, d.ID)
	if err != nil || got.FCMToken == nil || *got.FCMToken != "tok" || got.LastUsedAt == nil {
		t.Fatalf("token and use: %+v %v", got, err)
	}
	wantUTC(t, "last_used_at", *got.LastUsedAt, at)
	ok, err = p.DeactivateDevice(ctx, other, d.ID)
	wantOK(t, "deactivate by another identity", ok, err, false)
	ok, err = p.DeactivateDevice(ctx, owner, d.ID)
	wantOK(t, "deactivate", ok, err, true)
	if got, _ = p.GetDevice(ctx, d.ID); got.IsActive || got.FCMToken != nil {
		t.Fatalf("a deactivated device keeps no push token: %+v", got)
	}
	ok, err = p.UpdateDeviceFCMToken(ctx, owner, d.ID, ptr("tok2"))
	wantOK(t, "token of an inactive device", ok, err, false)
}

func challengeRegister(t *testing.T, p DeviceStore) {
	ctx := context.Background()
	now := time.Now()
	c := &biometric.Challenge{ID: uuid.NewString(), Kind: biometric.ChallengeRegister, IdentityID: newIdentity(t, p),
		DeviceID: uuid.NewString(), ChallengeHash: "h", DeviceName: ptr("phone"), ExpiresAt: now.Add(time.Minute)}
	must(t, p.CreateDeviceChallenge(ctx, c))
	got, err := p.GetDeviceChallenge(ctx, c.ID)
	if err != nil || got.Kind != biometric.ChallengeRegister || *got.DeviceName != "phone" || got.UsedAt != nil {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	_, err = p.GetDeviceChallenge(ctx, "nope")
	wantErr(t, "unknown", err, biometric.ErrChallengeNotFound)
	ok, err := p.ConsumeDeviceChallenge(ctx, c.ID, now.Add(2*time.Minute))
	wantOK(t, "consume after expiry", ok, err, false)
	ok, err = p.ConsumeDeviceChallenge(ctx, c.ID, now)
	wantOK(t, "consume", ok, err, true)
	ok, err = p.ConsumeDeviceChallenge(ctx, c.ID, now)
	wantOK(t, "consume again", ok, err, false)
}

func challengeLogin(t *testing.T, p DeviceStore) {
	ctx := context.Background()
	now := time.Now()
	owner := newIdentity(t, p)
	d := newDevice(t, p, owner, "fp-login")
	newLogin := func() *biometric.Challenge {
		c := &biometric.Challenge{ID: uuid.NewString(), ChallengeHash: "h", ExpiresAt: now.Add(time.Minute)}
		ok, err := p.CreateLoginChallenge(ctx, "fp-login", c)
		wantOK(t, "login challenge of an active device", ok, err, true)
		return c
	}
	c := newLogin()
	got, dev, o, err := p.GetLoginChallenge(ctx, c.ID)
	must(t, err)
	if got.Kind != biometric.ChallengeLogin || got.DeviceID != d.ID || got.IdentityID != owner || dev.ID != d.ID || o.Email == "" {
		t.Fatalf("with device and owner: %+v %+v %+v", got, dev, o)
	}
	_, _, _, err = p.GetLoginChallenge(ctx, "nope")
	wantErr(t, "unknown", err, biometric.ErrChallengeNotFound)
	ok, err := p.CreateLoginChallenge(ctx, "fp-unknown", &biometric.Challenge{ID: uuid.NewString(), ChallengeHash: "h", ExpiresAt: now.Add(time.Minute)})
	wantOK(t, "login challenge of no device", ok, err, false)
	ok, err = p.ConsumeDeviceChallenge(ctx, c.ID, now)
	wantOK(t, "consume", ok, err, true)
	pending := newLogin()
	ok, err = p.DeactivateDevice(ctx, owner, d.ID)
	wantOK(t, "deactivate", ok, err, true)
	ok, err = p.ConsumeDeviceChallenge(ctx, pending.ID, now)
	wantOK(t, "consume once the device is gone", ok, err, false)
}
