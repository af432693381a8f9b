package provider

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
	"github.com/ory/fosite/storage"

	"github.com/pvpipe/pvauth/x"
)

// ClientGetter finds registered OAuth2 clients (fosite.ErrNotFound when unknown).
type ClientGetter interface {
	GetClient(ctx context.Context, id string) (fosite.Client, error)
}

// Store adapts TokenPersister rows to fosite's storage interfaces. First-party clients
// (the self-service grant) live in memory; others come from the ClientGetter.
type Store struct {
	p        TokenPersister
	internal map[string]fosite.Client
	clients  ClientGetter
}

var (
	_ fosite.Storage                     = (*Store)(nil)
	_ pkce.PKCERequestStorage            = (*Store)(nil)
	_ openid.OpenIDConnectRequestStorage = (*Store)(nil)
	_ oauth2.CoreStorage                 = (*Store)(nil)
	_ oauth2.TokenRevocationStorage      = (*Store)(nil)
	_ storage.Transactional              = (*Store)(nil)
)

// NewStore builds the fosite storage.
func NewStore(p TokenPersister, internal []fosite.Client, clients ClientGetter) *Store {
	m := make(map[string]fosite.Client, len(internal))
	for _, c := range internal {
		m[c.GetID()] = c
	}
	return &Store{p: p, internal: m, clients: clients}
}

func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	if c, ok := s.internal[id]; ok {
		return c, nil
	}
	if s.clients == nil {
		return nil, fosite.ErrNotFound
	}
	return s.clients.GetClient(ctx, id)
}

// JWT client assertions are not accepted (no private_key_jwt clients), so there is no
// jti to remember.
func (s *Store) ClientAssertionJWTValid(context.Context, string) error { return nil }

func (s *Store) SetClientAssertionJWT(context.Context, string, time.Time) error {
	return nil
}

func (s *Store) BeginTX(ctx context.Context) (context.Context, error) { return s.p.BeginTX(ctx) }
func (s *Store) Rollback(ctx context.Context) error                   { return s.p.Rollback(ctx) }

// RefreshOutcome is what a refresh transaction did, for its audit event: the session of
// the rotated family, or (Reused) the family revoked because a rotated token came back.
type RefreshOutcome struct {
	Reused     bool
	IdentityID int64  // the token's owner (0 for a subject that is no identity)
	FamilyID   string // the session: the token family's request id
	DeviceID   string // the device the session signed in with (not on reuse)
}

// commitHook travels in the context of a refresh (WithCommitHook): the store notes what
// fosite's transaction did, and Commit runs fn in it before committing, so that the
// audit event of a rotation or of a reuse revocation commits with it.
type commitHook struct {
	fn         func(ctx context.Context, o RefreshOutcome) error
	identityID int64
	outcome    RefreshOutcome
	noted      bool
}

type commitHookKey struct{}

// WithCommitHook makes the refresh run with ctx call fn in the transaction of its
// rotation, or of the reuse revocation, before it commits; fn's error undoes the
// transaction. identityID is the token's owner, for the outcome.
func WithCommitHook(ctx context.Context, identityID int64, fn func(ctx context.Context, o RefreshOutcome) error) context.Context {
	return context.WithValue(ctx, commitHookKey{}, &commitHook{fn: fn, identityID: identityID})
}

func hookOf(ctx context.Context) *commitHook {
	h, _ := ctx.Value(commitHookKey{}).(*commitHook)
	return h
}

// Commit runs the context's commit hook (if fosite's transaction did something it
// records), then commits; the hook's error rolls back instead.
func (s *Store) Commit(ctx context.Context) error {
	if h := hookOf(ctx); h != nil && h.noted {
		h.noted = false
		if err := h.fn(ctx, h.outcome); err != nil {
			_ = s.p.Rollback(ctx)
			return err
		}
	}
	return s.p.Commit(ctx)
}

// passkeyKey carries the passkey of WithPasskey to the rows of the new session.
type passkeyKey struct{}

// WithPasskey names the passkey a new self-service session signs in with: its token rows
// keep it (and rotations copy it), so deleting the passkey ends the session.
func WithPasskey(ctx context.Context, passkeyID string) context.Context {
	return context.WithValue(ctx, passkeyKey{}, passkeyID)
}

func (s *Store) toRow(ctx context.Context, sig string, r fosite.Requester, tt fosite.TokenType) (*TokenRow, error) {
	sess, _ := r.GetSession().(*Session)
	raw, err := json.Marshal(r.GetSession())
	if err != nil {
		return nil, err
	}
	row := &TokenRow{
		Signature:         x.SHA256Hex(sig),
		RequestID:         r.GetID(),
		RequestedAt:       r.GetRequestedAt(),
		ClientID:          r.GetClient().GetID(),
		Scope:             strings.Join(r.GetRequestedScopes(), " "),
		GrantedScope:      strings.Join(r.GetGrantedScopes(), " "),
		RequestedAudience: strings.Join(r.GetRequestedAudience(), " "),
		GrantedAudience:   strings.Join(r.GetGrantedAudience(), " "),
		Form:              r.GetRequestForm().Encode(),
		SessionData:       string(raw),
		Active:            true,
	}
	if r.GetRequestedAt().IsZero() {
		row.RequestedAt = time.Now().UTC()
	}
	if sess != nil {
		row.Subject = sess.Subject
		if sess.DeviceID != "" {
			d := sess.DeviceID
			row.DeviceID = &d
		}
		// The passkey of a passkey session: given at login, copied from the family on
		// rotation.
		if pk, ok := ctx.Value(passkeyKey{}).(string); ok && pk != "" {
			row.PasskeyID = &pk
		} else if slices.Contains(sess.AMR, AMRWebAuthn) {
			row.PasskeyFromFamily = true
		}
	}
	row.ExpiresAt = expiresAt(r, tt)
	return row, nil
}

// expiresAt is when r's token of type tt expires, nil when its session does not say.
func expiresAt(r fosite.Requester, tt fosite.TokenType) *time.Time {
	sess, ok := r.GetSession().(*Session)
	if !ok || sess == nil {
		return nil
	}
	if exp := sess.GetExpiresAt(tt); !exp.IsZero() {
		return &exp
	}
	return nil
}

// tokenPair builds the rows of an access token and of the refresh token issued with it,
// serializing the request once.
func (s *Store) tokenPair(ctx context.Context, atSig, rtSig string, r fosite.Requester) (at, rt *TokenRow, err error) {
	if at, err = s.toRow(ctx, atSig, r, fosite.AccessToken); err != nil {
		return nil, nil, err
	}
	refresh := *at
	refresh.Signature = x.SHA256Hex(rtSig)
	refresh.ExpiresAt = expiresAt(r, fosite.RefreshToken)
	refresh.AccessSignature = &at.Signature
	return at, &refresh, nil
}

// StoreIssued stores the tokens a grant handler minted for r — the access token, and the
// refresh token when rtSig is not empty — in one write transaction (shared on SQLite
// with concurrent logins: group commit), after inTx when it is set. inTx's error is
// returned as is and stores nothing; a storage error is a fosite server error.
// Serialising happens before the transaction: on SQLite it holds the only connection.
// The request is sanitized first, as fosite's own handlers do: its form is the token
// request's, with the client's secret (client_secret_post) and the grant's own codes.
func (s *Store) StoreIssued(ctx context.Context, atSig, rtSig string, r fosite.Requester, inTx func(ctx context.Context) error) error {
	atRow, rtRow, err := s.tokenPair(ctx, atSig, rtSig, r.Sanitize(nil))
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	return s.p.GroupTransaction(ctx, func(ctx context.Context) error {
		if inTx != nil {
			if err := inTx(ctx); err != nil {
				return err
			}
		}
		if err := s.p.InsertToken(ctx, KindAccess, atRow); err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		if rtSig == "" {
			return nil
		}
		if err := s.p.InsertToken(ctx, KindRefresh, rtRow); err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		return nil
	})
}

// SubjectActive reports, inside a token-minting transaction, whether the identity may
// still get tokens, holding its shared lock (see TokenPersister).
func (s *Store) SubjectActive(ctx context.Context, identityID int64) (bool, error) {
	return s.p.SubjectActive(ctx, identityID)
}

func (s *Store) toRequest(ctx context.Context, row *TokenRow, session fosite.Session) (*fosite.Request, error) {
	c, err := s.GetClient(ctx, row.ClientID)
	if err != nil {
		return nil, err
	}
	if session == nil {
		session = &Session{}
	}
	if err := json.Unmarshal([]byte(row.SessionData), session); err != nil {
		return nil, err
	}
	form, _ := url.ParseQuery(row.Form)
	return &fosite.Request{
		ID:                row.RequestID,
		RequestedAt:       row.RequestedAt,
		Client:            c,
		RequestedScope:    fields(row.Scope),
		GrantedScope:      fields(row.GrantedScope),
		Form:              form,
		Session:           session,
		RequestedAudience: fields(row.RequestedAudience),
		GrantedAudience:   fields(row.GrantedAudience),
	}, nil
}

func fields(s string) fosite.Arguments {
	if s == "" {
		return fosite.Arguments{}
	}
	return fosite.Arguments(strings.Fields(s))
}

func (s *Store) create(ctx context.Context, kind, sig string, r fosite.Requester, tt fosite.TokenType) error {
	row, err := s.toRow(ctx, sig, r, tt)
	if err != nil {
		return err
	}
	return s.p.InsertToken(ctx, kind, row)
}

// readRowKey carries a token row its caller has just read (WithRead), so that fosite's
// own read of it outside a transaction does not go to the database again.
type readRowKey struct{}

type readRow struct {
	kind string
	row  *TokenRow
	used atomic.Bool
}

// WithRead hands fosite the row of kind that the caller read outside any transaction,
// for its one read of the same token in the request that ctx carries. Reading it twice
// gains nothing: neither read decides, the conditional update of the rotation does.
func WithRead(ctx context.Context, kind string, row *TokenRow) context.Context {
	return context.WithValue(ctx, readRowKey{}, &readRow{kind: kind, row: row})
}

// get loads a token; an inactive one comes back with the request and errInactive, as
// fosite expects for refresh-reuse detection and used authorization codes.
func (s *Store) get(ctx context.Context, kind, sig string, session fosite.Session, errInactive error) (fosite.Requester, error) {
	hash := x.SHA256Hex(sig)
	var row *TokenRow
	var err error
	if r, _ := ctx.Value(readRowKey{}).(*readRow); r != nil && r.kind == kind && r.row.Signature == hash &&
		r.used.CompareAndSwap(false, true) {
		row = r.row
	} else {
		row, err = s.p.GetToken(ctx, kind, hash)
	}
	if errors.Is(err, ErrTokenNotFound) {
		return nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	req, err := s.toRequest(ctx, row, session)
	if err != nil {
		return nil, err
	}
	if !row.Active {
		return req, errInactive
	}
	return req, nil
}

func (s *Store) delete(ctx context.Context, kind, sig string) error {
	return s.p.DeleteToken(ctx, kind, x.SHA256Hex(sig))
}

func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.create(ctx, KindCode, code, r, fosite.AuthorizeCode)
}

func (s *Store) GetAuthorizeCodeSession(ctx context.Context, code string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, KindCode, code, session, fosite.ErrInvalidatedAuthorizeCode)
}

func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	ok, err := s.p.DeactivateToken(ctx, KindCode, x.SHA256Hex(code))
	if err != nil {
		return err
	}
	if !ok {
		// Another exchange of the same code won the race.
		return fosite.ErrSerializationFailure
	}
	return nil
}

func (s *Store) CreateAccessTokenSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.create(ctx, KindAccess, sig, r, fosite.AccessToken)
}

func (s *Store) GetAccessTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, KindAccess, sig, session, fosite.ErrInactiveToken)
}

func (s *Store) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	return s.delete(ctx, KindAccess, sig)
}

func (s *Store) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, r fosite.Requester) error {
	row, err := s.toRow(ctx, sig, r, fosite.RefreshToken)
	if err != nil {
		return err
	}
	if accessSig != "" {
		h := x.SHA256Hex(accessSig)
		row.AccessSignature = &h
	}
	if err := s.p.InsertToken(ctx, KindRefresh, row); err != nil {
		return err
	}
	if h := hookOf(ctx); h != nil {
		h.outcome, h.noted = RefreshOutcome{IdentityID: h.identityID, FamilyID: r.GetID()}, true
		if sess, _ := r.GetSession().(*Session); sess != nil {
			h.outcome.DeviceID = sess.DeviceID
		}
	}
	return nil
}

func (s *Store) GetRefreshTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, KindRefresh, sig, session, fosite.ErrInactiveToken)
}

func (s *Store) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.delete(ctx, KindRefresh, sig)
}

// RotateRefreshToken retires the presented refresh token with one conditional update:
// of concurrent refreshes with the same token exactly one gets past this point. Access
// tokens issued before stay valid until they expire (clients keep using the token they
// hold while refreshing); reuse of a rotated token, logout and revocation end them all.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	ok, err := s.p.DeactivateToken(ctx, KindRefresh, x.SHA256Hex(sig))
	if errors.Is(err, ErrSubjectInactive) {
		if w, _ := ctx.Value(rotationWatchKey{}).(*rotationWatch); w != nil {
			w.inactive = true
		}
		return fosite.ErrNotFound.WithWrap(err)
	}
	if err != nil {
		return err
	}
	if !ok {
		if w, _ := ctx.Value(rotationWatchKey{}).(*rotationWatch); w != nil {
			w.lost = requestID
		}
		return fosite.ErrSerializationFailure
	}
	return nil
}

// A refresh that loses the rotation race has presented a token that another request
// rotated (committed: the conditional update waited for it), which is reuse like any
// later replay: two parties hold one refresh token, and either may be a thief who won.
// fosite turns the loss into a plain invalid_request and rolls its transaction back, so
// the loser is recorded here and the family revoked after (RevokeLostRotation).
type rotationWatchKey struct{}

type rotationWatch struct {
	lost     string
	inactive bool
}

// WatchRotation returns a context whose refresh records a lost rotation race, and the
// function that, after the refresh failed, revokes the family of the token it lost
// (outside fosite's rolled-back transaction); it reports whether it did. A refresh
// refused because its identity is no longer active reports ErrSubjectInactive.
func (s *Store) WatchRotation(ctx context.Context) (context.Context, func(context.Context) (bool, error)) {
	w := &rotationWatch{}
	return context.WithValue(ctx, rotationWatchKey{}, w), func(ctx context.Context) (bool, error) {
		if w.inactive {
			return false, ErrSubjectInactive
		}
		if w.lost == "" {
			return false, nil
		}
		return true, s.p.RevokeFamily(ctx, w.lost)
	}
}

// RevokeRefreshToken and RevokeAccessToken (fosite's reuse detection and RFC 7009
// revocation) both end the whole family, ordered against a rotation in flight
// (TokenPersister.RevokeFamily): one family is one session.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	if err := s.p.RevokeFamily(ctx, requestID); err != nil {
		return err
	}
	// Only reuse detection revokes a refresh token during a refresh.
	if h := hookOf(ctx); h != nil {
		h.outcome, h.noted = RefreshOutcome{Reused: true, IdentityID: h.identityID, FamilyID: requestID}, true
	}
	return nil
}

func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.p.RevokeFamily(ctx, requestID)
}

func (s *Store) CreatePKCERequestSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.create(ctx, KindPKCE, sig, r, fosite.AuthorizeCode)
}

func (s *Store) GetPKCERequestSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, KindPKCE, sig, session, fosite.ErrNotFound)
}

func (s *Store) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.delete(ctx, KindPKCE, sig)
}

func (s *Store) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.create(ctx, KindOIDC, code, r, fosite.AuthorizeCode)
}

func (s *Store) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	return s.get(ctx, KindOIDC, code, r.GetSession(), fosite.ErrNotFound)
}

func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.delete(ctx, KindOIDC, code)
}
