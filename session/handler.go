package session

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/x"
)

// RouteAdminSignaturesVerify checks a file-access signature.
const RouteAdminSignaturesVerify = "/admin/signatures/verify"

type handlerDeps interface {
	TokensProvider
}

// Handler serves the admin check of file-access signatures.
type Handler struct{ d handlerDeps }

// NewHandler builds the handler.
func NewHandler(d handlerDeps) *Handler { return &Handler{d: d} }

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.POST(RouteAdminSignaturesVerify, h.verifySignature)
}

type verifySignatureBody struct {
	Signature string `json:"signature"`
}

func (b *verifySignatureBody) Validate() error { return x.Required("signature", b.Signature) }

type verifySignatureResult struct {
	Valid     bool       `json:"valid"`
	UserID    *int64     `json:"userId"`
	ExpiresAt *time.Time `json:"expiresAt"`
}

func (h *Handler) verifySignature(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var b verifySignatureBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	uid, exp, err := h.d.Tokens().FileSigner().Verify(b.Signature, time.Now())
	if err != nil {
		x.WriteData(w, http.StatusOK, verifySignatureResult{Valid: false})
		return
	}
	x.WriteData(w, http.StatusOK, verifySignatureResult{Valid: true, UserID: &uid, ExpiresAt: &exp})
}

type principalKey struct{}

// PrincipalFrom returns the authenticated caller stored by RequireUser.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// WithPrincipal stores p in ctx (tests and other authenticators).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// BearerToken extracts the token of "Authorization: Bearer <token>".
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

// PendingTokenPrefix starts every pending (password-only, MFA not done) token, so full
// endpoints can answer 403 instead of 401 for them.
const PendingTokenPrefix = "pvauth_pending_"

// ErrMFAPending is the 403 for a pending token on a full endpoint.
var ErrMFAPending = x.ErrForbidden.Derive("Two-factor authentication is not complete: this token is only valid for /otp/setup and /otp/verify.")

// ErrNotSelfService is the 403 for an OAuth2 client's token on the self-service API: a
// token granted to a third-party application must not act as the user's own session.
var ErrNotSelfService = x.ErrForbidden.Derive("This endpoint needs a token from a pvauth login, not one issued to an OAuth2 client.")

// IsSelfService reports whether a principal comes from a pvauth self-service login.
func (p *Principal) IsSelfService() bool {
	return provider.IsFirstPartyClient(p.ClientID)
}

// RequireUser authenticates a bearer access token of a self-service login before calling next.
func (t *Tokens) RequireUser(next httprouter.Handle) httprouter.Handle {
	return t.requireToken(next, true)
}

// ErrStepUpRequired is the 403 for an enrolment call on a session whose login is older
// than security.step_up.max_age: a stolen access token must not add a lasting credential.
var ErrStepUpRequired = x.NewError(http.StatusForbidden, "step_up_required",
	"This action needs a recent login: sign in again (password and second factor, passkey or device key), then retry.")

// RequireRecentLogin is RequireUser for enrolment calls: the session's login (auth_time,
// which a refresh keeps) must be at most security.step_up.max_age old.
func (t *Tokens) RequireRecentLogin(next httprouter.Handle) httprouter.Handle {
	return t.RequireUser(func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		p := PrincipalFrom(r.Context())
		if !t.RecentLogin(p, time.Now()) {
			if t.hooks.OnStepUpRefused != nil {
				t.hooks.OnStepUpRefused(r.Context(), p, r.URL.Path)
			}
			x.WriteError(w, r, ErrStepUpRequired)
			return
		}
		next(w, r, ps)
	})
}

// RecentLogin reports whether p's login is recent enough to enrol an authenticator.
func (t *Tokens) RecentLogin(p *Principal, now time.Time) bool {
	if p == nil || p.AuthTime.IsZero() {
		return false
	}
	age := now.Sub(p.AuthTime)
	// auth_time has whole seconds; allow the truncation.
	return age <= t.cfg.Security.StepUp.MaxAge+time.Second
}

// RequireToken authenticates any live access token pvauth issued (userinfo).
func (t *Tokens) RequireToken(next httprouter.Handle) httprouter.Handle {
	return t.requireToken(next, false)
}

func (t *Tokens) requireToken(next httprouter.Handle, selfService bool) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		tok := BearerToken(r)
		if strings.HasPrefix(tok, PendingTokenPrefix) && t.hooks.PendingCheck != nil && t.hooks.PendingCheck(r.Context(), tok) {
			x.WriteError(w, r, ErrMFAPending)
			return
		}
		p, err := t.Authenticate(r.Context(), tok)
		if err != nil {
			x.WriteError(w, r, err)
			return
		}
		if selfService && !p.IsSelfService() {
			x.WriteError(w, r, ErrNotSelfService)
			return
		}
		next(w, r.WithContext(WithPrincipal(r.Context(), p)), ps)
	}
}

// ErrNotAUser is the 403 for tokens that do not belong to a user (client credentials).
var ErrNotAUser = x.ErrForbidden.Derive("This token does not belong to a user.")

// UserID returns the identity behind the request's authenticated principal.
func UserID(r *http.Request) (int64, error) {
	p := PrincipalFrom(r.Context())
	if p == nil || p.IdentityID == 0 {
		return 0, ErrNotAUser
	}
	return p.IdentityID, nil
}
