package password

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// SetupResult is a new TOTP secret, as text, otpauth URL and QR code.
type SetupResult struct {
	Secret     string `json:"secret"`
	OTPAuthURL string `json:"otpauthUrl"`
	QRCodePNG  string `json:"qrCodePng"`
}

// Errors of the second factor.
var (
	ErrBadOTP      = x.ErrUnauthorized.Derive("Invalid one-time code.")
	ErrOTPEnrolled = x.ErrConflict.Derive("TOTP is already enrolled for this account.")
	ErrSetupFirst  = x.ErrBadRequest.Derive("TOTP is not set up yet: call GET /api/v1/auth/otp/setup first.")
)

// SetupOTP gives the pending login of an identity without TOTP a new secret, kept
// (sealed) on the flow until the first code confirms it.
func (s *Service) SetupOTP(ctx context.Context, pendingToken string) (*SetupResult, error) {
	f, id, err := s.pending(ctx, pendingToken)
	if err != nil {
		return nil, err
	}
	if id.MFAEnabled {
		return nil, ErrOTPEnrolled
	}
	key, err := newTOTPKey(s.d.Config().WebAuthn.RP.DisplayName, id.Email)
	if err != nil {
		return nil, err
	}
	enc, err := s.d.Cipher().Seal([]byte(key.Secret()), flowAAD(f.ID))
	if err != nil {
		return nil, err
	}
	png, err := qrPNGDataURI(key.URL())
	if err != nil {
		return nil, err
	}
	al := s.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := s.d.LoginFlowPersister().SetLoginFlowTOTPSecret(ctx, f.ID, enc); err != nil {
			return err
		}
		return al.LogTx(ctx, audit.Event{Type: audit.TypeOTPSetup, UserID: audit.Int64(id.ID)})
	}); err != nil {
		return nil, err
	}
	return &SetupResult{Secret: key.Secret(), OTPAuthURL: key.URL(), QRCodePNG: png}, nil
}

func flowAAD(flowID string) []byte { return []byte("totp:flow:" + flowID) }
func identityAAD(identityID int64) []byte {
	return []byte("totp:identity:" + strconv.FormatInt(identityID, 10))
}

// VerifyResult is a completed login; an enrolment adds its recovery codes.
type VerifyResult struct {
	*session.TokenSet
	RecoveryCodes []string `json:"recoveryCodes,omitempty"`
}

// VerifyOTP completes a pending login with its second factor: the first TOTP code
// enrols the secret of SetupOTP; later logins take a TOTP or a recovery code.
func (s *Service) VerifyOTP(ctx context.Context, pendingToken, code string) (*VerifyResult, error) {
	f, id, err := s.pending(ctx, pendingToken)
	if err != nil {
		return nil, err
	}
	if err := s.d.RateLimiter().Allow(ctx, ratelimit.RuleOTPVerify, otpLimitKey(id.ID)); err != nil {
		return nil, err
	}
	// Count the attempt before checking the code, so that parallel guesses cannot get
	// past MaxOTPFailures; a good code gives its attempt back when the flow completes.
	if ok, err := s.d.LoginFlowPersister().ReserveLoginFlowAttempt(ctx, f.ID); err != nil {
		return nil, err
	} else if !ok {
		return nil, ErrPendingInvalid
	}
	var recovery []string
	method, sid := "enroll", uuid.NewString()
	if !id.MFAEnabled {
		recovery, err = s.enroll(ctx, f, id, code, sid)
	} else {
		method, err = s.checkSecondFactor(ctx, id, code)
	}
	if err != nil {
		// A wrong code (a 401) is a counted failure; a server error is none.
		var xe *x.Error
		if errors.As(err, &xe) && errors.Is(xe, x.ErrUnauthorized) {
			s.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypeOTPVerify, UserID: audit.Int64(id.ID), Result: audit.ResultFailure,
				Reason: xe.Message, Metadata: map[string]any{"failedAttempts": f.FailedAttempts + 1, "method": method}})
		}
		return nil, err
	}
	ts, err := s.complete(ctx, f, id, sid, method, recovery == nil)
	if err != nil {
		return nil, err
	}
	return &VerifyResult{TokenSet: ts, RecoveryCodes: recovery}, nil
}

// complete issues the session of a login whose second factor was accepted. One pending
// token completes one login, even if two good codes race; completing it in the token
// transaction orders it against a revocation of the identity (a revoked pending token
// completes nothing). The login's event commits in it too when logEvent (an enrolment's
// event committed with the enrolment).
func (s *Service) complete(ctx context.Context, f *Flow, id *identity.Identity, sid, method string, logEvent bool) (*session.TokenSet, error) {
	return s.d.Tokens().Issue(ctx, session.IssueRequest{
		IdentityID: id.ID, Email: id.Email, AMR: []string{session.AMRPassword, session.AMROTP}, RememberMe: f.RememberMe,
		SessionID: sid,
		InTx: func(ctx context.Context) error {
			ok, err := s.d.LoginFlowPersister().CompleteLoginFlow(ctx, f.ID)
			if err != nil {
				return err
			}
			if !ok {
				return ErrPendingInvalid
			}
			if !logEvent {
				return nil
			}
			return s.d.AuditLogger().LogTx(ctx, audit.Event{Type: audit.TypeOTPVerify, UserID: audit.Int64(id.ID), Result: audit.ResultSuccess,
				Metadata: map[string]any{"method": method, "sessionId": sid, "rememberMe": f.RememberMe}})
		},
	})
}

// enroll completes TOTP enrolment with the first code and returns the recovery codes.
// The enrolment and its event (naming sessionID, the login it starts) commit together,
// in a transaction of their own: inside the token transaction, after the identity's
// shared lock, two racing enrolments would deadlock on PostgreSQL.
func (s *Service) enroll(ctx context.Context, f *Flow, id *identity.Identity, code, sessionID string) ([]string, error) {
	if f.PendingTOTPSecret == nil {
		return nil, ErrSetupFirst
	}
	secret, err := s.d.Cipher().Open(*f.PendingTOTPSecret, flowAAD(f.ID))
	if err != nil {
		return nil, err
	}
	step, ok := matchStep(string(secret), code, time.Now())
	if !isTOTPCode(code) || !ok {
		return nil, ErrBadOTP
	}
	enc, err := s.d.Cipher().Seal(secret, identityAAD(id.ID))
	if err != nil {
		return nil, err
	}
	codes, hashes, err := newRecoveryHasher(s.d.Config().Secrets.Default).newCodes(id.ID)
	if err != nil {
		return nil, err
	}
	al := s.d.AuditLogger()
	err = al.Tx(ctx, func(ctx context.Context) error {
		if err := s.d.IdentityPersister().EnrollTOTP(ctx, id.ID, enc, step, hashes); errors.Is(err, identity.ErrAlreadyEnrolled) {
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
func (s *Service) checkSecondFactor(ctx context.Context, id *identity.Identity, code string) (string, error) {
	if isTOTPCode(code) {
		return "totp", s.consumeTOTP(ctx, id, code)
	}
	// One conditional UPDATE per stored form the code may have (current key, rotated
	// keys, legacy): the first that consumes a row wins, so a code is used once.
	for _, hash := range newRecoveryHasher(s.d.Config().Secrets.Default).candidates(id.ID, code) {
		ok, err := s.d.IdentityPersister().ConsumeRecoveryCode(ctx, id.ID, hash)
		if err != nil {
			return "recovery_code", err
		}
		if ok {
			return "recovery_code", nil
		}
	}
	return "recovery_code", ErrBadOTP
}

// consumeTOTP accepts a TOTP code of id's secret whose time step was not used yet.
func (s *Service) consumeTOTP(ctx context.Context, id *identity.Identity, code string) error {
	secret, err := s.d.Cipher().Open(id.TOTPSecret, identityAAD(id.ID))
	if err != nil {
		return err
	}
	step, ok := matchStep(string(secret), code, time.Now())
	if !ok {
		return ErrBadOTP
	}
	fresh, err := s.d.IdentityPersister().ConsumeTOTPStep(ctx, id.ID, step)
	if err != nil {
		return err
	}
	if !fresh {
		return ErrBadOTP.WithMessage("This one-time code was already used. Wait for the next one.")
	}
	return nil
}

// CheckOTP lets another PVPipe service check a user's current TOTP code (single use,
// rate limited per user). A wrong code is no error: it is valid false.
func (s *Service) CheckOTP(ctx context.Context, uid int64, code string) (bool, error) {
	if err := s.d.RateLimiter().Allow(ctx, ratelimit.RuleOTPVerify, otpLimitKey(uid)); err != nil {
		return false, err
	}
	id, err := s.d.IdentityPersister().GetIdentity(ctx, uid)
	if errors.Is(err, identity.ErrNotFound) {
		return false, identity.ErrIdentityNotFound
	} else if err != nil {
		return false, err
	}
	valid := false
	if id.MFAEnabled && id.State == identity.StateActive {
		// A good code is spent (a state change): spending it and its event commit
		// together. A wrong code changes nothing and is logged in the background.
		al := s.d.AuditLogger()
		err := al.Tx(ctx, func(ctx context.Context) error {
			if _, err := s.checkSecondFactor(ctx, id, code); err != nil {
				return err
			}
			valid = true
			return al.LogTx(ctx, audit.Event{Type: audit.TypeServiceOTPVerify, UserID: audit.Int64(uid), Result: audit.ResultSuccess})
		})
		if err != nil {
			valid = false
			if xe := x.AsError(err); xe.Status >= 500 {
				return false, err
			}
		}
	}
	if !valid {
		s.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypeServiceOTPVerify, UserID: audit.Int64(uid), Result: audit.ResultFailure})
	}
	return valid, nil
}
