package passkey_test

import (
	"net/http"
	"testing"

	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/push/fcmtest"
)

// aaDevice registers a device key for a over HTTP and gives it an FCM token.
func aaDevice(t *testing.T, srv *testserver.Server, a *account, tok string) string {
	t.Helper()
	d := testkit.RegisterDevice(t, srv, a.token, nil, map[string]any{"deviceName": "Phone " + tok, "deviceFingerprint": "aa-" + tok})
	testkit.SetFCMToken(t, srv, a.token, d.ID, tok)
	return d.ID
}

// Adding a passkey pushes authenticator_added (kind passkey) to the user's devices that
// have an FCM token, and no one else's.
func TestAuthenticatorAddedPushForPasskey(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		fcm := fcmtest.New(t)
		srv := startServer(t, dsn, map[string]any{
			"push.fcm.enabled": true, "push.fcm.project_id": "pvpipe-test", "push.fcm.endpoint": fcm.URL,
		})
		t.Cleanup(srv.Client.CloseIdleConnections)
		a, b := newAccount(t, srv), newAccount(t, srv)
		tokA := "fcm-pk-a-" + dsn[:6]
		tokB := "fcm-pk-b-" + dsn[:6]
		aaDevice(t, srv, a, tokA)
		aaDevice(t, srv, b, tokB)
		fcm.Reset()

		pk := register(t, srv, a, "YubiKey 5")
		var got []fcmtest.Message
		for _, m := range fcm.Messages() {
			if m.Data["type"] == "authenticator_added" {
				got = append(got, m)
			}
		}
		if len(got) != 1 || got[0].Token != tokA {
			t.Fatalf("authenticator_added pushes %+v, want one to %s", got, tokA)
		}
		want := map[string]string{"type": "authenticator_added", "kind": "passkey", "id": pk.id, "name": "YubiKey 5"}
		if len(got[0].Data) != len(want) {
			t.Errorf("push data %v, want exactly %v", got[0].Data, want)
		}
		for k, v := range want {
			if got[0].Data[k] != v {
				t.Errorf("push data[%s] = %q, want %q", k, got[0].Data[k], v)
			}
		}
		found := false
		srv.Registry.AuditLogger().Flush()
		r := srv.Admin(t, http.MethodGet, "/admin/audit-events?type=push.authenticator_added", nil)
		var out struct {
			Events []struct {
				UserID   int64          `json:"userId"`
				Metadata map[string]any `json:"metadata"`
			} `json:"events"`
		}
		r.Data(t, &out)
		for _, e := range out.Events {
			if e.Metadata["authenticatorId"] == pk.id {
				found = e.UserID == a.id && e.Metadata["kind"] == "passkey" && e.Metadata["devices"] == float64(1)
			}
		}
		if !found {
			t.Errorf("no push.authenticator_added audit event for the passkey: %s", r.Body)
		}
	})
}
