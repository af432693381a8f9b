package sql

import (
	"context"
	"time"

	"github.com/pvpipe/pvauth/selfservice/confirmation"
)

var _ confirmation.Persister = (*Persister)(nil)

const confirmationColumns = "id, identity_id, action_type, action_payload, challenge_hash, status, device_id, reason, expires_at, created_at, updated_at"

func (p *Persister) CreateConfirmation(ctx context.Context, c *confirmation.Confirmation) error {
	c.CreatedAt, c.UpdatedAt = now(), now()
	c.ExpiresAt = dbExpiry(c.ExpiresAt)
	return p.Connection(ctx).RawQuery("INSERT INTO confirmations ("+confirmationColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.IdentityID, c.ActionType, c.ActionPayload, c.ChallengeHash, c.Status, c.DeviceID, c.Reason,
		c.ExpiresAt, c.CreatedAt, c.UpdatedAt).Exec()
}

func (p *Persister) GetConfirmation(ctx context.Context, id string) (*confirmation.Confirmation, error) {
	var c confirmation.Confirmation
	err := p.Connection(ctx).RawQuery("SELECT "+confirmationColumns+" FROM confirmations WHERE id = ?", id).First(&c)
	if IsNotFound(err) {
		return nil, confirmation.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	c.ExpiresAt, c.CreatedAt, c.UpdatedAt = c.ExpiresAt.UTC(), c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return &c, nil
}

func (p *Persister) DecideConfirmation(ctx context.Context, id, status string, deviceID, reason *string, at time.Time) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE confirmations SET status = ?, device_id = ?, reason = ?, updated_at = ? WHERE id = ? AND status = ? AND expires_at > ?",
		status, deviceID, reason, dbTime(at), id, confirmation.StatusPending, dbTime(at)).ExecWithCount()
	return n == 1, err
}
