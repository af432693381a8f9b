package session

import (
	"context"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/x"
)

// RefreshTokens rotates a refresh token and writes its audit event: the one refresh of
// /refresh (password) and /mobile/refresh (biometric).
func RefreshTokens(ctx context.Context, d interface {
	TokensProvider
	audit.LoggerProvider
}, refreshToken string) (*TokenSet, error) {
	ts, s, err := d.Tokens().Refresh(ctx, refreshToken)
	if err != nil {
		// On failure s, when not nil, names the token's owner (read before a reuse deletes it).
		var owner *int64
		if s != nil && s.IdentityID != 0 {
			owner = audit.Int64(s.IdentityID)
		}
		ev := audit.Event{Type: audit.TypeTokenRefresh, UserID: owner, Result: audit.ResultFailure, Reason: "invalid"}
		if xe := x.AsError(err); xe.Message == ErrRefreshReused.Message {
			ev.Type, ev.Reason = audit.TypeTokenReuse, "refresh token reuse: family revoked"
		}
		d.AuditLogger().Log(ctx, ev)
		return nil, err
	}
	ev := audit.Event{Type: audit.TypeTokenRefresh, UserID: audit.Int64(s.IdentityID), Metadata: map[string]any{"sessionId": s.SessionID}}
	if s.DeviceID != "" {
		did := s.DeviceID
		ev.DeviceID = &did
	}
	d.AuditLogger().Log(ctx, ev)
	return ts, nil
}
