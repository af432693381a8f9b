package sql

import (
	"context"
	"strings"
	"time"

	"github.com/pvpipe/pvauth/selfservice/confirmation"
)

const confirmationColumns = "id, identity_id, action_type, action_payload, action_hash, challenge_hash, match_code_hash, match_failures, status, device_id, reason, approved_at, consumed_at, expires_at, created_at, updated_at"

func (p *Persister) CreateConfirmation(ctx context.Context, c *confirmation.Confirmation) error {
	c.CreatedAt, c.UpdatedAt = now(), now()
	c.ExpiresAt = dbExpiry(c.ExpiresAt)
	// Its id is random: an error is the database's, and fails the commit.
	q := p.deferrable("INSERT INTO confirmations (" + confirmationColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	_, err := p.execPrepared(ctx, q,
		c.ID, c.IdentityID, c.ActionType, c.ActionPayload, c.ActionHash, c.ChallengeHash, c.MatchCodeHash, c.MatchFailures,
		c.Status, c.DeviceID, c.Reason, c.ApprovedAt, c.ConsumedAt, c.ExpiresAt, c.CreatedAt, c.UpdatedAt)
	return err
}

func (p *Persister) GetConfirmation(ctx context.Context, id string) (*confirmation.Confirmation, error) {
	var c confirmation.Confirmation
	// A hot read (status, verify, events): a prepared statement, not pop's reflection.
	err := p.getPrepared(ctx, "SELECT "+confirmationColumns+" FROM confirmations WHERE id = ?", []any{id},
		&c.ID, &c.IdentityID, &c.ActionType, &c.ActionPayload, &c.ActionHash, &c.ChallengeHash, &c.MatchCodeHash,
		&c.MatchFailures, &c.Status, &c.DeviceID, &c.Reason, &c.ApprovedAt, &c.ConsumedAt, &c.ExpiresAt, &c.CreatedAt, &c.UpdatedAt)
	if IsNotFound(err) {
		return nil, confirmation.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	c.ExpiresAt, c.CreatedAt, c.UpdatedAt = c.ExpiresAt.UTC(), c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	c.ApprovedAt, c.ConsumedAt = utcPtr(c.ApprovedAt), utcPtr(c.ConsumedAt)
	return &c, nil
}

func (p *Persister) GetConfirmationVersions(ctx context.Context, ids []string) (map[string]confirmation.Version, error) {
	out := make(map[string]confirmation.Version, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	var rows []struct {
		ID        string    `db:"id"`
		Status    string    `db:"status"`
		UpdatedAt time.Time `db:"updated_at"`
	}
	q := "SELECT id, status, updated_at FROM confirmations WHERE id IN (?" + strings.Repeat(", ?", len(ids)-1) + ")"
	if err := p.Connection(ctx).RawQuery(q, args...).All(&rows); err != nil {
		return nil, err
	}
	for _, r := range rows {
		out[r.ID] = confirmation.Version{Status: r.Status, UpdatedAt: r.UpdatedAt.UTC()}
	}
	return out, nil
}

func (p *Persister) DecideConfirmation(ctx context.Context, id, status string, deviceID, reason *string, at time.Time) (bool, error) {
	var approvedAt *time.Time
	// An approval also needs fewer than the allowed wrong match codes: one counted
	// between the third wrong code and its rejection cannot slip an approval in.
	maxFailures := int(^uint32(0) >> 1)
	if status == confirmation.StatusApproved {
		t := dbTime(at)
		approvedAt = &t
		maxFailures = confirmation.MaxMatchFailures
	}
	n, err := p.execPrepared(ctx, "UPDATE confirmations SET status = ?, device_id = ?, reason = ?, approved_at = ?, updated_at = ? WHERE id = ? AND status = ? AND expires_at > ? AND match_failures < ?",
		status, deviceID, reason, approvedAt, dbTime(at), id, confirmation.StatusPending, dbTime(at), maxFailures)
	return n == 1, err
}

func (p *Persister) CountMatchFailure(ctx context.Context, id string, at time.Time) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE confirmations SET match_failures = match_failures + 1, updated_at = ? WHERE id = ? AND status = ? AND expires_at > ?",
		dbTime(at), id, confirmation.StatusPending, dbTime(at)).ExecWithCount()
	return n == 1, err
}

func (p *Persister) RejectOnMatchFailures(ctx context.Context, id string, max int, reason string, at time.Time) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE confirmations SET status = ?, reason = ?, updated_at = ? WHERE id = ? AND status = ? AND match_failures >= ?",
		confirmation.StatusRejected, reason, dbTime(at), id, confirmation.StatusPending, max).ExecWithCount()
	return n == 1, err
}

func (p *Persister) ConsumeConfirmation(ctx context.Context, id string, at time.Time) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE confirmations SET consumed_at = ?, updated_at = ? WHERE id = ? AND status = ? AND consumed_at IS NULL",
		dbTime(at), dbTime(at), id, confirmation.StatusApproved).ExecWithCount()
	return n == 1, err
}
