package sql

import (
	"context"
	"time"

	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/selfservice/biometric"
)

const challengeColumns = "id, kind, identity_id, device_id, challenge_hash, device_name, device_type, device_fingerprint, key_algorithm, public_key, used_at, expires_at, created_at"

func (p *Persister) CreateDeviceChallenge(ctx context.Context, c *biometric.Challenge) error {
	c.CreatedAt, c.ExpiresAt = now(), dbExpiry(c.ExpiresAt)
	return p.GroupTransaction(ctx, func(ctx context.Context) error {
		_, err := p.execPrepared(ctx, "INSERT INTO device_challenges ("+challengeColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			c.ID, c.Kind, c.IdentityID, c.DeviceID, c.ChallengeHash, c.DeviceName, c.DeviceType, c.DeviceFingerprint,
			c.KeyAlgorithm, c.PublicKey, c.UsedAt, c.ExpiresAt, c.CreatedAt)
		return err
	})
}

func (p *Persister) CreateLoginChallenge(ctx context.Context, fingerprint string, c *biometric.Challenge) (ok bool, err error) {
	c.Kind, c.CreatedAt, c.ExpiresAt = biometric.ChallengeLogin, now(), dbExpiry(c.ExpiresAt)
	err = p.GroupTransaction(ctx, func(ctx context.Context) error {
		// A literal TRUE, not a parameter, lets SQLite use the partial unique index.
		n, err := p.execPrepared(ctx, `INSERT INTO device_challenges (id, kind, identity_id, device_id, challenge_hash, expires_at, created_at)
SELECT ?, ?, d.identity_id, d.id, ?, ?, ? FROM devices d WHERE d.device_fingerprint = ? AND d.is_active = TRUE`,
			c.ID, c.Kind, c.ChallengeHash, c.ExpiresAt, c.CreatedAt, fingerprint)
		ok = n == 1
		return err
	})
	return ok, err
}

func (p *Persister) GetDeviceChallenge(ctx context.Context, id string) (*biometric.Challenge, error) {
	return getRow(p.Connection(ctx), biometric.ErrChallengeNotFound, func(c *biometric.Challenge) {
		c.ExpiresAt, c.CreatedAt = c.ExpiresAt.UTC(), c.CreatedAt.UTC()
	}, "SELECT "+challengeColumns+" FROM device_challenges WHERE id = ?", id)
}

func (p *Persister) ConsumeDeviceChallenge(ctx context.Context, id string, at time.Time) (bool, error) {
	// A login challenge is good only while its device is still active: consumed inside
	// the login's token transaction, after the identity's lock, this orders the login
	// against a concurrent device deletion (which revokes after it, or refuses it here).
	const deviceLive = " AND (kind <> 'login' OR EXISTS (SELECT 1 FROM devices d WHERE d.id = device_challenges.device_id AND d.is_active = ?))"
	q := "UPDATE device_challenges SET used_at = ? WHERE id = ? AND used_at IS NULL AND expires_at > ?" + deviceLive
	if p.Dialect() == DialectPostgres {
		// The challenge is consumed inside the login's token transaction. A concurrent
		// consumer would wait for that transaction on the row lock, holding a pooled
		// connection all the while; with SKIP LOCKED it loses at once instead, which is
		// the answer it would get anyway once the holder commits.
		q = "UPDATE device_challenges SET used_at = ? WHERE id = (SELECT id FROM device_challenges WHERE id = ? AND used_at IS NULL AND expires_at > ?" +
			deviceLive + " FOR UPDATE OF device_challenges SKIP LOCKED)"
	}
	n, err := p.execPrepared(ctx, q, dbTime(at), id, dbTime(at), true)
	return n == 1, err
}

const deviceColumns = "id, identity_id, device_name, device_type, device_fingerprint, key_algorithm, public_key, fcm_token, is_active, last_used_at, created_at, updated_at"

func (p *Persister) CreateDevice(ctx context.Context, d *devicekey.Device) error {
	d.CreatedAt, d.UpdatedAt = now(), now()
	d.IsActive = true
	err := p.insertRow(ctx, "devices", deviceColumns, d.ID, d.UserID, d.DeviceName, d.DeviceType, d.DeviceFingerprint, d.KeyAlgorithm, d.PublicKey, d.FCMToken,
		d.IsActive, d.LastUsedAt, d.CreatedAt, d.UpdatedAt)
	if IsUniqueViolation(err) {
		return devicekey.ErrFingerprintTaken
	}
	return err
}

// deviceDest lists d's fields in the order of deviceColumns.
func deviceDest(d *devicekey.Device) []any {
	return []any{&d.ID, &d.UserID, &d.DeviceName, &d.DeviceType, &d.DeviceFingerprint, &d.KeyAlgorithm, &d.PublicKey,
		&d.FCMToken, &d.IsActive, &d.LastUsedAt, &d.CreatedAt, &d.UpdatedAt}
}

func (p *Persister) getDevice(ctx context.Context, where string, args ...any) (*devicekey.Device, error) {
	var d devicekey.Device
	err := p.getPrepared(ctx, "SELECT "+deviceColumns+" FROM devices WHERE "+where, args, deviceDest(&d)...)
	if IsNotFound(err) {
		return nil, devicekey.ErrDeviceNotFound
	}
	if err != nil {
		return nil, err
	}
	normalizeDevice(&d)
	return &d, nil
}

func normalizeDevice(d *devicekey.Device) {
	d.CreatedAt, d.UpdatedAt, d.LastUsedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC(), utcPtr(d.LastUsedAt)
}

func (p *Persister) GetDevice(ctx context.Context, id string) (*devicekey.Device, error) {
	return p.getDevice(ctx, "id = ?", id)
}

func (p *Persister) FindActiveDeviceByFingerprint(ctx context.Context, fp string) (*devicekey.Device, error) {
	// A literal TRUE, not a parameter, lets SQLite use the partial unique index.
	return p.getDevice(ctx, "device_fingerprint = ? AND is_active = TRUE", fp)
}

func (p *Persister) ListDevices(ctx context.Context, identityID int64, activeOnly bool) ([]devicekey.Device, error) {
	return listOwned(p.Connection(ctx), "devices", deviceColumns, identityID, activeOnly, normalizeDevice)
}

func (p *Persister) DeactivateDevice(ctx context.Context, identityID int64, id string) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE devices SET is_active = ?, fcm_token = NULL, updated_at = ? WHERE id = ? AND identity_id = ? AND is_active = ?",
		false, now(), id, identityID, true).ExecWithCount()
	return n == 1, err
}

func (p *Persister) UpdateDeviceFCMToken(ctx context.Context, identityID int64, id string, enc *string) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE devices SET fcm_token = ?, updated_at = ? WHERE id = ? AND identity_id = ? AND is_active = ?",
		enc, now(), id, identityID, true).ExecWithCount()
	return n == 1, err
}

func (p *Persister) TouchDevice(ctx context.Context, id string, at time.Time) error {
	_, err := p.execPrepared(ctx, "UPDATE devices SET last_used_at = ? WHERE id = ?", dbTime(at), id)
	return err
}

func (p *Persister) GetLoginChallenge(ctx context.Context, id string) (*biometric.Challenge, *devicekey.Device, *biometric.Owner, error) {
	var (
		c biometric.Challenge
		d devicekey.Device
		o biometric.Owner
	)
	dest := append([]any{&c.ID, &c.Kind, &c.IdentityID, &c.DeviceID, &c.ChallengeHash, &c.DeviceName, &c.DeviceType,
		&c.DeviceFingerprint, &c.KeyAlgorithm, &c.PublicKey, &c.UsedAt, &c.ExpiresAt, &c.CreatedAt}, deviceDest(&d)...)
	dest = append(dest, &o.Email, &o.State)
	err := p.getPrepared(ctx, `SELECT c.id, c.kind, c.identity_id, c.device_id, c.challenge_hash, c.device_name, c.device_type,
  c.device_fingerprint, c.key_algorithm, c.public_key, c.used_at, c.expires_at, c.created_at,
  d.id, d.identity_id, d.device_name, d.device_type, d.device_fingerprint, d.key_algorithm, d.public_key,
  d.fcm_token, d.is_active, d.last_used_at, d.created_at, d.updated_at, i.email, i.state
FROM device_challenges c JOIN devices d ON d.id = c.device_id JOIN identities i ON i.id = d.identity_id
WHERE c.id = ? AND c.kind = ?`, []any{id, biometric.ChallengeLogin}, dest...)
	if IsNotFound(err) {
		return nil, nil, nil, biometric.ErrChallengeNotFound
	}
	if err != nil {
		return nil, nil, nil, err
	}
	c.ExpiresAt, c.CreatedAt = c.ExpiresAt.UTC(), c.CreatedAt.UTC()
	normalizeDevice(&d)
	return &c, &d, &o, nil
}
