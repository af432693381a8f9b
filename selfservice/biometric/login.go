package biometric

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// LoginChallengeRequest names the device that wants to sign in.
type LoginChallengeRequest struct {
	DeviceFingerprint string `json:"deviceFingerprint"`
}

func (b *LoginChallengeRequest) Validate() error {
	return x.FirstError(x.RequiredMaxLen("deviceFingerprint", b.DeviceFingerprint, 255),
		noNUL("deviceFingerprint", b.DeviceFingerprint))
}

// LoginChallenge gives the active device with b's fingerprint a challenge to sign in with.
func (s *Service) LoginChallenge(ctx context.Context, b *LoginChallengeRequest) (*ChallengeResult, error) {
	if err := s.d.RateLimiter().Allow(ctx, ratelimit.RuleMobileChallenge, "fp:"+b.DeviceFingerprint); err != nil {
		return nil, err
	}
	chal, hash, err := devicekey.NewChallenge()
	if err != nil {
		return nil, err
	}
	// The device is looked up by the insert itself: one statement on the login path.
	c := &Challenge{ID: uuid.NewString(), Kind: ChallengeLogin, ChallengeHash: hash,
		ExpiresAt: time.Now().Add(s.d.Config().TTL.Challenge)}
	ok, err := s.d.BiometricPersister().CreateLoginChallenge(ctx, b.DeviceFingerprint, c)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrDeviceInactive
	}
	return &ChallengeResult{Challenge: chal, ExpiresAt: c.ExpiresAt, SessionID: c.ID}, nil
}

// LoginResult is a finished mobile login.
type LoginResult struct {
	Success bool              `json:"success"`
	Tokens  *session.TokenSet `json:"tokens"`
}

// Login signs in the device whose login challenge b signs. The signature is checked
// before the challenge's state, so that a bad signature is 401 even on a used challenge
// and a good one on a used challenge is 400.
func (s *Service) Login(ctx context.Context, b *SignedRequest) (*LoginResult, error) {
	if err := s.d.RateLimiter().Allow(ctx, ratelimit.RuleMobileBiometric, "session:"+b.SessionID); err != nil {
		return nil, err
	}
	if _, err := uuid.Parse(b.SessionID); err != nil {
		return nil, ErrSessionExpired
	}
	// One read for the challenge, its device and the owner: this is the hot path.
	c, d, owner, err := s.d.BiometricPersister().GetLoginChallenge(ctx, b.SessionID)
	if errors.Is(err, ErrChallengeNotFound) {
		return nil, ErrSessionExpired
	} else if err != nil {
		return nil, err
	}
	meta := map[string]any{"challengeHash": c.ChallengeHash, "signatureHash": audit.Hash(b.SignedChallenge), "sessionId": c.ID}
	if err := devicekey.VerifyChallenge(d.PublicKey, d.KeyAlgorithm, c.ChallengeHash, b.SignedChallenge); err != nil {
		s.auditDevice(ctx, audit.TypeBiometricLogin, d.UserID, d.ID, audit.ResultFailure, "signature verification failed", meta)
		return nil, ErrBadSignature
	}
	now := time.Now()
	if !live(c, now) {
		return nil, ErrSessionExpired
	}
	if !d.IsActive {
		return nil, ErrDeviceInactive
	}
	if owner.State != identity.StateActive {
		s.auditDevice(ctx, audit.TypeBiometricLogin, d.UserID, d.ID, audit.ResultFailure, "identity disabled or deleted", meta)
		return nil, ErrBadSignature // as for bad credentials: nothing about the account
	}
	ts, err := s.issue(ctx, c, d, owner, b.RememberMe, now, meta)
	if err != nil {
		return nil, err
	}
	// lastUsedAt is for display: a minute's precision spares a write per login under load.
	if d.LastUsedAt == nil || now.Sub(*d.LastUsedAt) >= time.Minute {
		_ = s.d.BiometricPersister().TouchDevice(ctx, d.ID, now)
	}
	return &LoginResult{Success: true, Tokens: ts}, nil
}

// issue issues the tokens of a login. The challenge is consumed in the transaction that
// stores them: exactly one of concurrent logins with it gets tokens, and a failed issue
// leaves it unused. The login's event commits with the tokens too.
func (s *Service) issue(ctx context.Context, c *Challenge, d *Device, owner *Owner, rememberMe bool, now time.Time, meta map[string]any) (*session.TokenSet, error) {
	sid := uuid.NewString()
	return s.d.Tokens().Issue(ctx, session.IssueRequest{
		IdentityID: d.UserID, Email: owner.Email, AMR: []string{session.AMRHardware}, DeviceID: d.ID, RememberMe: rememberMe,
		SessionID: sid,
		InTx: func(ctx context.Context) error {
			ok, err := s.d.BiometricPersister().ConsumeDeviceChallenge(ctx, c.ID, now)
			if err != nil {
				return err
			}
			if !ok {
				return ErrSessionExpired
			}
			meta["rememberMe"], meta["sessionFamily"] = rememberMe, sid
			return s.d.AuditLogger().LogTx(ctx, deviceEvent(audit.TypeBiometricLogin, d.UserID, d.ID, audit.ResultSuccess, "", meta))
		},
	})
}
