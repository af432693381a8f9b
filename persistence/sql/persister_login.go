package sql

import (
	"context"

	"github.com/pvpipe/pvauth/selfservice/password"
)

const loginFlowColumns = "id, token_hash, identity_id, pending_totp_secret, failed_attempts, state, remember_me, expires_at, created_at"

func (p *Persister) CreateLoginFlow(ctx context.Context, f *password.Flow) error {
	f.CreatedAt, f.ExpiresAt = now(), dbExpiry(f.ExpiresAt)
	return p.insertRow(ctx, "login_flows", loginFlowColumns, f.ID, f.TokenHash, f.IdentityID, f.PendingTOTPSecret, f.FailedAttempts, f.State, f.RememberMe, f.ExpiresAt, f.CreatedAt)
}

func (p *Persister) GetLoginFlowByTokenHash(ctx context.Context, tokenHash string) (*password.Flow, error) {
	return getRow(p.Connection(ctx), password.ErrFlowNotFound, func(f *password.Flow) {
		f.ExpiresAt, f.CreatedAt = f.ExpiresAt.UTC(), f.CreatedAt.UTC()
	}, "SELECT "+loginFlowColumns+" FROM login_flows WHERE token_hash = ?", tokenHash)
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
