package session

import (
	"context"
	"errors"

	"github.com/pvpipe/pvauth/audit"
)

// RefreshTokens rotates a refresh token and writes its audit event: the one refresh of
// /refresh (password) and /mobile/refresh (biometric). The event of a rotation, and of a
// reuse that revokes the family, commits in the transaction of that change; a refusal
// that changes nothing is logged in the background.
func RefreshTokens(ctx context.Context, d interface {
	TokensProvider
	audit.LoggerProvider
}, refreshToken string) (*TokenSet, error) {
	reuseLogged := false
	ts, s, err := d.Tokens().Refresh(ctx, refreshToken, func(ctx context.Context, o RefreshOutcome) error {
		var uid *int64
		if o.IdentityID != 0 {
			uid = audit.Int64(o.IdentityID)
		}
		if o.Reused {
			reuseLogged = true
			return d.AuditLogger().LogTx(ctx, audit.Event{Type: audit.TypeTokenReuse, UserID: uid, Result: audit.ResultFailure,
				Reason: "refresh token reuse: family revoked", Metadata: map[string]any{"sessionId": o.FamilyID}})
		}
		ev := audit.Event{Type: audit.TypeTokenRefresh, UserID: uid, Metadata: map[string]any{"sessionId": o.FamilyID}}
		if o.DeviceID != "" {
			did := o.DeviceID
			ev.DeviceID = &did
		}
		return d.AuditLogger().LogTx(ctx, ev)
	})
	if err != nil {
		reused := errors.Is(err, ErrRefreshReused)
		if reuseLogged && reused {
			return nil, err // the revocation's event committed with it
		}
		// On failure s, when not nil, names the token's owner (read before a reuse deletes it).
		var owner *int64
		if s != nil && s.IdentityID != 0 {
			owner = audit.Int64(s.IdentityID)
		}
		ev := audit.Event{Type: audit.TypeTokenRefresh, UserID: owner, Result: audit.ResultFailure, Reason: "invalid"}
		if reused {
			ev.Type, ev.Reason = audit.TypeTokenReuse, "refresh token reuse: family revoked"
		}
		d.AuditLogger().Log(ctx, ev)
		return nil, err
	}
	return ts, nil
}
