package sql

import (
	"context"
	"time"

	"github.com/pvpipe/pvauth/oauth2"
)

const cibaColumns = "id, confirmation_id, client_id, identity_id, scope, poll_interval, last_polled_at, expires_at, created_at"

func (p *Persister) CreateCIBARequest(ctx context.Context, r *oauth2.CIBARequest) error {
	r.CreatedAt = now()
	r.ExpiresAt = dbExpiry(r.ExpiresAt)
	return p.Connection(ctx).RawQuery("INSERT INTO oauth2_ciba_requests ("+cibaColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		r.ID, r.ConfirmationID, r.ClientID, r.IdentityID, r.Scope, r.Interval, r.LastPolledAt, r.ExpiresAt, r.CreatedAt).Exec()
}

func (p *Persister) GetCIBARequest(ctx context.Context, id string) (*oauth2.CIBARequest, error) {
	var r oauth2.CIBARequest
	err := p.Connection(ctx).RawQuery("SELECT "+cibaColumns+" FROM oauth2_ciba_requests WHERE id = ?", id).First(&r)
	if IsNotFound(err) {
		return nil, oauth2.ErrCIBARequestNotFound
	}
	if err != nil {
		return nil, err
	}
	r.ExpiresAt, r.CreatedAt, r.LastPolledAt = r.ExpiresAt.UTC(), r.CreatedAt.UTC(), utcPtr(r.LastPolledAt)
	return &r, nil
}

func (p *Persister) MarkCIBAPolled(ctx context.Context, id string, at time.Time) (bool, error) {
	t := dbTime(at)
	// The interval is whole seconds; the previous poll must be at least that long ago.
	n, err := p.Connection(ctx).RawQuery("UPDATE oauth2_ciba_requests SET last_polled_at = ? WHERE id = ? AND (last_polled_at IS NULL OR last_polled_at <= ?)",
		t, id, t.Add(-oauth2.CIBAInterval)).ExecWithCount()
	return n == 1, err
}
