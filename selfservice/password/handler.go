package password

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
	"github.com/pvpipe/pvauth/x/secretbox"
)

// Routes.
const (
	RouteLogin     = "/api/v1/auth/login"
	RouteOTPSetup  = "/api/v1/auth/otp/setup"
	RouteOTPVerify = "/api/v1/auth/otp/verify"
	RouteMe        = "/api/v1/auth/me"
	RouteRefresh   = "/api/v1/auth/refresh"
	RouteLogout    = "/api/v1/auth/logout"
	RouteAdminOTP  = "/admin/otp/verify"
)

type handlerDeps interface {
	Config() *config.Config
	identity.PersisterProvider
	IdentityHasher() *identity.Hasher
	FlowPersisterProvider
	session.TokensProvider
	audit.LoggerProvider
	ratelimit.LimiterProvider
	Cipher() *secretbox.Box
}

// Handler serves the password + TOTP API.
type Handler struct{ d handlerDeps }

// NewHandler builds the handler.
func NewHandler(d handlerDeps) *Handler { return &Handler{d: d} }

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	t := h.d.Tokens()
	r.POST(RouteLogin, h.login)
	r.GET(RouteOTPSetup, h.otpSetup)
	r.POST(RouteOTPVerify, h.otpVerify)
	r.GET(RouteMe, t.RequireUser(h.me))
	r.POST(RouteRefresh, h.refresh)
	r.POST(RouteLogout, t.RequireUser(h.logout))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.POST(RouteAdminOTP, h.adminOTPVerify)
}

// Errors of this API.
var (
	ErrBadCredentials = x.ErrUnauthorized.Derive("Invalid email or password.")
	ErrPendingInvalid = x.ErrUnauthorized.Derive("The login session is invalid or expired. Log in again.")
	ErrBadOTP         = x.ErrUnauthorized.Derive("Invalid one-time code.")
	ErrOTPEnrolled    = x.ErrConflict.Derive("TOTP is already enrolled for this account.")
	ErrSetupFirst     = x.ErrBadRequest.Derive("TOTP is not set up yet: call GET /api/v1/auth/otp/setup first.")
)

type loginBody struct {
	Email      string `json:"email"`
	Password   string `json:"password"`
	RememberMe bool   `json:"rememberMe"`
}

func (b *loginBody) Validate() error {
	return x.FirstError(
		x.Required("email", b.Email), x.MaxLen("email", b.Email, 320),
		x.Required("password", b.Password), x.MaxLen("password", b.Password, 1024),
	)
}

type loginResult struct {
	RegisterOTP bool   `json:"registerOtp"`
	Token       string `json:"token"`
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b loginBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	email := identity.NormalizeEmail(b.Email)
	// Failures only are counted, per email and client network (so an attacker elsewhere
	// cannot lock the user out of the network the user signs in from) and per email from
	// anywhere (a guesser spread over many networks); a success clears its network's count.
	lim := h.d.RateLimiter()
	netKey := ratelimit.Key{Rule: ratelimit.RuleLogin, Key: email + "|" + x.ClientNetwork(x.ClientIPFromContext(ctx))}
	attempt, err := lim.Reserve(ctx, netKey, ratelimit.Key{Rule: ratelimit.RuleLoginEmail, Key: email})
	if err != nil {
		h.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypeLogin, Result: audit.ResultFailure, Reason: "rate_limited"})
		x.WriteError(w, r, err)
		return
	}
	failed, succeeded := false, false
	defer func() {
		if !failed && !succeeded {
			attempt.Refund(ctx) // a server error is no failed guess
		}
	}()

	hasher := h.d.IdentityHasher()
	id, err := h.d.IdentityPersister().FindIdentityByEmail(ctx, email)
	if errors.Is(err, identity.ErrNotFound) {
		// Same work and the same answer as a wrong password (and the same 503 when no
		// hashing slot is free, so that overload reveals nothing either).
		if err := hasher.CompareDummy(ctx, b.Password); errors.Is(err, identity.ErrHasherBusy) {
			x.WriteError(w, r, err)
			return
		}
		failed = true
		h.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypeLogin, Result: audit.ResultFailure, Reason: "unknown_email"})
		x.WriteError(w, r, ErrBadCredentials)
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var cmpErr error
	if id.PasswordHash == "" {
		cmpErr = hasher.CompareDummy(ctx, b.Password)
	} else {
		cmpErr = hasher.Compare(ctx, b.Password, id.PasswordHash)
	}
	if errors.Is(cmpErr, identity.ErrHasherBusy) {
		x.WriteError(w, r, cmpErr) // no guess was checked: not counted as a failure
		return
	}
	if cmpErr != nil || id.State != identity.StateActive {
		reason := "wrong_password"
		if cmpErr == nil {
			reason = "identity_disabled"
		} else if !errors.Is(cmpErr, identity.ErrMismatchedPassword) {
			if ctx.Err() != nil {
				x.WriteError(w, r, x.ErrUnavailable.WithCause(cmpErr))
				return
			}
			reason = "unreadable_hash"
		}
		failed = true
		h.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypeLogin, UserID: audit.Int64(id.ID), Result: audit.ResultFailure, Reason: reason})
		x.WriteError(w, r, ErrBadCredentials)
		return
	}

	tok, err := newPendingToken()
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	tok = session.PendingTokenPrefix + tok
	f := &Flow{
		ID: uuid.NewString(), TokenHash: x.SHA256Hex(tok), IdentityID: id.ID, State: FlowPending,
		RememberMe: b.RememberMe, ExpiresAt: time.Now().Add(h.d.Config().TTL.PendingLogin),
	}
	// The pending login and its event commit together.
	al := h.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := h.d.LoginFlowPersister().CreateLoginFlow(ctx, f); err != nil {
			return err
		}
		return al.LogTx(ctx, audit.Event{Type: audit.TypeLogin, UserID: audit.Int64(id.ID), Result: audit.ResultSuccess,
			Metadata: map[string]any{"step": "password", "registerOtp": !id.MFAEnabled}})
	}); err != nil {
		x.WriteError(w, r, err)
		return
	}
	succeeded = true
	attempt.Succeed(ctx, netKey)
	x.WriteData(w, http.StatusOK, loginResult{RegisterOTP: !id.MFAEnabled, Token: tok})
}

// pending resolves the pending token of the request to its live flow and identity.
func (h *Handler) pending(ctx context.Context, r *http.Request) (*Flow, *identity.Identity, error) {
	tok := session.BearerToken(r)
	if !strings.HasPrefix(tok, session.PendingTokenPrefix) || len(tok) > 256 {
		return nil, nil, ErrPendingInvalid
	}
	f, err := h.d.LoginFlowPersister().GetLoginFlowByTokenHash(ctx, x.SHA256Hex(tok))
	if errors.Is(err, ErrFlowNotFound) {
		return nil, nil, ErrPendingInvalid
	} else if err != nil {
		return nil, nil, err
	}
	if !f.Usable(time.Now()) {
		return nil, nil, ErrPendingInvalid
	}
	id, err := h.d.IdentityPersister().GetIdentity(ctx, f.IdentityID)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, nil, ErrPendingInvalid
	} else if err != nil {
		return nil, nil, err
	}
	if id.State != identity.StateActive {
		return nil, nil, ErrPendingInvalid
	}
	return f, id, nil
}

// PendingCheck reports whether tok is a live pending token (for the 403 on full endpoints).
func (h *Handler) PendingCheck(ctx context.Context, tok string) bool {
	f, err := h.d.LoginFlowPersister().GetLoginFlowByTokenHash(ctx, x.SHA256Hex(tok))
	return err == nil && f.Usable(time.Now())
}

type setupResult struct {
	Secret     string `json:"secret"`
	OTPAuthURL string `json:"otpauthUrl"`
	QRCodePNG  string `json:"qrCodePng"`
}

func (h *Handler) otpSetup(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	f, id, err := h.pending(ctx, r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if id.MFAEnabled {
		x.WriteError(w, r, ErrOTPEnrolled)
		return
	}
	key, err := newTOTPKey(h.d.Config().WebAuthn.RP.DisplayName, id.Email)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	enc, err := h.d.Cipher().Seal([]byte(key.Secret()), flowAAD(f.ID))
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	png, err := qrPNGDataURI(key.URL())
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	al := h.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := h.d.LoginFlowPersister().SetLoginFlowTOTPSecret(ctx, f.ID, enc); err != nil {
			return err
		}
		return al.LogTx(ctx, audit.Event{Type: audit.TypeOTPSetup, UserID: audit.Int64(id.ID)})
	}); err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, setupResult{Secret: key.Secret(), OTPAuthURL: key.URL(), QRCodePNG: png})
}

func flowAAD(flowID string) []byte { return []byte("totp:flow:" + flowID) }
func identityAAD(identityID int64) []byte {
	return []byte("totp:identity:" + strconv.FormatInt(identityID, 10))
}

type otpBody struct {
	OTP string `json:"otp"`
}

func (b *otpBody) Validate() error {
	b.OTP = strings.TrimSpace(b.OTP)
	return x.FirstError(x.Required("otp", b.OTP), x.MaxLen("otp", b.OTP, 64))
}

type verifyResult struct {
	*session.TokenSet
	RecoveryCodes []string `json:"recoveryCodes,omitempty"`
}

func (h *Handler) otpVerify(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b otpBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	f, id, err := h.pending(ctx, r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := h.d.RateLimiter().Allow(ctx, ratelimit.RuleOTPVerify, "user:"+strconv.FormatInt(id.ID, 10)); err != nil {
		x.WriteError(w, r, err)
		return
	}
	// Count the attempt before checking the code, so that parallel guesses cannot get
	// past MaxOTPFailures; a good code gives its attempt back when the flow completes.
	if ok, err := h.d.LoginFlowPersister().ReserveLoginFlowAttempt(ctx, f.ID); err != nil {
		x.WriteError(w, r, err)
		return
	} else if !ok {
		x.WriteError(w, r, ErrPendingInvalid)
		return
	}

	var recovery []string
	method := "totp"
	sid := uuid.NewString()
	if !id.MFAEnabled {
		recovery, err = h.enroll(ctx, f, id, b.OTP, sid)
		method = "enroll"
	} else {
		method, err = h.checkSecondFactor(ctx, id, b.OTP)
	}
	if err != nil {
		var xe *x.Error
		if errors.As(err, &xe) && xe.Status == http.StatusUnauthorized {
			n := f.FailedAttempts + 1
			h.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypeOTPVerify, UserID: audit.Int64(id.ID), Result: audit.ResultFailure,
				Reason: xe.Message, Metadata: map[string]any{"failedAttempts": n, "method": method}})
		}
		x.WriteError(w, r, err)
		return
	}
	// One pending token completes one login, even if two good codes race; completing it
	// in the token transaction orders it against a revocation of the identity (a
	// revoked pending token completes nothing). The login's event commits in it too (an
	// enrolment's event committed with the enrolment).
	ts, err := h.d.Tokens().Issue(ctx, session.IssueRequest{
		IdentityID: id.ID, Email: id.Email, AMR: []string{session.AMRPassword, session.AMROTP}, RememberMe: f.RememberMe,
		SessionID: sid,
		InTx: func(ctx context.Context) error {
			ok, err := h.d.LoginFlowPersister().CompleteLoginFlow(ctx, f.ID)
			if err != nil {
				return err
			}
			if !ok {
				return ErrPendingInvalid
			}
			if recovery != nil {
				return nil
			}
			return h.d.AuditLogger().LogTx(ctx, audit.Event{Type: audit.TypeOTPVerify, UserID: audit.Int64(id.ID), Result: audit.ResultSuccess,
				Metadata: map[string]any{"method": method, "sessionId": sid, "rememberMe": f.RememberMe}})
		},
	})
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, verifyResult{TokenSet: ts, RecoveryCodes: recovery})
}

// enroll completes TOTP enrolment with the first code and returns the recovery codes.
// The enrolment and its event (naming sessionID, the login it starts) commit together,
// in a transaction of their own: inside the token transaction, after the identity's
// shared lock, two racing enrolments would deadlock on PostgreSQL.
func (h *Handler) enroll(ctx context.Context, f *Flow, id *identity.Identity, code, sessionID string) ([]string, error) {
	if f.PendingTOTPSecret == nil {
		return nil, ErrSetupFirst
	}
	secret, err := h.d.Cipher().Open(*f.PendingTOTPSecret, flowAAD(f.ID))
	if err != nil {
		return nil, err
	}
	step, ok := matchStep(string(secret), code, time.Now())
	if !isTOTPCode(code) || !ok {
		return nil, ErrBadOTP
	}
	enc, err := h.d.Cipher().Seal(secret, identityAAD(id.ID))
	if err != nil {
		return nil, err
	}
	codes, hashes, err := newRecoveryHasher(h.d.Config().Secrets.Default).newCodes(id.ID)
	if err != nil {
		return nil, err
	}
	al := h.d.AuditLogger()
	err = al.Tx(ctx, func(ctx context.Context) error {
		if err := h.d.IdentityPersister().EnrollTOTP(ctx, id.ID, enc, step, hashes); errors.Is(err, identity.ErrAlreadyEnrolled) {
			return ErrOTPEnrolled
		} else if err != nil {
			return err
		}
		return al.LogTx(ctx, audit.Event{Type: audit.TypeOTPEnroll, UserID: audit.Int64(id.ID), Result: audit.ResultSuccess,
			Metadata: map[string]any{"method": "enroll", "sessionId": sessionID, "rememberMe": f.RememberMe}})
	})
	if err != nil {
		return nil, err
	}
	return codes, nil
}

// checkSecondFactor accepts an unused TOTP code or an unused recovery code; it returns
// which one matched.
func (h *Handler) checkSecondFactor(ctx context.Context, id *identity.Identity, code string) (string, error) {
	if isTOTPCode(code) {
		secret, err := h.d.Cipher().Open(id.TOTPSecret, identityAAD(id.ID))
		if err != nil {
			return "totp", err
		}
		step, ok := matchStep(string(secret), code, time.Now())
		if !ok {
			return "totp", ErrBadOTP
		}
		fresh, err := h.d.IdentityPersister().ConsumeTOTPStep(ctx, id.ID, step)
		if err != nil {
			return "totp", err
		}
		if !fresh {
			return "totp", ErrBadOTP.WithMessage("This one-time code was already used. Wait for the next one.")
		}
		return "totp", nil
	}
	// One conditional UPDATE per stored form the code may have (current key, rotated
	// keys, legacy): the first that consumes a row wins, so a code is used once.
	for _, hash := range newRecoveryHasher(h.d.Config().Secrets.Default).candidates(id.ID, code) {
		ok, err := h.d.IdentityPersister().ConsumeRecoveryCode(ctx, id.ID, hash)
		if err != nil {
			return "recovery_code", err
		}
		if ok {
			return "recovery_code", nil
		}
	}
	return "recovery_code", ErrBadOTP
}

// Profile is GET /me.
type Profile struct {
	ID                  int64               `json:"id"`
	Email               string              `json:"email"`
	Department          identity.Department `json:"department"`
	Employee            identity.Employee   `json:"employee"`
	IsSuperAdmin        bool                `json:"isSuperAdmin"`
	MFAEnabled          bool                `json:"mfaEnabled"`
	Permissions         []string            `json:"permissions"`
	PasskeyPromptStatus string              `json:"passkeyPromptStatus"`
	Signature           string              `json:"signature"`
	SignatureExpiresAt  time.Time           `json:"signatureExpiresAt"`
}

// ErrNotAUser is session.ErrNotAUser, kept here for callers of this package.
var ErrNotAUser = session.ErrNotAUser

func (h *Handler) me(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	p := session.PrincipalFrom(ctx)
	if p == nil || p.IdentityID == 0 {
		x.WriteError(w, r, ErrNotAUser)
		return
	}
	id, err := h.d.IdentityPersister().GetIdentity(ctx, p.IdentityID)
	if errors.Is(err, identity.ErrNotFound) {
		x.WriteError(w, r, session.ErrTokenInvalid)
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	t := id.TypedTraits()
	prof := Profile{
		ID: id.ID, Email: id.Email, IsSuperAdmin: id.IsSuperAdmin, MFAEnabled: id.MFAEnabled,
		Permissions: id.Permissions, PasskeyPromptStatus: id.PasskeyPromptStatus,
		Signature:          h.d.Tokens().FileSigner().Sign(id.ID, p.ExpiresAt),
		SignatureExpiresAt: p.ExpiresAt,
	}
	if t.Department != nil {
		prof.Department = *t.Department
	}
	if t.Employee != nil {
		prof.Employee = *t.Employee
	}
	if prof.Permissions == nil {
		prof.Permissions = []string{}
	}
	if prof.PasskeyPromptStatus == "" {
		prof.PasskeyPromptStatus = identity.PromptPending
	}
	x.WriteData(w, http.StatusOK, prof)
}

type refreshBody struct {
	RefreshToken string `json:"refreshToken"`
}

func (b *refreshBody) Validate() error {
	return x.FirstError(x.Required("refreshToken", b.RefreshToken), x.MaxLen("refreshToken", b.RefreshToken, 512))
}

func (h *Handler) refresh(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var b refreshBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	ts, err := session.RefreshTokens(r.Context(), h.d, b.RefreshToken)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, ts)
}

type logoutBody struct {
	RefreshToken string `json:"refreshToken"`
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b logoutBody
	if err := x.DecodeJSONOptional(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	p := session.PrincipalFrom(ctx)
	t := h.d.Tokens()
	// A refresh token of another of the caller's own sessions ends that one too.
	other := ""
	if b.RefreshToken != "" {
		if sid := t.SessionIDOf(ctx, b.RefreshToken); sid != "" && sid != p.SessionID {
			if owner, _, err := t.Refreshable(ctx, b.RefreshToken); err == nil && owner == p.Subject {
				other = sid
			}
		}
	}
	// The revocations and their event commit together.
	al := h.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := t.RevokeSession(ctx, p.SessionID); err != nil {
			return err
		}
		md := map[string]any{"sessionId": p.SessionID}
		if other != "" {
			if err := t.RevokeSession(ctx, other); err != nil {
				return err
			}
			md["otherSessionId"] = other
		}
		return al.LogTx(ctx, audit.Event{Type: audit.TypeLogout, UserID: audit.Int64(p.IdentityID), Metadata: md})
	}); err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]bool{"success": true})
}

type adminOTPBody struct {
	UserID *int64 `json:"userId"`
	OTP    string `json:"otp"`
}

func (b *adminOTPBody) Validate() error {
	if b.UserID == nil {
		return x.ErrBadRequest.WithMessage("Field 'userId' is required.")
	}
	if *b.UserID <= 0 {
		return x.ErrBadRequest.WithMessage("Field 'userId' must be a positive integer.")
	}
	b.OTP = strings.TrimSpace(b.OTP)
	return x.FirstError(x.Required("otp", b.OTP), x.MaxLen("otp", b.OTP, 64))
}

// adminOTPVerify lets another PVPipe service check a user's current TOTP code (single
// use, rate limited per user). It answers valid:false rather than 4xx for a wrong code.
func (h *Handler) adminOTPVerify(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b adminOTPBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	uid := *b.UserID
	if err := h.d.RateLimiter().Allow(ctx, ratelimit.RuleOTPVerify, "user:"+strconv.FormatInt(uid, 10)); err != nil {
		x.WriteError(w, r, err)
		return
	}
	id, err := h.d.IdentityPersister().GetIdentity(ctx, uid)
	if errors.Is(err, identity.ErrNotFound) {
		x.WriteError(w, r, x.ErrNotFound.WithMessage("Identity not found."))
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	valid := false
	if id.MFAEnabled && id.State == identity.StateActive {
		// A good code is spent (a state change): spending it and its event commit
		// together. A wrong code changes nothing and is logged in the background.
		al := h.d.AuditLogger()
		err := al.Tx(ctx, func(ctx context.Context) error {
			if _, err := h.checkSecondFactor(ctx, id, b.OTP); err != nil {
				return err
			}
			valid = true
			return al.LogTx(ctx, audit.Event{Type: audit.TypeServiceOTPVerify, UserID: audit.Int64(uid), Result: audit.ResultSuccess})
		})
		if err != nil {
			valid = false
			if xe := x.AsError(err); xe.Status >= 500 {
				x.WriteError(w, r, err)
				return
			}
		}
	}
	if !valid {
		h.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypeServiceOTPVerify, UserID: audit.Int64(uid), Result: audit.ResultFailure})
	}
	x.WriteData(w, http.StatusOK, map[string]any{"userId": uid, "valid": valid})
}
