package passkey

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Routes.
const (
	RouteCheck          = "/api/v1/auth/passkeys/check"
	RouteLoginBegin     = "/api/v1/auth/passkeys/login/begin"
	RouteLoginFinish    = "/api/v1/auth/passkeys/login/finish"
	RouteList           = "/api/v1/auth/passkeys"
	RoutePrompt         = "/api/v1/auth/passkeys/prompt"
	RouteRegisterBegin  = "/api/v1/auth/passkeys/register/begin"
	RouteRegisterFinish = "/api/v1/auth/passkeys/register/finish"
	RoutePasskey        = "/api/v1/auth/passkeys/:id"
	RouteAdminList      = "/admin/identities/:id/passkeys"
	RouteAdminPasskey   = "/admin/identities/:id/passkeys/:pid"
)

// Errors.
var (
	ErrSessionExpired  = x.ErrBadRequest.Derive("Passkey session expired or not found")
	ErrNoPasskeys      = x.ErrBadRequest.Derive("No passkey is registered for this email.")
	ErrVerification    = x.ErrUnauthorized.Derive("Passkey verification failed.")
	ErrPasskeyNotFound = x.ErrNotFound.Derive("Passkey not found")
)

type handlerDeps interface {
	Config() *config.Config
	PersisterProvider
	identity.PersisterProvider
	session.TokensProvider
	audit.LoggerProvider
	devicekey.NotifierProvider
}

// Handler serves passkeys.
type Handler struct {
	d  handlerDeps
	wa *webauthn.WebAuthn
}

// NewHandler builds the handler and the relying party of webauthn.rp.*.
func NewHandler(d handlerDeps) (*Handler, error) {
	c := d.Config()
	ttl := c.TTL.WebAuthnSession
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          c.WebAuthn.RP.ID,
		RPDisplayName: c.WebAuthn.RP.DisplayName,
		RPOrigins:     c.WebAuthn.RP.Origins,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		},
		AttestationPreference: protocol.PreferNoAttestation,
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: ttl, TimeoutUVD: ttl},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: ttl, TimeoutUVD: ttl},
		},
	})
	if err != nil {
		return nil, err
	}
	return &Handler{d: d, wa: wa}, nil
}

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	t := h.d.Tokens()
	r.POST(RouteCheck, h.check)
	r.POST(RouteLoginBegin, h.loginBegin)
	r.POST(RouteLoginFinish, h.loginFinish)
	r.GET(RouteList, t.RequireUser(h.list))
	r.PUT(RoutePrompt, t.RequireUser(h.prompt))
	r.POST(RouteRegisterBegin, t.RequireRecentLogin(h.registerBegin))
	r.POST(RouteRegisterFinish, t.RequireRecentLogin(h.registerFinish))
	r.PATCH(RoutePasskey, t.RequireUser(h.rename))
	r.DELETE(RoutePasskey, t.RequireUser(h.remove))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.GET(RouteAdminList, h.adminList)
	r.DELETE(RouteAdminPasskey, h.adminRemove)
	r.DELETE(RouteAdminList, h.adminRemoveAll)
}

// user adapts an identity and its passkeys to go-webauthn.
type user struct {
	id     *identity.Identity
	handle []byte
	creds  []webauthn.Credential
}

func (u *user) WebAuthnID() []byte   { return u.handle }
func (u *user) WebAuthnName() string { return u.id.Email }
func (u *user) WebAuthnDisplayName() string {
	if n := u.id.TypedTraits().Employee; n != nil && n.Name != "" {
		return n.Name
	}
	return u.id.Email
}
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func newHandle() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// loadUser builds the go-webauthn user with its active credentials.
func (h *Handler) loadUser(ctx context.Context, id *identity.Identity) (*user, []Credential, error) {
	p := h.d.PasskeyPersister()
	handle, err := p.UserHandle(ctx, id.ID, newHandle)
	if err != nil {
		return nil, nil, err
	}
	stored, err := p.ListPasskeys(ctx, id.ID, true)
	if err != nil {
		return nil, nil, err
	}
	u := &user{id: id, handle: handle}
	for _, s := range stored {
		var c webauthn.Credential
		if err := json.Unmarshal([]byte(s.Data), &c); err != nil {
			return nil, nil, err
		}
		u.creds = append(u.creds, c)
	}
	return u, stored, nil
}

type emailBody struct {
	Email string `json:"email"`
}

func (b *emailBody) Validate() error { return x.MaxLen("email", b.Email, 320) }

func (h *Handler) check(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var b emailBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := x.Required("email", b.Email); err != nil {
		x.WriteError(w, r, err)
		return
	}
	// An unknown email and an email without passkeys answer alike.
	has := false
	if id, err := h.d.IdentityPersister().FindIdentityByEmail(r.Context(), identity.NormalizeEmail(b.Email)); err == nil && id.State == identity.StateActive {
		cs, err := h.d.PasskeyPersister().ListPasskeys(r.Context(), id.ID, true)
		if err != nil {
			x.WriteError(w, r, err)
			return
		}
		has = len(cs) > 0
	} else if err != nil && !errors.Is(err, identity.ErrNotFound) {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]bool{"hasPasskeys": has})
}

type beginResult struct {
	PublicKey any    `json:"publicKey"`
	SessionID string `json:"sessionId"`
}

func (h *Handler) saveSession(ctx context.Context, kind string, identityID *int64, name *string, sd *webauthn.SessionData) (string, error) {
	raw, err := json.Marshal(sd)
	if err != nil {
		return "", err
	}
	s := &Session{ID: uuid.NewString(), Kind: kind, IdentityID: identityID, Name: name, Data: string(raw),
		ExpiresAt: time.Now().Add(h.d.Config().TTL.WebAuthnSession)}
	if err := h.d.PasskeyPersister().CreatePasskeySession(ctx, s); err != nil {
		return "", err
	}
	return s.ID, nil
}

func (h *Handler) loginBegin(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b emailBody
	if r.ContentLength != 0 {
		if err := x.DecodeJSON(r, &b); err != nil {
			x.WriteError(w, r, err)
			return
		}
	}
	var (
		assertion *protocol.CredentialAssertion
		sd        *webauthn.SessionData
		uid       *int64
		err       error
	)
	if strings.TrimSpace(b.Email) == "" {
		assertion, sd, err = h.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	} else {
		id, ferr := h.d.IdentityPersister().FindIdentityByEmail(ctx, identity.NormalizeEmail(b.Email))
		if errors.Is(ferr, identity.ErrNotFound) || (ferr == nil && id.State != identity.StateActive) {
			x.WriteError(w, r, ErrNoPasskeys)
			return
		} else if ferr != nil {
			x.WriteError(w, r, ferr)
			return
		}
		u, _, lerr := h.loadUser(ctx, id)
		if lerr != nil {
			x.WriteError(w, r, lerr)
			return
		}
		if len(u.creds) == 0 {
			x.WriteError(w, r, ErrNoPasskeys)
			return
		}
		uid = &id.ID
		assertion, sd, err = h.wa.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationRequired))
	}
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	sid, err := h.saveSession(ctx, KindLogin, uid, nil, sd)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, beginResult{PublicKey: assertion.Response, SessionID: sid})
}

type finishBody struct {
	SessionID  string          `json:"sessionId"`
	Response   json.RawMessage `json:"response"`
	RememberMe bool            `json:"rememberMe"`
	Name       string          `json:"name"`
}

func (b *finishBody) Validate() error {
	if err := x.FirstError(x.Required("sessionId", b.SessionID), x.MaxLen("sessionId", b.SessionID, 64)); err != nil {
		return err
	}
	if len(b.Response) == 0 || string(b.Response) == "null" || !strings.HasPrefix(strings.TrimSpace(string(b.Response)), "{") {
		return x.ErrBadRequest.WithMessage("Field 'response' is required and must be the PublicKeyCredential JSON object.")
	}
	return nil
}

// consume loads a ceremony of kind and spends it: every ceremony is single use, whether
// it then verifies or not.
func (h *Handler) consume(ctx context.Context, id, kind string) (*Session, *webauthn.SessionData, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, nil, ErrSessionExpired
	}
	p := h.d.PasskeyPersister()
	s, err := p.GetPasskeySession(ctx, id)
	if errors.Is(err, ErrSessionNotFound) {
		return nil, nil, ErrSessionExpired
	} else if err != nil {
		return nil, nil, err
	}
	if s.Kind != kind {
		return nil, nil, ErrSessionExpired
	}
	ok, err := p.ConsumePasskeySession(ctx, id, time.Now())
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, ErrSessionExpired
	}
	var sd webauthn.SessionData
	if err := json.Unmarshal([]byte(s.Data), &sd); err != nil {
		return nil, nil, err
	}
	// The database keeps expiries in whole seconds (rounded up); the ceremony's own
	// expiry is exact. Past it, the answer is the contract's 400 "expired", not the 401
	// that go-webauthn's timeout check would turn into.
	if !sd.Expires.IsZero() && time.Now().After(sd.Expires) {
		return nil, nil, ErrSessionExpired
	}
	return s, &sd, nil
}

type loginResult struct {
	Success bool              `json:"success"`
	Tokens  *session.TokenSet `json:"tokens"`
}

func (h *Handler) loginFinish(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b finishBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	s, sd, err := h.consume(ctx, b.SessionID, KindLogin)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(b.Response)
	if err != nil {
		h.fail(ctx, nil, "login", "malformed assertion")
		x.WriteError(w, r, x.ErrBadRequest.WithMessage("Invalid passkey response: "+protocolDetails(err)))
		return
	}
	stored, err := h.d.PasskeyPersister().GetPasskeyByCredentialID(ctx, base64.RawURLEncoding.EncodeToString(parsed.RawID))
	if errors.Is(err, ErrNotFound) || (err == nil && !stored.IsActive) {
		h.fail(ctx, nil, "login", "unknown or deleted credential")
		x.WriteError(w, r, ErrVerification)
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if s.IdentityID != nil && *s.IdentityID != stored.IdentityID {
		h.fail(ctx, s.IdentityID, "login", "credential of another user")
		x.WriteError(w, r, ErrVerification)
		return
	}
	id, err := h.d.IdentityPersister().GetIdentity(ctx, stored.IdentityID)
	if err != nil && !errors.Is(err, identity.ErrNotFound) {
		x.WriteError(w, r, err) // the database failing, not the identity gone
		return
	}
	if err != nil || id.State != identity.StateActive {
		h.fail(ctx, &stored.IdentityID, "login", "identity disabled or deleted")
		x.WriteError(w, r, ErrVerification)
		return
	}
	u, _, err := h.loadUser(ctx, id)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var cred *webauthn.Credential
	if s.IdentityID != nil {
		cred, err = h.wa.ValidateLogin(u, *sd, parsed)
	} else {
		cred, err = h.wa.ValidateDiscoverableLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
			return u, nil
		}, *sd, parsed)
	}
	if err != nil {
		h.fail(ctx, &id.ID, "login", protocolDetails(err))
		x.WriteError(w, r, ErrVerification)
		return
	}
	data, _ := json.Marshal(cred)
	if err := h.d.PasskeyPersister().UpdatePasskeyUse(ctx, stored.ID, string(data), int64(cred.Authenticator.SignCount),
		cred.Authenticator.CloneWarning, time.Now()); err != nil {
		x.WriteError(w, r, err)
		return
	}
	if cred.Authenticator.CloneWarning && !stored.CloneWarning {
		h.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypePasskey, UserID: audit.Int64(id.ID), Result: audit.ResultFailure,
			Reason: "sign counter regressed: possible cloned authenticator", Metadata: map[string]any{"event": "clone_warning", "passkeyId": stored.ID}})
	}
	sid := uuid.NewString()
	ts, err := h.d.Tokens().Issue(ctx, session.IssueRequest{IdentityID: id.ID, Email: id.Email, AMR: []string{session.AMRWebAuthn},
		PasskeyID: stored.ID, RememberMe: b.RememberMe, SessionID: sid,
		// Under the identity's lock (see session.TokenPersister): a deletion of the
		// passkey that committed first refuses the login; one that comes after ends it.
		// The login's event commits with the tokens.
		InTx: func(ctx context.Context) error {
			c, err := h.d.PasskeyPersister().GetPasskeyByCredentialID(ctx, stored.CredentialID)
			if errors.Is(err, ErrNotFound) || (err == nil && !c.IsActive) {
				return ErrVerification
			} else if err != nil {
				return err
			}
			return h.d.AuditLogger().LogTx(ctx, audit.Event{Type: audit.TypePasskey, UserID: audit.Int64(id.ID), Result: audit.ResultSuccess,
				Metadata: map[string]any{"event": "login", "passkeyId": stored.ID, "discoverable": s.IdentityID == nil, "sessionId": sid}})
		}})
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, loginResult{Success: true, Tokens: ts})
}

func protocolDetails(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return pe.Details
	}
	return "the response could not be verified"
}

func (h *Handler) fail(ctx context.Context, uid *int64, event, reason string) {
	h.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypePasskey, UserID: uid, Result: audit.ResultFailure, Reason: reason,
		Metadata: map[string]any{"event": event}})
}

func (h *Handler) callerIdentity(r *http.Request) (*identity.Identity, error) {
	uid, err := session.UserID(r)
	if err != nil {
		return nil, err
	}
	id, err := h.d.IdentityPersister().GetIdentity(r.Context(), uid)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, session.ErrTokenInvalid
	}
	return id, err
}

type nameBody struct {
	Name string `json:"name"`
}

func (b *nameBody) Validate() error {
	b.Name = strings.TrimSpace(b.Name)
	return x.FirstError(x.Required("name", b.Name), x.MaxLen("name", b.Name, 255))
}

func (h *Handler) registerBegin(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	id, err := h.callerIdentity(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b nameBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	u, _, err := h.loadUser(ctx, id)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	exclude := make([]protocol.CredentialDescriptor, 0, len(u.creds))
	for _, c := range u.creds {
		exclude = append(exclude, c.Descriptor())
	}
	creation, sd, err := h.wa.BeginRegistration(u, webauthn.WithExclusions(exclude))
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	sid, err := h.saveSession(ctx, KindRegister, &id.ID, &b.Name, sd)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, beginResult{PublicKey: creation.Response, SessionID: sid})
}

// View is a passkey as the API shows it.
type View struct {
	ID              string     `json:"id"`
	CredentialID    string     `json:"credentialId"`
	UserID          int64      `json:"userId"`
	Name            string     `json:"name"`
	AttestationType string     `json:"attestationType"`
	AAGUID          string     `json:"aaguid"`
	SignCount       int64      `json:"signCount"`
	CloneWarning    bool       `json:"cloneWarning"`
	BackupEligible  bool       `json:"backupEligible"`
	BackupState     bool       `json:"backupState"`
	TransportFlags  []string   `json:"transportFlags"`
	IsActive        bool       `json:"isActive"`
	LastUsedAt      *time.Time `json:"lastUsedAt"`
	CreatedAt       time.Time  `json:"createdAt"`
	UpdatedAt       time.Time  `json:"updatedAt"`
}

func view(c *Credential) View {
	var tr []string
	_ = json.Unmarshal([]byte(c.Transports), &tr)
	if tr == nil {
		tr = []string{}
	}
	return View{ID: c.ID, CredentialID: c.CredentialID, UserID: c.IdentityID, Name: c.Name, AttestationType: c.AttestationType,
		AAGUID: c.AAGUID, SignCount: c.SignCount, CloneWarning: c.CloneWarning, BackupEligible: c.BackupEligible,
		BackupState: c.BackupState, TransportFlags: tr, IsActive: c.IsActive, LastUsedAt: c.LastUsedAt,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

func views(cs []Credential) []View {
	out := make([]View, 0, len(cs))
	for i := range cs {
		out = append(out, view(&cs[i]))
	}
	return out
}

func (h *Handler) registerFinish(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	id, err := h.callerIdentity(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b finishBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	s, sd, err := h.consume(ctx, b.SessionID, KindRegister)
	if err == nil && (s.IdentityID == nil || *s.IdentityID != id.ID) {
		err = ErrSessionExpired
	}
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(b.Response)
	if err != nil {
		h.fail(ctx, &id.ID, "register", "malformed attestation")
		x.WriteError(w, r, x.ErrBadRequest.WithMessage("Invalid passkey response: "+protocolDetails(err)))
		return
	}
	u, _, err := h.loadUser(ctx, id)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	cred, err := h.wa.CreateCredential(u, *sd, parsed)
	if err != nil {
		h.fail(ctx, &id.ID, "register", protocolDetails(err))
		x.WriteError(w, r, ErrVerification)
		return
	}
	data, _ := json.Marshal(cred)
	transports := make([]string, 0, len(cred.Transport))
	for _, t := range cred.Transport {
		transports = append(transports, string(t))
	}
	tr, _ := json.Marshal(transports)
	name := ""
	if s.Name != nil {
		name = *s.Name
	}
	aaguid := ""
	if g, err := uuid.FromBytes(cred.Authenticator.AAGUID); err == nil {
		aaguid = g.String()
	}
	c := &Credential{
		ID: uuid.NewString(), IdentityID: id.ID, CredentialID: base64.RawURLEncoding.EncodeToString(cred.ID), Name: name,
		Data: string(data), AttestationType: cred.AttestationType, AAGUID: aaguid, SignCount: int64(cred.Authenticator.SignCount),
		Transports: string(tr), BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState,
	}
	al := h.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := h.d.PasskeyPersister().CreatePasskey(ctx, c); err != nil {
			return err
		}
		return al.LogTx(ctx, audit.Event{Type: audit.TypePasskey, UserID: audit.Int64(id.ID),
			Metadata: map[string]any{"event": "register", "passkeyId": c.ID, "aaguid": aaguid}})
	}); errors.Is(err, ErrDuplicateCredential) {
		x.WriteError(w, r, x.ErrConflict.WithMessage("This passkey is already registered."))
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	h.d.DeviceNotifier().AuthenticatorAdded(ctx, id.ID, devicekey.AuthenticatorPasskey, c.ID, c.Name, "")
	v := view(c)
	x.WriteData(w, http.StatusOK, map[string]any{"success": true, "credentialId": c.CredentialID, "credential": v})
}

type listItem struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	CreatedAt      time.Time  `json:"createdAt"`
	LastUsedAt     *time.Time `json:"lastUsedAt"`
	IsActive       bool       `json:"isActive"`
	TransportFlags []string   `json:"transportFlags"`
	CloneWarning   bool       `json:"cloneWarning"`
	BackupEligible bool       `json:"backupEligible"`
	BackupState    bool       `json:"backupState"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	cs, err := h.d.PasskeyPersister().ListPasskeys(r.Context(), uid, true)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	out := make([]listItem, 0, len(cs))
	for _, v := range views(cs) {
		out = append(out, listItem{ID: v.ID, Name: v.Name, CreatedAt: v.CreatedAt, LastUsedAt: v.LastUsedAt, IsActive: v.IsActive,
			TransportFlags: v.TransportFlags, CloneWarning: v.CloneWarning, BackupEligible: v.BackupEligible, BackupState: v.BackupState})
	}
	x.WriteData(w, http.StatusOK, map[string]any{"credentials": out})
}

type promptBody struct {
	Status string `json:"status"`
}

func (b *promptBody) Validate() error {
	return x.FirstError(x.Required("status", b.Status),
		x.OneOf("status", b.Status, identity.PromptPending, identity.PromptAccepted, identity.PromptDeclined, identity.PromptDismissed))
}

func (h *Handler) prompt(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b promptBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := h.d.IdentityPersister().UpdatePasskeyPromptStatus(r.Context(), uid, b.Status); err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]any{"success": true, "message": "Passkey prompt status updated"})
}

func (h *Handler) rename(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b nameBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	pid := ps.ByName("id")
	if _, err := uuid.Parse(pid); err != nil {
		x.WriteError(w, r, ErrPasskeyNotFound)
		return
	}
	ok, err := h.d.PasskeyPersister().RenamePasskey(r.Context(), uid, pid, b.Name)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if !ok {
		x.WriteError(w, r, ErrPasskeyNotFound)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]bool{"success": true})
}

func (h *Handler) removeFor(ctx context.Context, uid int64, pid, by string) error {
	if _, err := uuid.Parse(pid); err != nil {
		return ErrPasskeyNotFound
	}
	// The passkey goes, and every session it signed in with it, in one transaction with
	// the event.
	al := h.d.AuditLogger()
	return al.Tx(ctx, func(ctx context.Context) error {
		n, revoked, err := h.d.Tokens().RemoveAuthenticators(ctx, uid, session.AuthenticatorPasskey, pid)
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrPasskeyNotFound
		}
		return al.LogTx(ctx, audit.Event{Type: audit.TypePasskey, UserID: audit.Int64(uid),
			Metadata: map[string]any{"event": "delete", "passkeyId": pid, "by": by, "revokedSessions": revoked}})
	})
}

func (h *Handler) remove(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := h.removeFor(r.Context(), uid, ps.ByName("id"), "user"); err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]bool{"success": true})
}

func (h *Handler) adminList(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := identity.MustExist(r.Context(), h.d.IdentityPersister(), uid); err != nil {
		x.WriteError(w, r, err)
		return
	}
	cs, err := h.d.PasskeyPersister().ListPasskeys(r.Context(), uid, false)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]any{"credentials": views(cs)})
}

func (h *Handler) adminRemove(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := h.removeFor(r.Context(), uid, ps.ByName("pid"), "admin"); err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]bool{"success": true})
}

// adminRemoveAll deletes every passkey of an identity and ends the sessions they signed in.
func (h *Handler) adminRemoveAll(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	if err := identity.MustExist(ctx, h.d.IdentityPersister(), uid); err != nil {
		x.WriteError(w, r, err)
		return
	}
	var n int
	al := h.d.AuditLogger()
	err = al.Tx(ctx, func(ctx context.Context) error {
		var revoked int
		var err error
		if n, revoked, err = h.d.Tokens().RemoveAuthenticators(ctx, uid, session.AuthenticatorPasskey, ""); err != nil {
			return err
		}
		return al.LogTx(ctx, audit.Event{Type: audit.TypePasskey, UserID: audit.Int64(uid),
			Metadata: map[string]any{"event": "delete_all", "deleted": n, "by": "admin", "revokedSessions": revoked}})
	})
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]int{"deleted": n})
}
