package sql_test

import (
	"testing"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/persistence/conformance"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
)

// TestConformance runs every persister interface's conformance suite on SQLite and
// PostgreSQL, each check on a fresh database.
func TestConformance(t *testing.T) {
	testdb.ForEachKind(t, func(t *testing.T, newDSN func(t testing.TB) string) {
		newStore := func(t *testing.T) *sqlp.Persister { return testdb.Persister(t, newDSN(t)) }
		t.Run("identity.Persister", func(t *testing.T) { conformance.RunIdentity(t, newStore) })
		t.Run("oauth2.Persister", func(t *testing.T) { conformance.RunOAuth2(t, newStore) })
		t.Run("oauth2.LoginSessionPersister", func(t *testing.T) { conformance.RunLoginSessions(t, newStore) })
		t.Run("oauth2.CIBAPersister", func(t *testing.T) { conformance.RunCIBA(t, newStore) })
		t.Run("confirmation.Persister", func(t *testing.T) { conformance.RunConfirmations(t, newStore) })
		t.Run("password.FlowPersister", func(t *testing.T) { conformance.RunLoginFlows(t, newStore) })
		t.Run("passkey.Persister", func(t *testing.T) { conformance.RunPasskeys(t, newStore) })
		t.Run("devicekey.Persister", func(t *testing.T) { conformance.RunDevices(t, newStore) })
		t.Run("biometric.Persister", func(t *testing.T) { conformance.RunDeviceChallenges(t, newStore) })
		t.Run("session.TokenPersister", func(t *testing.T) { conformance.RunTokens(t, newStore) })
		t.Run("session.KeyPersister", func(t *testing.T) { conformance.RunKeys(t, newStore) })
		t.Run("janitor.Persister", func(t *testing.T) { conformance.RunJanitor(t, newStore) })
		t.Run("audit.Persister", func(t *testing.T) { conformance.RunAudit(t, newStore) })
	})
}
