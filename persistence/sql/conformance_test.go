package sql_test

import (
	"testing"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/persistence/conformance"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
)

// TestConformance runs every persister interface's conformance suite on SQLite and
// PostgreSQL, each check on a fresh database.
func TestConformance(t *testing.T) {
	testdb.ForEachKind(t, func(t *testing.T, newDSN func(t testing.TB) string) {
		newStore := func(t *testing.T) *sqlp.Persister { return testdb.Persister(t, newDSN(t)) }
		t.Run("identity.Persister", func(t *testing.T) { conformance.RunIdentity(t, as[identity.Persister](newStore)) })
		t.Run("oauth2.Persister", func(t *testing.T) { conformance.RunOAuth2(t, as[conformance.OAuth2Store](newStore)) })
		t.Run("oauth2.LoginSessionPersister", func(t *testing.T) { conformance.RunLoginSessions(t, as[conformance.OAuth2Store](newStore)) })
		t.Run("oauth2.CIBAPersister", func(t *testing.T) { conformance.RunCIBA(t, as[conformance.CIBAStore](newStore)) })
		t.Run("confirmation.Persister", func(t *testing.T) { conformance.RunConfirmations(t, as[conformance.ConfirmationStore](newStore)) })
		t.Run("password.FlowPersister", func(t *testing.T) { conformance.RunLoginFlows(t, as[conformance.LoginFlowStore](newStore)) })
		t.Run("passkey.Persister", func(t *testing.T) { conformance.RunPasskeys(t, as[conformance.PasskeyStore](newStore)) })
		t.Run("devicekey.Persister", func(t *testing.T) { conformance.RunDevices(t, as[conformance.DeviceStore](newStore)) })
		t.Run("biometric.Persister", func(t *testing.T) { conformance.RunDeviceChallenges(t, as[conformance.DeviceStore](newStore)) })
		t.Run("provider.TokenPersister", func(t *testing.T) { conformance.RunTokens(t, as[conformance.TokenStore](newStore)) })
		t.Run("provider.KeyPersister", func(t *testing.T) { conformance.RunKeys(t, as[provider.KeyPersister](newStore)) })
		t.Run("janitor.Persister", func(t *testing.T) { conformance.RunJanitor(t, as[conformance.JanitorStore](newStore)) })
		t.Run("audit.Persister", func(t *testing.T) { conformance.RunAudit(t, as[audit.Persister](newStore)) })
	})
}

// as gives newStore's Persister as the interface I a suite takes (interfaces.go asserts
// at compile time that it implements every one).
func as[I any](newStore func(t *testing.T) *sqlp.Persister) func(t *testing.T) I {
	return func(t *testing.T) I { return any(newStore(t)).(I) }
}
