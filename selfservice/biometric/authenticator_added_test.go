package biometric_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/pvpipe/pvauth/internal/testkeys"

	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/push/fcmtest"
)

// aaDevice registers an ES256 device for u and, with fcm, gives it an FCM token.
func aaDevice(t *testing.T, srv *testserver.Server, u *mxUser, fcm bool) (*mxDevice, string) {
	t.Helper()
	k := testkeys.NewES256(t)
	d := mxRegister(t, srv, u, mxFingerprint("aa"), testkeys.PublicPEM(t, &k.PublicKey), devicekey.AlgES256, mxES256(t, k))
	if !fcm {
		return d, ""
	}
	tok := "fcm-aa-" + mxFingerprint("tok")
	testkit.SetFCMToken(t, srv, u.Token, d.ID, tok)
	return d, tok
}

// aaPushes returns the authenticator_added messages about id, by token.
func aaPushes(fcm *fcmtest.Server, id string) map[string]fcmtest.Message {
	out := map[string]fcmtest.Message{}
	for _, m := range fcm.Messages() {
		if m.Data["type"] == "authenticator_added" && m.Data["id"] == id {
			out[m.Token] = m
		}
	}
	return out
}

// Adding a device key pushes authenticator_added to the user's other devices that have
// an FCM token — not to the new device, devices without a token, removed devices or
// another user's — and is audited.
func TestAuthenticatorAddedPushForDevice(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		fcm := fcmtest.New(t)
		srv := testserver.Start(t, dsn, map[string]any{
			"push.fcm.enabled": true, "push.fcm.project_id": "pvpipe-test", "push.fcm.endpoint": fcm.URL,
		})
		t.Cleanup(srv.Client.CloseIdleConnections)
		u, other := mxNewUser(t, srv), mxNewUser(t, srv)
		a, tokA := aaDevice(t, srv, u, true)
		_, tokB := aaDevice(t, srv, u, true)
		aaDevice(t, srv, u, false)
		gone, tokGone := aaDevice(t, srv, u, true)
		if r := srv.Public(t, http.MethodDelete, mxAPI+"/devices/"+gone.ID, u.Token, nil); r.Status != 200 {
			t.Fatalf("delete: %d %s", r.Status, r.Body)
		}
		_, tokOther := aaDevice(t, srv, other, true)

		added, _ := aaDevice(t, srv, u, false)
		got := aaPushes(fcm, added.ID)
		if len(got) != 2 {
			t.Errorf("authenticator_added pushes to %d tokens, want 2 (the other active devices with a token): %v", len(got), got)
		}
		for _, tok := range []string{tokA, tokB} {
			m, ok := got[tok]
			if !ok {
				t.Errorf("no authenticator_added push to %s", tok)
				continue
			}
			want := map[string]string{"type": "authenticator_added", "kind": "device", "id": added.ID, "name": added.DeviceName}
			if len(m.Data) != len(want) {
				t.Errorf("push data %v, want exactly %v", m.Data, want)
			}
			for k, v := range want {
				if m.Data[k] != v {
					t.Errorf("push data[%s] = %q, want %q", k, m.Data[k], v)
				}
			}
		}
		for _, tok := range []string{tokGone, tokOther} {
			if _, ok := got[tok]; ok {
				t.Errorf("authenticator_added pushed to %s (a removed device or another user's)", tok)
			}
		}
		// Each device registration pushed to the devices before it: A's own
		// registration went to nobody, and the new device never hears about itself.
		if n := len(aaPushes(fcm, a.ID)); n != 0 {
			t.Errorf("the first device's registration pushed %d messages", n)
		}

		srv.Registry.AuditLogger().Flush()
		r := srv.Admin(t, http.MethodGet, "/admin/audit-events?page_size=500&type=push.authenticator_added&userId="+strconv.FormatInt(u.ID, 10), nil)
		var out struct {
			Events []struct {
				DeviceID *string        `json:"deviceId"`
				Metadata map[string]any `json:"metadata"`
			} `json:"events"`
		}
		r.Data(t, &out)
		found := false
		for _, e := range out.Events {
			if e.Metadata["authenticatorId"] == added.ID {
				found = true
				if e.Metadata["kind"] != "device" || e.Metadata["devices"] != float64(2) || e.DeviceID == nil || *e.DeviceID != added.ID {
					t.Errorf("audit event %+v", e)
				}
			}
		}
		if !found {
			t.Errorf("no push.authenticator_added audit event for %s: %s", added.ID, r.Body)
		}
	})
}
