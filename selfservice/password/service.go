package password

import (
	"strconv"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x/secretbox"
)

type serviceDeps interface {
	Config() *config.Config
	identity.PersisterProvider
	IdentityHasher() *identity.Hasher
	FlowPersisterProvider
	session.TokensProvider
	audit.LoggerProvider
	ratelimit.LimiterProvider
	Cipher() *secretbox.Box
}

// Service is the password + TOTP login: the password step gives a pending token, the
// second factor (a TOTP code, enrolled on first use, or a recovery code) completes it.
type Service struct{ d serviceDeps }

// NewService builds the service.
func NewService(d serviceDeps) *Service { return &Service{d: d} }

// otpLimitKey is the rate-limit key of code checks against one identity, shared by the
// login and the service-to-service check.
func otpLimitKey(identityID int64) string { return "user:" + strconv.FormatInt(identityID, 10) }
