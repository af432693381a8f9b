package sql

import (
	"context"

	"github.com/pvpipe/pvauth/selfservice/password"
)

var _ password.FlowPersister = (*Persister)(nil)

const loginFlowColumns = "id, token_hash, identity_id, pending_totp_secret, failed_attempts, state, remember_me, expires_at, created_at"

func (p *Persister) CreateLoginFlow(ctx context.Context, f *password.Flow) error {
	f.CreatedAt = now()
	f.ExpiresAt = dbExpiry(f.ExpiresAt)
	return p.Connection(ctx).RawQuery("INSERT INTO login_flows ("+loginFlowColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		f.ID, f.TokenHash, f.IdentityID, f.PendingTOTPSecret, f.FailedAttempts, f.State, f.RememberMe, f.ExpiresAt, f.CreatedAt).Exec()
}

func (p *Persister) GetLoginFlowByTokenHash(ctx context.Context, tokenHash string) (*password.Flow, error) {
	var f password.Flow
	err := p.Connection(ctx).RawQuery("SELECT "+loginFlowColumns+" FROM login_flows WHERE token_hash = ?", tokenHash).First(&f)
	if IsNotFound(err) {
		return nil, password.ErrFlowNotFound
	}
	if err != nil {
		return nil, err
	}
	f.ExpiresAt, f.CreatedAt = f.ExpiresAt.UTC(), f.CreatedAt.UTC()
	return &f, nil
}

func (p *Persister) SetLoginFlowTOTPSecret(ctx context.Context, id, encSecret string) error {
	return p.Connection(ctx).RawQuery("UPDATE login_flows SET pending_totp_secret = ? WHERE id = ? AND state = ?", encSecret, id, password.FlowPending).Exec()
}

func (p *Persister) ReserveLoginFlowAttempt(ctx context.Context, id string) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE login_flows SET failed_attempts = failed_attempts + 1 WHERE id = ? AND state = ? AND failed_attempts < ?",
		id, password.FlowPending, password.MaxOTPFailures).ExecWithCount()
	return n == 1, err
}

func (p *Persister) CompleteLoginFlow(ctx context.Context, id string) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE login_flows SET state = ?, failed_attempts = failed_attempts - 1 WHERE id = ? AND state = ? AND failed_attempts > 0",
		password.FlowCompleted, id, password.FlowPending).ExecWithCount()
	return n == 1, err
}
