package confirmation_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// TestStateChangeEventsCommitWithTheChange: the event of a state change is written in
// the transaction of the change, so it is readable as soon as the answer is, with no
// Flush. The background writer is closed first: an event that still went through it
// would be ignored, so each check fails unless its event committed with its change.
func TestStateChangeEventsCommitWithTheChange(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv := testserver.Start(t, dsn, nil)
		srv.Registry.AuditLogger().Close()

		stored := func(t *testing.T, what string, f audit.Filter, match func(e audit.Event) bool) audit.Event {
			t.Helper()
			f.Limit = 1000
			evs, err := srv.Registry.AuditPersister().ListAuditEvents(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if match(e) {
					return e
				}
			}
			t.Fatalf("%s: no event stored with the change (events: %+v)", what, evs)
			return audit.Event{}
		}
		md := func(e audit.Event, k string) string { s, _ := e.Metadata[k].(string); return s }

		// Identity creation, password login step, OTP setup and enrolment (testkit.NewUser).
		u := testkit.NewUser(t, srv, "conf-")
		uid := &u.ID
		stored(t, "identity create", audit.Filter{UserID: uid, Type: audit.TypeIdentityCreate}, func(audit.Event) bool { return true })
		stored(t, "otp enrol", audit.Filter{UserID: uid, Type: audit.TypeOTPEnroll}, func(e audit.Event) bool { return md(e, "sessionId") != "" })

		// Device registration.
		d := ctNewDevice(t, srv, u, false)
		stored(t, "device register", audit.Filter{UserID: uid, Type: audit.TypeDeviceRegister}, func(e audit.Event) bool {
			return e.DeviceID != nil && *e.DeviceID == d.ID && md(e, "step") == "verify" && e.Result == audit.ResultSuccess
		})

		// Biometric login, then a refresh of its tokens.
		tokens := testkit.MobileLogin(t, srv, d.FP, d.Key, false)
		login := stored(t, "biometric login", audit.Filter{UserID: uid, Type: audit.TypeBiometricLogin}, func(e audit.Event) bool {
			return e.Result == audit.ResultSuccess
		})
		family := md(login, "sessionFamily")
		if family == "" {
			t.Fatalf("biometric login event names no session family: %+v", login)
		}
		r := srv.Public(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]any{"refreshToken": tokens["refreshToken"]})
		if r.Status != http.StatusOK {
			t.Fatalf("refresh: %d %s", r.Status, r.Body)
		}
		stored(t, "refresh", audit.Filter{UserID: uid, Type: audit.TypeTokenRefresh}, func(e audit.Event) bool {
			return md(e, "sessionId") == family && e.DeviceID != nil && *e.DeviceID == d.ID
		})
		// Reuse of the rotated token revokes the family: that event commits with it too.
		r = srv.Public(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]any{"refreshToken": tokens["refreshToken"]})
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("reuse: %d %s", r.Status, r.Body)
		}
		stored(t, "reuse", audit.Filter{UserID: uid, Type: audit.TypeTokenReuse}, func(e audit.Event) bool { return md(e, "sessionId") == family })

		// Confirmation initiate and verify.
		init := ctInit(t, srv, u, "system_config", nil)
		id := testkit.Str(init["confirmationId"])
		if r := ctVerify(t, srv, u, id, d, testkeys.SignChallenge(t, d.Key, testkit.Str(init["challenge"]))); r.Status != http.StatusOK {
			t.Fatalf("verify: %d %s", r.Status, r.Body)
		}
		stored(t, "confirmation verify", audit.Filter{UserID: uid, Type: audit.TypeConfirmation}, func(e audit.Event) bool {
			return md(e, "confirmationId") == id && md(e, "event") == "verify" && e.Result == audit.ResultSuccess
		})

		// OAuth2 client creation.
		var cl struct {
			ID string `json:"client_id"`
		}
		testkit.CreateClient(t, srv, map[string]any{
			"client_name": "durable", "redirect_uris": []string{"https://app.example.com/cb"}, "scope": "openid",
		}, &cl)
		clientID := cl.ID
		stored(t, "client create", audit.Filter{Type: "admin.client.create"}, func(e audit.Event) bool { return md(e, "clientId") == clientID })

		// Admin disable (revokes every session in the same transaction).
		r = srv.Admin(t, http.MethodPatch, "/admin/identities/"+strconv.FormatInt(u.ID, 10), map[string]any{"state": "disabled"})
		if r.Status != http.StatusOK {
			t.Fatalf("disable: %d %s", r.Status, r.Body)
		}
		stored(t, "admin disable", audit.Filter{UserID: uid, Type: audit.TypeIdentityUpdate}, func(e audit.Event) bool {
			_, revoked := e.Metadata["sessionsRevoked"]
			return revoked
		})
	})
}
