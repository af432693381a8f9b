package oauth2

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/julienschmidt/httprouter"
	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/selfservice/confirmation"
	"github.com/pvpipe/pvauth/x"
)

// OpenID Connect Client-Initiated Backchannel Authentication (CIBA Core 1.0), poll mode.
// A backchannel request is an action confirmation of the user (actionType oauth2_ciba):
// pushed to the user's registered devices and approved there by a device-key signature
// over its challenge, like any confirmation. The client knows it by auth_req_id and polls
// the token endpoint; redeeming it consumes the confirmation, so it yields tokens once.

// GrantCIBA is the CIBA grant type at the token endpoint.
const GrantCIBA = "urn:openid:params:grant-type:ciba"

// CIBAInterval is the minimum wait between two polls of a pending request.
const CIBAInterval = 5 * time.Second

// MaxBindingMessage bounds binding_message, in characters: it is shown on a phone.
const MaxBindingMessage = 64

// CIBARequest is a stored backchannel request; ID is the SHA-256 of its auth_req_id.
type CIBARequest struct {
	ID             string     `db:"id"`
	ConfirmationID string     `db:"confirmation_id"`
	ClientID       string     `db:"client_id"`
	IdentityID     int64      `db:"identity_id"`
	Scope          string     `db:"scope"`
	Interval       int        `db:"poll_interval"`
	LastPolledAt   *time.Time `db:"last_polled_at"`
	ExpiresAt      time.Time  `db:"expires_at"`
	CreatedAt      time.Time  `db:"created_at"`
}

// ErrCIBARequestNotFound is returned for unknown auth_req_ids.
var ErrCIBARequestNotFound = errors.New("ciba request not found")

// CIBAPersister stores backchannel requests.
type CIBAPersister interface {
	CreateCIBARequest(ctx context.Context, r *CIBARequest) error
	GetCIBARequest(ctx context.Context, id string) (*CIBARequest, error)
	// MarkCIBAPolled records a poll at now unless the previous one is less than the
	// request's interval ago; false then (slow_down). One conditional update, so
	// concurrent polls cannot both pass.
	MarkCIBAPolled(ctx context.Context, id string, now time.Time) (bool, error)
}

// cibaDeps is what the backchannel endpoint and grant need.
type cibaDeps interface {
	PersisterProvider
	identity.PersisterProvider
	confirmation.PersisterProvider
	audit.LoggerProvider
}

func cibaError(code, desc string) *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: code, DescriptionField: desc, CodeField: http.StatusBadRequest}
}

// The token endpoint's answers while a request is not approved (CIBA Core §11).
var (
	errAuthorizationPending = cibaError("authorization_pending", "The user has not yet approved the request on a device.")
	errSlowDown             = cibaError("slow_down", "The request is polled faster than its interval.")
	errCIBAExpired          = cibaError("expired_token", "The auth_req_id has expired; start a new backchannel request.")
	errCIBADenied           = cibaError("access_denied", "The user rejected the request.")
)

// backchannelAuthorize is CIBA's backchannel authentication endpoint (CIBA Core §7).
func (h *Handler) backchannelAuthorize(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	received := time.Now()
	// Client authentication as at the token endpoint; only confidential clients (CIBA
	// Core §7.1), never pvauth's own.
	c := h.confidentialClient(w, r)
	if c == nil {
		return
	}
	if !c.GetGrantTypes().Has(GrantCIBA) {
		writeOAuthError(w, http.StatusBadRequest, "unauthorized_client", "The client is not registered for the grant type "+GrantCIBA+".")
		return
	}
	in, oerr := h.parseBackchannel(ctx, r, c)
	if oerr != nil {
		writeRFC6749(w, r, oerr)
		return
	}
	id, err := h.backchannelUser(ctx, r, c)
	if err != nil {
		writeRFC6749(w, r, err)
		return
	}
	// Every request pushes to the user's phone: the user's confirmation budget bounds it.
	if err := h.d.RateLimiter().Allow(ctx, ratelimit.RuleConfirmationInitiate, "user:"+strconv.FormatInt(id.ID, 10)); err != nil {
		var xe *x.Error
		if errors.As(err, &xe) && xe.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(xe.RetryAfter))
		}
		writeOAuthError(w, http.StatusTooManyRequests, "slow_down", "Too many backchannel requests for this user; try again later.")
		return
	}
	authReqID := newSecret()
	name := ""
	if fc, ok := c.(*fositeClient); ok {
		name = fc.name
	}
	payload, _ := json.Marshal(map[string]string{
		"clientId": c.GetID(), "clientName": name, "scope": strings.Join(in.scope, " "), "bindingMessage": in.bindingMessage,
	})
	req := &CIBARequest{ID: x.SHA256Hex(authReqID), ClientID: c.GetID(), IdentityID: id.ID,
		Scope: strings.Join(in.scope, " "), Interval: int(CIBAInterval / time.Second)}
	started, err := h.d.ConfirmationService().InitiateWith(ctx, id.ID, confirmation.ActionTypeCIBA, payload, confirmation.InitiateOptions{
		TTL: in.expiry,
		// The request is stored with its confirmation, before anything reaches a phone.
		InTx: func(ctx context.Context, conf *confirmation.Confirmation) error {
			req.ConfirmationID, req.ExpiresAt = conf.ID, conf.ExpiresAt
			if err := h.d.OAuth2Persister().CreateCIBARequest(ctx, req); err != nil {
				return err
			}
			return h.d.AuditLogger().LogTx(ctx, audit.Event{Type: TypeCIBARequest, UserID: audit.Int64(id.ID),
				Metadata: map[string]any{"clientId": c.GetID(), "confirmationId": conf.ID, "scope": req.Scope}})
		},
	})
	if err != nil {
		writeRFC6749(w, r, fosite.ErrServerError.WithWrap(err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	x.WriteJSON(w, http.StatusOK, map[string]any{
		"auth_req_id": authReqID,
		// Counted from the request's arrival (CIBA Core §7.3), not from this answer, which
		// a busy server may send a second later; never more than was asked for (the
		// expiry is stored rounded up to whole seconds).
		"expires_in": expiresIn(started.ExpiresAt.Sub(received), in.expiry),
		"interval":   req.Interval,
	})
}

// Audit event types of CIBA.
const (
	TypeCIBARequest = "oauth2.ciba.request"
	TypeCIBAToken   = "oauth2.ciba.token"
)

type backchannelInput struct {
	scope          []string
	bindingMessage string
	expiry         time.Duration
}

func (h *Handler) parseBackchannel(ctx context.Context, r *http.Request, c fosite.Client) (*backchannelInput, error) {
	form := r.PostForm
	in := &backchannelInput{scope: strings.Fields(form.Get("scope"))}
	if !slices.Contains(in.scope, "openid") {
		return nil, fosite.ErrInvalidRequest.WithHint("The parameter 'scope' must contain 'openid'.")
	}
	strategy := h.provider().ScopeStrategy(ctx)
	for _, s := range in.scope {
		if !strategy(c.GetScopes(), s) {
			return nil, fosite.ErrInvalidScope.WithHintf("The client is not allowed to request scope '%s'.", s)
		}
	}
	in.bindingMessage = form.Get("binding_message")
	if utf8.RuneCountInString(in.bindingMessage) > MaxBindingMessage || !utf8.ValidString(in.bindingMessage) ||
		strings.IndexFunc(in.bindingMessage, unicode.IsControl) >= 0 {
		return nil, cibaError("invalid_binding_message", "The binding_message must be at most 64 printable characters.")
	}
	if v := form.Get("requested_expiry"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, fosite.ErrInvalidRequest.WithHint("The parameter 'requested_expiry' must be a positive integer (seconds).")
		}
		in.expiry = time.Duration(n) * time.Second
	}
	if form.Get("login_hint_token") != "" {
		return nil, fosite.ErrInvalidRequest.WithHint("The parameter 'login_hint_token' is not supported; use 'login_hint' or 'id_token_hint'.")
	}
	if (form.Get("login_hint") == "") == (form.Get("id_token_hint") == "") {
		return nil, fosite.ErrInvalidRequest.WithHint("Exactly one of 'login_hint' and 'id_token_hint' is required.")
	}
	return in, nil
}

var errUnknownUser = cibaError("unknown_user_id", "The user is unknown or cannot sign in.")

// backchannelUser finds the active user a backchannel request names.
func (h *Handler) backchannelUser(ctx context.Context, r *http.Request, c fosite.Client) (*identity.Identity, error) {
	ip := h.d.IdentityPersister()
	var (
		id  *identity.Identity
		err error
	)
	if hint := r.PostForm.Get("login_hint"); hint != "" {
		if len(hint) > 320 {
			return nil, errUnknownUser
		}
		id, err = ip.FindIdentityByEmail(ctx, identity.NormalizeEmail(hint))
	} else {
		sub, herr := h.hints.subject(ctx, r.PostForm.Get("id_token_hint"), c.GetID())
		if herr != nil {
			return nil, herr
		}
		n, perr := strconv.ParseInt(sub, 10, 64)
		if perr != nil {
			return nil, errUnknownUser
		}
		id, err = ip.GetIdentity(ctx, n)
	}
	if errors.Is(err, identity.ErrNotFound) {
		return nil, errUnknownUser
	}
	if err != nil {
		return nil, fosite.ErrServerError.WithWrap(err)
	}
	if id.State != identity.StateActive {
		return nil, errUnknownUser
	}
	return id, nil
}

func audienceHas(aud any, id string) bool {
	switch a := aud.(type) {
	case string:
		return a == id
	case []any:
		for _, v := range a {
			if s, _ := v.(string); s == id {
				return true
			}
		}
	case []string:
		return slices.Contains(a, id)
	}
	return false
}

// writeRFC6749 writes an OAuth2 error body with its status (503 temporarily_unavailable
// for a database failure).
func writeRFC6749(w http.ResponseWriter, r *http.Request, err error) {
	if x.WriteOAuth2Unavailable(w, r, err) {
		return
	}
	var rfc *fosite.RFC6749Error
	if !errors.As(err, &rfc) {
		rfc = fosite.ErrServerError.WithWrap(err)
	}
	status := rfc.CodeField
	if status == 0 {
		status = http.StatusBadRequest
	}
	desc := rfc.DescriptionField
	if rfc.HintField != "" {
		desc += " " + rfc.HintField
	}
	if rfc.ErrorField == fosite.ErrServerError.ErrorField {
		desc = "The server could not handle the request."
	}
	writeOAuthError(w, status, rfc.ErrorField, desc)
}

// expiresIn is the lifetime to announce in whole seconds: what is left since the request
// arrived, capped at the requested expiry when there was one.
func expiresIn(left, requested time.Duration) int {
	if requested > 0 {
		left = min(left, requested)
	}
	return int(left / time.Second)
}
