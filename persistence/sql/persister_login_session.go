package sql

import (
	"context"
	"strconv"

	"github.com/pvpipe/pvauth/oauth2"
	"github.com/pvpipe/pvauth/oauth2/provider"
)

const loginSessionColumns = "id, token_hash, identity_id, amr, auth_time, expires_at, created_at"

func (p *Persister) CreateLoginSession(ctx context.Context, s *oauth2.LoginSession) error {
	s.CreatedAt, s.AuthTime, s.ExpiresAt = now(), dbTime(s.AuthTime), dbExpiry(s.ExpiresAt)
	return p.insertRow(ctx, "login_sessions", loginSessionColumns,
		s.ID, s.TokenHash, s.IdentityID, s.AMR, s.AuthTime, s.ExpiresAt, s.CreatedAt)
}

func (p *Persister) GetLoginSession(ctx context.Context, column, value string) (*oauth2.LoginSession, error) {
	if column != "id" && column != "token_hash" {
		return nil, oauth2.ErrLoginSessionNotFound
	}
	return getRow(p.Connection(ctx), oauth2.ErrLoginSessionNotFound, func(s *oauth2.LoginSession) {
		s.AuthTime, s.ExpiresAt, s.CreatedAt = s.AuthTime.UTC(), s.ExpiresAt.UTC(), s.CreatedAt.UTC()
	}, "SELECT "+loginSessionColumns+" FROM login_sessions WHERE "+column+" = ?", value)
}

func (p *Persister) AddLoginSessionFamily(ctx context.Context, sessionID, requestID string) (bool, error) {
	// Only while the session lives: a logout that came first ends it, and with it this
	// request (the caller refuses the code).
	n, err := p.Connection(ctx).RawQuery("INSERT INTO login_session_families (login_session_id, request_id) SELECT id, ? FROM login_sessions WHERE id = ?",
		requestID, sessionID).ExecWithCount()
	return n == 1, err
}

func (p *Persister) EndLoginSession(ctx context.Context, id string) (bool, error) {
	ended := false
	err := p.Transaction(ctx, func(ctx context.Context) error {
		c := p.Connection(ctx)
		var identityID int64
		if err := c.RawQuery("SELECT identity_id FROM login_sessions WHERE id = ?", id).First(&identityID); IsNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		// The identity's lock, as every revocation takes it: a code exchange or refresh in
		// flight commits first, and its tokens are seen below.
		if err := p.lockSubject(ctx, strconv.FormatInt(identityID, 10)); err != nil {
			return err
		}
		var families []string
		if err := c.RawQuery("SELECT request_id FROM login_session_families WHERE login_session_id = ?", id).All(&families); err != nil {
			return err
		}
		for _, f := range families {
			if err := p.RevokeFamily(ctx, f); err != nil {
				return err
			}
			if _, err := p.DeactivateFamily(ctx, provider.KindCode, f); err != nil {
				return err
			}
		}
		n, err := c.RawQuery("DELETE FROM login_sessions WHERE id = ?", id).ExecWithCount()
		ended = n == 1
		return err
	})
	return ended, err
}
