package confirmation_test

// Action confirmations over real HTTP, on SQLite and PostgreSQL, with the real FCM sender
// (firebase.google.com/go/v4 messaging) pointed at the fcmtest double.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/push"
	"github.com/pvpipe/pvauth/push/fcmtest"
)

const (
	ctBase     = "/api/v1/auth/confirmation"
	ctInitiate = ctBase + "/initiate"
	ctDevices  = "/api/v1/auth/devices"
)

// ---------------------------------------------------------------------------------------
// Helpers.

type ctDevice struct {
	ID       string
	FP       string
	Key      *ecdsa.PrivateKey
	FCMToken string
}

// ctNewDevice registers a fresh ES256 device for u; with fcm it also sets an FCM token.
func ctNewDevice(t testing.TB, srv *testserver.Server, u *testkit.User, fcm bool) *ctDevice {
	t.Helper()
	fp := "CONF-" + testkit.Unique()
	td := testkit.RegisterDevice(t, srv, u.JWT, nil, map[string]any{"deviceName": "Phone " + fp, "deviceFingerprint": fp})
	d := &ctDevice{ID: td.ID, FP: fp, Key: td.Key}
	if fcm {
		d.FCMToken = "fcm-" + testkit.Unique()
		testkit.SetFCMToken(t, srv, u.JWT, d.ID, d.FCMToken)
	}
	return d
}

// ctInit initiates a confirmation and expects 200; it returns data.
func ctInit(t testing.TB, srv *testserver.Server, u *testkit.User, actionType string, payload any) map[string]any {
	t.Helper()
	body := map[string]any{"actionType": actionType}
	if payload != nil {
		body["actionPayload"] = payload
	}
	r := srv.Public(t, http.MethodPost, ctInitiate, u.JWT, body)
	if r.Status != http.StatusOK {
		t.Fatalf("initiate: %d %s", r.Status, r.Body)
	}
	d := testkit.DataObject(t, r)
	if testkit.Str(d["confirmationId"]) == "" || testkit.Str(d["challenge"]) == "" {
		t.Fatalf("initiate: %s", r.Body)
	}
	return d
}

func ctStatus(t testing.TB, srv *testserver.Server, u *testkit.User, id string) string {
	t.Helper()
	r := srv.Public(t, http.MethodGet, ctBase+"/"+id+"/status", u.JWT, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("status: %d %s", r.Status, r.Body)
	}
	return testkit.Str(testkit.DataObject(t, r)["status"])
}

func ctVerify(t testing.TB, srv *testserver.Server, u *testkit.User, id string, d *ctDevice, sig string) *testserver.Response {
	t.Helper()
	return srv.Public(t, http.MethodPost, ctBase+"/"+id+"/verify", u.JWT, map[string]any{"deviceId": d.ID, "signedChallenge": sig})
}

func ctReject(t testing.TB, srv *testserver.Server, u *testkit.User, id string, body any) *testserver.Response {
	t.Helper()
	return srv.Public(t, http.MethodPost, ctBase+"/"+id+"/reject", u.JWT, body)
}

// ctAudit is testkit.AuditEvents as JSON (to search for secrets) and decoded loosely.
func ctAudit(t testing.TB, srv *testserver.Server, uid int64) (string, []map[string]any) {
	t.Helper()
	raw, err := json.Marshal(testkit.AuditEvents(t, srv, uid))
	if err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	if err := json.Unmarshal(raw, &events); err != nil {
		t.Fatal(err)
	}
	return string(raw), events
}

// ctPushServer starts the FCM double and a server whose real FCM sender points at it.
func ctPushServer(t *testing.T, dsn string, extra map[string]any) (*testserver.Server, *fcmtest.Server) {
	t.Helper()
	fcm := fcmtest.New(t)
	set := map[string]any{
		"push.fcm.enabled":    true,
		"push.fcm.project_id": "pvpipe-test",
		"push.fcm.endpoint":   fcm.URL,
	}
	for k, v := range extra {
		set[k] = v
	}
	srv := testserver.Start(t, dsn, set)
	// Concurrent requests leave dialled-but-unused connections, for which
	// http.Server.Shutdown waits up to 5 s; close them before the server stops.
	t.Cleanup(srv.Client.CloseIdleConnections)
	return srv, fcm
}

// ---------------------------------------------------------------------------------------
// Tests.

func TestConfirmation(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv, fcm := ctPushServer(t, dsn, nil)
		for _, tc := range []struct {
			name string
			fn   func(*testing.T, *testserver.Server, *fcmtest.Server)
		}{
			{"InitiateStatusVerify", ctInitiateStatusVerify},
			{"Reject", ctRejectFlow},
			{"Validation", ctValidation},
			{"OtherUsers", ctOtherUsers},
			{"DeviceChecks", ctDeviceChecks},
			{"BadSignature", ctBadSignature},
			{"PushPerActiveDevice", ctPushPerDevice},
			{"PushFailureDoesNotFail", ctPushFailure},
			{"PushUnregisteredClearsToken", ctPushUnregistered},
			{"PushHangBoundedByDeadline", ctPushHang},
			{"Admin", ctAdmin},
			{"AuditHashesOnly", ctAuditHashes},
			{"CIBAActionTypeReserved", ctCIBAReserved},
		} {
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, srv, fcm) })
		}
	})
}

func ctInitiateStatusVerify(t *testing.T, srv *testserver.Server, _ *fcmtest.Server) {
	u := testkit.NewUser(t, srv, "conf-")
	d := ctNewDevice(t, srv, u, false)
	payload := map[string]any{"amount": 50000, "toAccount": "VCB-123456789", "currency": "VND"}
	before := time.Now()
	c := ctInit(t, srv, u, "transfer_money", payload)
	id := testkit.Str(c["confirmationId"])
	if c["status"] != "pending" || c["actionType"] != "transfer_money" {
		t.Errorf("initiate: %v", c)
	}
	// The challenge names the action (API.md §3, dynamic linking): standard base64 of
	// six lines whose nonce carries the 32 random bytes.
	if raw, err := base64.StdEncoding.DecodeString(testkit.Str(c["challenge"])); err != nil {
		t.Errorf("challenge %v: not standard base64 (%v)", c["challenge"], err)
	} else if lines := strings.Split(string(raw), "\n"); len(lines) != 6 || lines[0] != "pvauth-confirmation-v1" || lines[1] != testkit.Str(c["confirmationId"]) {
		t.Errorf("challenge text %q: want the six lines of API.md §3", raw)
	} else if nonce, err := base64.RawURLEncoding.DecodeString(lines[5]); err != nil || len(nonce) != 32 {
		t.Errorf("challenge nonce %q: want 32 bytes of base64url without padding (%v)", lines[5], err)
	}
	exp, err := time.Parse(time.RFC3339, testkit.Str(c["expiresAt"]))
	if err != nil || exp.Before(before.Add(5*time.Minute-2*time.Second)) || exp.After(time.Now().Add(5*time.Minute+time.Second)) {
		t.Errorf("expiresAt %v, want about 5 minutes from now", c["expiresAt"])
	}

	r := srv.Public(t, http.MethodGet, ctBase+"/"+id+"/status", u.JWT, nil)
	if testkit.CheckStatus(t, "status", r, 200) {
		s := testkit.DataObject(t, r)
		if s["confirmationId"] != id || s["status"] != "pending" || s["actionType"] != "transfer_money" {
			t.Errorf("status: %s", r.Body)
		}
		p, _ := s["actionPayload"].(map[string]any)
		if p["amount"] != json.Number("50000") || p["toAccount"] != "VCB-123456789" || p["currency"] != "VND" {
			t.Errorf("actionPayload: %v", s["actionPayload"])
		}
		for _, k := range []string{"createdAt", "expiresAt", "updatedAt"} {
			if _, err := time.Parse(time.RFC3339, testkit.Str(s[k])); err != nil {
				t.Errorf("%s = %v", k, s[k])
			}
		}
		if _, ok := s["userId"]; ok {
			t.Errorf("the self-service status shows userId: %s", r.Body)
		}
	}

	r = ctVerify(t, srv, u, id, d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"])))
	if testkit.CheckStatus(t, "verify", r, 200) {
		v := testkit.DataObject(t, r)
		if v["success"] != true || v["confirmationId"] != id || v["status"] != "approved" {
			t.Errorf("verify: %s", r.Body)
		}
	}
	if s := ctStatus(t, srv, u, id); s != "approved" {
		t.Errorf("status after verify: %s", s)
	}
	// Exactly once: a second approval and a late rejection are conflicts.
	testkit.WantErrorWords(t, "verify again", ctVerify(t, srv, u, id, d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))), 409)
	testkit.WantErrorWords(t, "reject after approve", ctReject(t, srv, u, id, map[string]any{"reason": "too late"}), 409)
	if s := ctStatus(t, srv, u, id); s != "approved" {
		t.Errorf("status after the late calls: %s", s)
	}

	// No payload at all is fine; status shows actionPayload null.
	c = ctInit(t, srv, u, "system_config", nil)
	r = srv.Public(t, http.MethodGet, ctBase+"/"+testkit.Str(c["confirmationId"])+"/status", u.JWT, nil)
	if testkit.CheckStatus(t, "status without payload", r, 200) {
		if v, ok := testkit.DataObject(t, r)["actionPayload"]; !ok || v != nil {
			t.Errorf("actionPayload = %v (present %v), want null", v, ok)
		}
	}
}

func ctRejectFlow(t *testing.T, srv *testserver.Server, _ *fcmtest.Server) {
	u := testkit.NewUser(t, srv, "conf-")
	d := ctNewDevice(t, srv, u, false)
	c := ctInit(t, srv, u, "delete_user", map[string]any{"userId": 42})
	id := testkit.Str(c["confirmationId"])
	r := ctReject(t, srv, u, id, map[string]any{"reason": "Suspicious activity detected"})
	if testkit.CheckStatus(t, "reject", r, 200) {
		v := testkit.DataObject(t, r)
		if v["success"] != true || v["confirmationId"] != id || v["status"] != "rejected" {
			t.Errorf("reject: %s", r.Body)
		}
	}
	if s := ctStatus(t, srv, u, id); s != "rejected" {
		t.Errorf("status after reject: %s", s)
	}
	// Approve after reject: 409, even with a good signature.
	testkit.WantErrorWords(t, "approve after reject", ctVerify(t, srv, u, id, d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))), 409)
	testkit.WantErrorWords(t, "reject again", ctReject(t, srv, u, id, nil), 409)
	if s := ctStatus(t, srv, u, id); s != "rejected" {
		t.Errorf("status after the late calls: %s", s)
	}

	// reject without a body, and with an empty object.
	for _, body := range []any{nil, map[string]any{}} {
		c := ctInit(t, srv, u, "purchase_order", nil)
		r := ctReject(t, srv, u, testkit.Str(c["confirmationId"]), body)
		testkit.CheckStatus(t, fmt.Sprintf("reject with body %v", body), r, 200)
	}
	// A reason over 500 characters is refused by name.
	c = ctInit(t, srv, u, "purchase_order", nil)
	testkit.WantErrorWords(t, "reject with a long reason", ctReject(t, srv, u, testkit.Str(c["confirmationId"]), map[string]any{"reason": strings.Repeat("r", 501)}), 400, "reason")
}

func ctValidation(t *testing.T, srv *testserver.Server, _ *fcmtest.Server) {
	u := testkit.NewUser(t, srv, "conf-")
	post := func(body any) *testserver.Response {
		return srv.Public(t, http.MethodPost, ctInitiate, u.JWT, body)
	}
	// The 4 KiB limit is on the serialized (compact) payload: {"d":"…"} is n+8 bytes.
	testkit.CheckStatus(t, "payload of exactly 4096 bytes", post(map[string]any{"actionType": "x", "actionPayload": map[string]any{"d": strings.Repeat("a", 4096-8)}}), 200)
	testkit.WantErrorWords(t, "payload of 4097 bytes", post(map[string]any{"actionType": "x", "actionPayload": map[string]any{"d": strings.Repeat("a", 4096-7)}}), 400, "actionPayload")
	testkit.WantErrorWords(t, "payload of 10 KiB", post(map[string]any{"actionType": "x", "actionPayload": map[string]any{"d": strings.Repeat("a", 10<<10)}}), 400, "actionPayload")
	// Whitespace does not count: the serialized size does.
	spaced := `{"actionType":"x","actionPayload":{"d":"` + strings.Repeat("a", 3000) + `"` + strings.Repeat(" ", 3000) + `}}`
	testkit.CheckStatus(t, "payload padded with whitespace", post(spaced), 200)

	// The payload is kept as sent (compacted): big integers keep every digit, and
	// characters JSON encoders like to escape are not inflated against the limit.
	r := post(`{"actionType":"x","actionPayload":{"id": 9007199254740993, "note": "a<b & c>d", "n": 1.50}}`)
	if testkit.CheckStatus(t, "payload with a big integer", r, 200) {
		r = srv.Public(t, http.MethodGet, ctBase+"/"+testkit.Str(testkit.DataObject(t, r)["confirmationId"])+"/status", u.JWT, nil)
		var st struct {
			Data struct {
				ActionPayload json.RawMessage `json:"actionPayload"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.Body, &st); err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(st.Data.ActionPayload))
		dec.UseNumber()
		var p map[string]any
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("actionPayload %s: %v", st.Data.ActionPayload, err)
		}
		if p["id"] != json.Number("9007199254740993") || p["note"] != "a<b & c>d" {
			t.Errorf("actionPayload came back as %s, want the values sent", st.Data.ActionPayload)
		}
	}
	// (Raw JSON: json.Marshal on the client side would escape '<' itself.)
	testkit.CheckStatus(t, "payload of 4096 bytes full of '<'", post(`{"actionType":"x","actionPayload":{"d":"`+strings.Repeat("<", 4096-8)+`"}}`), 200)
	testkit.WantErrorWords(t, "payload of 4097 bytes full of '<'", post(`{"actionType":"x","actionPayload":{"d":"`+strings.Repeat("<", 4096-7)+`"}}`), 400, "actionPayload")

	for _, p := range []string{`[1,2,3]`, `"a string"`, `42`, `true`, `[{"a":1}]`} {
		testkit.WantErrorWords(t, "payload "+p, post(`{"actionType":"x","actionPayload":`+p+`}`), 400, "actionPayload")
	}
	testkit.CheckStatus(t, "payload null", post(`{"actionType":"x","actionPayload":null}`), 200)

	testkit.CheckStatus(t, "actionType of 100", post(map[string]any{"actionType": strings.Repeat("t", 100)}), 200)
	testkit.WantErrorWords(t, "actionType of 101", post(map[string]any{"actionType": strings.Repeat("t", 101)}), 400, "actionType")
	testkit.WantErrorWords(t, "no actionType", post(map[string]any{"actionPayload": map[string]any{"a": 1}}), 400, "actionType")
	testkit.WantErrorWords(t, "blank actionType", post(map[string]any{"actionType": "   "}), 400, "actionType")
	testkit.WantErrorWords(t, "actionType not a string", post(`{"actionType": 7}`), 400, "actionType")
	testkit.WantErrorWords(t, "malformed JSON", post(`{"actionType": "x"`), 400)
	testkit.WantErrorWords(t, "no bearer", srv.Public(t, http.MethodPost, ctInitiate, "", map[string]any{"actionType": "x"}), 401)

	// Ids that are not UUIDs are plain "not found".
	testkit.WantErrorWords(t, "status of a non-UUID id", srv.Public(t, http.MethodGet, ctBase+"/conf-123/status", u.JWT, nil), 404)
	testkit.WantErrorWords(t, "status of an unknown id", srv.Public(t, http.MethodGet, ctBase+"/6f1c1a60-1f3e-4c36-9b1d-1b0d3f0e0a11/status", u.JWT, nil), 404)
	c := ctInit(t, srv, u, "x", nil)
	id := testkit.Str(c["confirmationId"])
	testkit.WantErrorWords(t, "verify without deviceId", srv.Public(t, http.MethodPost, ctBase+"/"+id+"/verify", u.JWT, map[string]any{"signedChallenge": "abc"}), 400, "deviceId")
	testkit.WantErrorWords(t, "verify without signedChallenge", srv.Public(t, http.MethodPost, ctBase+"/"+id+"/verify", u.JWT, map[string]any{"deviceId": "6f1c1a60-1f3e-4c36-9b1d-1b0d3f0e0a11"}), 400, "signedChallenge")
	if s := ctStatus(t, srv, u, id); s != "pending" {
		t.Errorf("status after invalid verifies: %s", s)
	}
}

// Another user's confirmation is 404 on every route, and stays pending.
func ctOtherUsers(t *testing.T, srv *testserver.Server, _ *fcmtest.Server) {
	a, b := testkit.NewUser(t, srv, "conf-"), testkit.NewUser(t, srv, "conf-")
	bd := ctNewDevice(t, srv, b, false)
	c := ctInit(t, srv, a, "transfer_money", map[string]any{"amount": 1})
	id := testkit.Str(c["confirmationId"])
	testkit.WantErrorWords(t, "status by another user", srv.Public(t, http.MethodGet, ctBase+"/"+id+"/status", b.JWT, nil), 404, "Confirmation not found")
	testkit.WantErrorWords(t, "verify by another user", ctVerify(t, srv, b, id, bd, testkeys.SignChallenge(t, bd.Key, testkit.Str(c["challenge"]))), 404, "Confirmation not found")
	testkit.WantErrorWords(t, "reject by another user", ctReject(t, srv, b, id, map[string]any{"reason": "mine now"}), 404, "Confirmation not found")
	if s := ctStatus(t, srv, a, id); s != "pending" {
		t.Errorf("status after another user's attempts: %s", s)
	}
}

// The device must be the caller's and active.
func ctDeviceChecks(t *testing.T, srv *testserver.Server, _ *fcmtest.Server) {
	a, b := testkit.NewUser(t, srv, "conf-"), testkit.NewUser(t, srv, "conf-")
	ad := ctNewDevice(t, srv, a, false)
	bd := ctNewDevice(t, srv, b, false)
	c := ctInit(t, srv, a, "approve_document", map[string]any{"documentId": "doc-1"})
	id, chal := testkit.Str(c["confirmationId"]), testkit.Str(c["challenge"])

	// A's confirmation, B's device (signed with B's key): the device is not A's.
	testkit.WantErrorWords(t, "verify with another user's device", ctVerify(t, srv, a, id, bd, testkeys.SignChallenge(t, bd.Key, chal)), 404, "Device not found or inactive")
	// An unknown device id, and one that is not a UUID.
	testkit.WantErrorWords(t, "verify with an unknown device", ctVerify(t, srv, a, id, &ctDevice{ID: "6f1c1a60-1f3e-4c36-9b1d-1b0d3f0e0a11"}, testkeys.SignChallenge(t, ad.Key, chal)), 404, "Device not found or inactive")
	testkit.WantErrorWords(t, "verify with a non-UUID device", ctVerify(t, srv, a, id, &ctDevice{ID: "not-a-uuid"}, testkeys.SignChallenge(t, ad.Key, chal)), 404, "Device not found or inactive")
	if s := ctStatus(t, srv, a, id); s != "pending" {
		t.Fatalf("status after refused verifies: %s", s)
	}

	// A deleted (inactive) device of A's own, with a good signature.
	r := srv.Public(t, http.MethodDelete, ctDevices+"/"+ad.ID, a.JWT, nil)
	if !testkit.CheckStatus(t, "delete device", r, 200) {
		t.FailNow()
	}
	testkit.WantErrorWords(t, "verify with a deleted device", ctVerify(t, srv, a, id, ad, testkeys.SignChallenge(t, ad.Key, chal)), 404, "Device not found or inactive")
	if s := ctStatus(t, srv, a, id); s != "pending" {
		t.Errorf("status after refused verifies: %s", s)
	}
	// A's new device approves.
	nd := ctNewDevice(t, srv, a, false)
	testkit.CheckStatus(t, "verify with the new device", ctVerify(t, srv, a, id, nd, testkeys.SignChallenge(t, nd.Key, chal)), 200)
}

func ctBadSignature(t *testing.T, srv *testserver.Server, _ *fcmtest.Server) {
	u := testkit.NewUser(t, srv, "conf-")
	d := ctNewDevice(t, srv, u, false)
	c := ctInit(t, srv, u, "transfer_money", nil)
	id, chal := testkit.Str(c["confirmationId"]), testkit.Str(c["challenge"])
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := testkeys.SignChallenge(t, d.Key, chal)
	rawGood, _ := base64.StdEncoding.DecodeString(good)
	flipped := append([]byte(nil), rawGood...)
	flipped[len(flipped)-1] ^= 1
	otherChallenge := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	for name, sig := range map[string]string{
		"not base64":             "invalid-signature-data!",
		"garbage base64":         base64.StdEncoding.EncodeToString([]byte("garbage")),
		"bit flipped":            base64.StdEncoding.EncodeToString(flipped),
		"truncated":              base64.StdEncoding.EncodeToString(rawGood[:len(rawGood)-4]),
		"another key":            testkeys.SignChallenge(t, other, chal),
		"another challenge":      testkeys.SignChallenge(t, d.Key, otherChallenge),
		"signature of challenge": testkeys.SignChallenge(t, d.Key, base64.StdEncoding.EncodeToString([]byte(chal))),
	} {
		testkit.WantErrorWords(t, "verify with a bad signature ("+name+")", ctVerify(t, srv, u, id, d, sig), 401, "Invalid signature: signature verification failed")
	}
	if s := ctStatus(t, srv, u, id); s != "pending" {
		t.Errorf("status after bad signatures: %s, want pending", s)
	}
	testkit.CheckStatus(t, "verify with the good signature", ctVerify(t, srv, u, id, d, good), 200)
}

// ctPushesFor returns the messages the double received for confirmation id.
func ctPushesFor(fcm *fcmtest.Server, id string) []fcmtest.Message {
	var out []fcmtest.Message
	for _, m := range fcm.Messages() {
		if m.Data["confirmationId"] == id {
			out = append(out, m)
		}
	}
	return out
}

// One data message per active device with an FCM token, with the fields of API.md §3.
func ctPushPerDevice(t *testing.T, srv *testserver.Server, fcm *fcmtest.Server) {
	u, other := testkit.NewUser(t, srv, "conf-"), testkit.NewUser(t, srv, "conf-")
	d1 := ctNewDevice(t, srv, u, true)
	d2 := ctNewDevice(t, srv, u, true)
	ctNewDevice(t, srv, u, false) // no token: no push
	gone := ctNewDevice(t, srv, u, true)
	if r := srv.Public(t, http.MethodDelete, ctDevices+"/"+gone.ID, u.JWT, nil); !testkit.CheckStatus(t, "delete", r, 200) {
		t.FailNow()
	}
	od := ctNewDevice(t, srv, other, true) // another user's device: no push

	c := ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 50000})
	id := testkit.Str(c["confirmationId"])
	ms := ctPushesFor(fcm, id)
	got := map[string]int{}
	for _, m := range ms {
		got[m.Token]++
		if m.Project != "pvpipe-test" || m.Status != http.StatusOK {
			t.Errorf("push to %s: project %q status %d", m.Token, m.Project, m.Status)
		}
		want := map[string]string{
			"type": "action_confirmation", "confirmationId": id, "actionType": "transfer_money",
			"challenge": testkit.Str(c["challenge"]), "expiresAt": testkit.Str(c["expiresAt"]), "actionHash": testkit.Str(c["actionHash"]),
		}
		if len(m.Data) != len(want) {
			t.Errorf("push data %v, want exactly %v", m.Data, want)
		}
		for k, v := range want {
			if k == "expiresAt" {
				a, err1 := time.Parse(time.RFC3339, m.Data[k])
				b, err2 := time.Parse(time.RFC3339, v)
				if err1 != nil || err2 != nil || a.Sub(b).Abs() >= time.Second {
					t.Errorf("push expiresAt %q, initiate said %q", m.Data[k], v)
				}
				continue
			}
			if m.Data[k] != v {
				t.Errorf("push data[%q] = %q, want %q", k, m.Data[k], v)
			}
		}
		if m.Notification != nil || m.Android["priority"] != "high" {
			t.Errorf("push is not a high-priority data message: notification %v android %v", m.Notification, m.Android)
		}
	}
	if len(ms) != 2 || got[d1.FCMToken] != 1 || got[d2.FCMToken] != 1 {
		t.Errorf("pushes per token %v (%d messages), want one each to %s and %s only", got, len(ms), d1.FCMToken, d2.FCMToken)
	}
	if got[gone.FCMToken] != 0 || got[od.FCMToken] != 0 {
		t.Errorf("pushed to a deleted device or another user's device: %v", got)
	}
}

// A failing FCM does not fail the initiation; the failure is audited as push.failure.
func ctPushFailure(t *testing.T, srv *testserver.Server, fcm *fcmtest.Server) {
	u := testkit.NewUser(t, srv, "conf-")
	bad := ctNewDevice(t, srv, u, true)
	good := ctNewDevice(t, srv, u, true)
	fcm.FailToken(bad.FCMToken, fcmtest.Internal)

	r := srv.Public(t, http.MethodPost, ctInitiate, u.JWT, map[string]any{"actionType": "transfer_money"})
	if !testkit.CheckStatus(t, "initiate with a failing FCM", r, 200) {
		t.FailNow()
	}
	c := testkit.DataObject(t, r)
	id := testkit.Str(c["confirmationId"])
	ms := ctPushesFor(fcm, id)
	if len(ms) != 2 {
		t.Errorf("FCM received %d messages, want 2", len(ms))
	}
	if len(fcm.MessagesTo(good.FCMToken)) != 1 || fcm.MessagesTo(good.FCMToken)[0].Status != 200 {
		t.Errorf("the healthy device did not get its push")
	}
	if s := ctStatus(t, srv, u, id); s != "pending" {
		t.Errorf("status: %s", s)
	}

	_, events := ctAudit(t, srv, u.ID)
	found := 0
	for _, e := range events {
		if e["type"] != "push.failure" {
			continue
		}
		found++
		md, _ := e["metadata"].(map[string]any)
		if e["result"] != "failure" || e["deviceId"] != bad.ID || md["confirmationId"] != id {
			t.Errorf("push.failure event: %v", e)
		}
	}
	if found != 1 {
		t.Errorf("%d push.failure events, want 1 (events: %v)", found, events)
	}
	// A 500 does not clear the token.
	r = srv.Public(t, http.MethodGet, ctDevices, u.JWT, nil)
	for _, d := range testkit.DataObject(t, r)["devices"].([]any) {
		dm := d.(map[string]any)
		if dm["id"] == bad.ID && dm["fcmToken"] != bad.FCMToken {
			t.Errorf("a 500 changed the device's FCM token to %v", dm["fcmToken"])
		}
	}
	// The confirmation works without the push.
	testkit.CheckStatus(t, "verify", ctVerify(t, srv, u, id, good, testkeys.SignChallenge(t, good.Key, testkit.Str(c["challenge"]))), 200)
}

// UNREGISTERED clears the device's FCM token; later confirmations skip it.
func ctPushUnregistered(t *testing.T, srv *testserver.Server, fcm *fcmtest.Server) {
	u := testkit.NewUser(t, srv, "conf-")
	stale := ctNewDevice(t, srv, u, true)
	live := ctNewDevice(t, srv, u, true)
	fcm.FailToken(stale.FCMToken, fcmtest.Unregistered)

	c := ctInit(t, srv, u, "transfer_money", nil)
	if n := len(ctPushesFor(fcm, testkit.Str(c["confirmationId"]))); n != 2 {
		t.Errorf("FCM received %d messages, want 2", n)
	}
	r := srv.Public(t, http.MethodGet, ctDevices, u.JWT, nil)
	if !testkit.CheckStatus(t, "list devices", r, 200) {
		t.FailNow()
	}
	seen := 0
	for _, d := range testkit.DataObject(t, r)["devices"].([]any) {
		dm := d.(map[string]any)
		v, present := dm["fcmToken"]
		switch dm["id"] {
		case stale.ID:
			seen++
			if !present || v != nil {
				t.Errorf("unregistered device: fcmToken = %v (present %v), want null", v, present)
			}
		case live.ID:
			seen++
			if v != live.FCMToken {
				t.Errorf("other device: fcmToken = %v, want %s", v, live.FCMToken)
			}
		}
	}
	if seen != 2 {
		t.Errorf("devices listed: %s", r.Body)
	}
	_, events := ctAudit(t, srv, u.ID)
	found := false
	for _, e := range events {
		if e["type"] == "push.failure" && e["deviceId"] == stale.ID {
			found = true
		}
	}
	if !found {
		t.Errorf("no push.failure event for the unregistered device")
	}

	c = ctInit(t, srv, u, "transfer_money", nil)
	ms := ctPushesFor(fcm, testkit.Str(c["confirmationId"]))
	if len(ms) != 1 || ms[0].Token != live.FCMToken {
		t.Errorf("after UNREGISTERED: pushes %+v, want one to the live device", ms)
	}
	// A new token for the device brings it back.
	stale.FCMToken = "fcm-" + testkit.Unique()
	if r := srv.Public(t, http.MethodPut, ctDevices+"/fcm-token", u.JWT, map[string]any{"deviceId": stale.ID, "fcmToken": stale.FCMToken}); !testkit.CheckStatus(t, "new token", r, 200) {
		return
	}
	c = ctInit(t, srv, u, "transfer_money", nil)
	if n := len(ctPushesFor(fcm, testkit.Str(c["confirmationId"]))); n != 2 {
		t.Errorf("after a new token: %d pushes, want 2", n)
	}
}

// A hanging FCM delays the initiation by at most the send deadline.
func ctPushHang(t *testing.T, srv *testserver.Server, fcm *fcmtest.Server) {
	u := testkit.NewUser(t, srv, "conf-")
	hung := ctNewDevice(t, srv, u, true)
	fine := ctNewDevice(t, srv, u, true)
	fcm.FailToken(hung.FCMToken, fcmtest.Hang)
	start := time.Now()
	r := srv.Public(t, http.MethodPost, ctInitiate, u.JWT, map[string]any{"actionType": "transfer_money"})
	took := time.Since(start)
	if !testkit.CheckStatus(t, "initiate with a hanging FCM", r, 200) {
		t.FailNow()
	}
	if took > push.SendTimeout+time.Second {
		t.Errorf("initiate took %v with a hanging FCM, want at most push.SendTimeout+1s (%v)", took, push.SendTimeout+time.Second)
	}
	id := testkit.Str(testkit.DataObject(t, r)["confirmationId"])
	ms := ctPushesFor(fcm, id)
	if len(ms) != 2 {
		t.Errorf("FCM received %d messages, want 2", len(ms))
	}
	if d := fcm.MessagesTo(fine.FCMToken); len(d) != 1 || d[0].Status != 200 {
		t.Errorf("the healthy device's push: %+v", d)
	}
	_, events := ctAudit(t, srv, u.ID)
	found := false
	for _, e := range events {
		if e["type"] == "push.failure" && e["deviceId"] == hung.ID {
			found = true
		}
	}
	if !found {
		t.Errorf("no push.failure event for the hanging send")
	}
	if s := ctStatus(t, srv, u, id); s != "pending" {
		t.Errorf("status: %s", s)
	}
}

func ctAdmin(t *testing.T, srv *testserver.Server, _ *fcmtest.Server) {
	u := testkit.NewUser(t, srv, "conf-")
	d := ctNewDevice(t, srv, u, false)
	c := ctInit(t, srv, u, "approve_document", map[string]any{"documentId": "doc-12345"})
	id := testkit.Str(c["confirmationId"])
	r := srv.Admin(t, http.MethodGet, "/admin/confirmations/"+id, nil)
	if testkit.CheckStatus(t, "admin get", r, 200) {
		v := testkit.DataObject(t, r)
		if v["confirmationId"] != id || v["userId"] != json.Number(strconv.FormatInt(u.ID, 10)) || v["status"] != "pending" || v["actionType"] != "approve_document" {
			t.Errorf("admin get: %s", r.Body)
		}
		if p, _ := v["actionPayload"].(map[string]any); p["documentId"] != "doc-12345" {
			t.Errorf("admin actionPayload: %v", v["actionPayload"])
		}
	}
	testkit.CheckStatus(t, "verify", ctVerify(t, srv, u, id, d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))), 200)
	r = srv.Admin(t, http.MethodGet, "/admin/confirmations/"+id, nil)
	if testkit.CheckStatus(t, "admin get after approve", r, 200) {
		v := testkit.DataObject(t, r)
		if v["status"] != "approved" || v["deviceId"] != d.ID || v["userId"] != json.Number(strconv.FormatInt(u.ID, 10)) {
			t.Errorf("admin get after approve: %s", r.Body)
		}
	}
	testkit.WantErrorWords(t, "admin get unknown", srv.Admin(t, http.MethodGet, "/admin/confirmations/6f1c1a60-1f3e-4c36-9b1d-1b0d3f0e0a11", nil), 404)
	testkit.WantErrorWords(t, "admin get non-UUID", srv.Admin(t, http.MethodGet, "/admin/confirmations/nope", nil), 404)
}

// Audit events for initiate, approve and reject carry the challenge only as its SHA-256.
func ctAuditHashes(t *testing.T, srv *testserver.Server, _ *fcmtest.Server) {
	u := testkit.NewUser(t, srv, "conf-")
	d := ctNewDevice(t, srv, u, true)

	approved := ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 1})
	rejected := ctInit(t, srv, u, "delete_user", nil)
	badSig := testkeys.SignChallenge(t, d.Key, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
	testkit.WantErrorWords(t, "bad signature", ctVerify(t, srv, u, testkit.Str(approved["confirmationId"]), d, badSig), 401)
	sig := testkeys.SignChallenge(t, d.Key, testkit.Str(approved["challenge"]))
	testkit.CheckStatus(t, "verify", ctVerify(t, srv, u, testkit.Str(approved["confirmationId"]), d, sig), 200)
	testkit.CheckStatus(t, "reject", ctReject(t, srv, u, testkit.Str(rejected["confirmationId"]), map[string]any{"reason": "no"}), 200)

	raw, events := ctAudit(t, srv, u.ID)
	hashOf := func(c map[string]any) string {
		b, _ := base64.StdEncoding.DecodeString(testkit.Str(c["challenge"]))
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	type key struct{ id, event, result string }
	got := map[key]map[string]any{}
	for _, e := range events {
		if e["type"] != "confirmation" {
			continue
		}
		md, _ := e["metadata"].(map[string]any)
		ev := testkit.Str(md["event"])
		got[key{testkit.Str(md["confirmationId"]), ev, testkit.Str(e["result"])}] = md
		if e["userId"] != float64(u.ID) {
			t.Errorf("confirmation event without the user: %v", e)
		}
	}
	for _, c := range []map[string]any{approved, rejected} {
		md, ok := got[key{testkit.Str(c["confirmationId"]), "initiated", "success"}]
		if !ok {
			t.Errorf("no initiate event for %v (events %v)", c["confirmationId"], events)
			continue
		}
		if md["challengeHash"] != hashOf(c) {
			t.Errorf("initiate event challengeHash %v, want SHA-256 %s", md["challengeHash"], hashOf(c))
		}
	}
	if md, ok := got[key{testkit.Str(approved["confirmationId"]), "verify", "success"}]; !ok {
		t.Errorf("no approve event (events %v)", events)
	} else if md["status"] != "approved" || md["challengeHash"] != hashOf(approved) || md["deviceId"] != d.ID {
		t.Errorf("approve event metadata %v", md)
	} else if sh := sha256.Sum256([]byte(sig)); md["signatureHash"] != hex.EncodeToString(sh[:]) {
		t.Errorf("approve event signatureHash %v, want SHA-256 of the signature", md["signatureHash"])
	}
	if _, ok := got[key{testkit.Str(approved["confirmationId"]), "verify", "failure"}]; !ok {
		t.Errorf("no event for the refused signature (events %v)", events)
	}
	if md, ok := got[key{testkit.Str(rejected["confirmationId"]), "reject", "success"}]; !ok || md["status"] != "rejected" {
		t.Errorf("reject event: %v (found %v)", md, ok)
	}

	// Neither challenge nor signature appears in clear in any audit event, in any of
	// the encodings a client may use.
	for _, c := range []map[string]any{approved, rejected} {
		b, _ := base64.StdEncoding.DecodeString(testkit.Str(c["challenge"]))
		for _, enc := range []string{
			base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
			base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b), hex.EncodeToString(b),
		} {
			if strings.Contains(raw, enc) || strings.Contains(raw, strings.ReplaceAll(enc, "/", `\/`)) {
				t.Errorf("the raw challenge %q appears in the audit log", enc)
			}
		}
		// JSON may escape '+' or '/' in strings; compare decoded values too.
		for _, e := range events {
			j, _ := json.Marshal(e)
			if strings.Contains(string(j), base64.RawStdEncoding.EncodeToString(b)) {
				t.Errorf("the raw challenge appears in audit event %s", j)
			}
		}
	}
	for _, s := range []string{sig, badSig} {
		if strings.Contains(raw, s[:40]) {
			t.Errorf("a signature appears in the audit log")
		}
	}
}

// Lazy expiry: with ttl.confirmation 1s, status says expired as soon as the time has
// passed; verify is 400 "expired"; reject is 400.
func TestConfirmationExpiry(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv, _ := ctPushServer(t, dsn, map[string]any{"ttl.confirmation": "1s"})
		u := testkit.NewUser(t, srv, "conf-")
		d := ctNewDevice(t, srv, u, true)
		a := ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 1})
		b := ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 2})
		// Expiries are stored rounded up to whole seconds, so a 1 s lifetime ends within
		// 1 to 2 s: wait until the later expiresAt has passed (1.2 s at the earliest).
		var last time.Time
		for _, c := range []map[string]any{a, b} {
			exp, err := time.Parse(time.RFC3339, testkit.Str(c["expiresAt"]))
			if err != nil {
				t.Fatalf("expiresAt %v: %v", c["expiresAt"], err)
			}
			if until := time.Until(exp); until > 2*time.Second {
				t.Fatalf("expiresAt %v is %v away, want about 1s", exp, until)
			}
			if s := ctStatus(t, srv, u, testkit.Str(c["confirmationId"])); s != "pending" {
				t.Fatalf("status before the ttl: %s", s)
			}
			if exp.After(last) {
				last = exp
			}
		}
		time.Sleep(max(time.Until(last)+100*time.Millisecond, 1200*time.Millisecond))
		for _, c := range []map[string]any{a, b} {
			if s := ctStatus(t, srv, u, testkit.Str(c["confirmationId"])); s != "expired" {
				t.Errorf("status after the ttl: %s, want expired", s)
			}
		}
		testkit.WantErrorWords(t, "verify an expired confirmation", ctVerify(t, srv, u, testkit.Str(a["confirmationId"]), d, testkeys.SignChallenge(t, d.Key, testkit.Str(a["challenge"]))), 400, "expired")
		testkit.WantErrorWords(t, "reject an expired confirmation", ctReject(t, srv, u, testkit.Str(b["confirmationId"]), map[string]any{"reason": "late"}), 400)
		for _, c := range []map[string]any{a, b} {
			if s := ctStatus(t, srv, u, testkit.Str(c["confirmationId"])); s != "expired" {
				t.Errorf("status after late calls: %s, want expired", s)
			}
		}
		r := srv.Admin(t, http.MethodGet, "/admin/confirmations/"+testkit.Str(a["confirmationId"]), nil)
		if testkit.CheckStatus(t, "admin get", r, 200) && testkit.DataObject(t, r)["status"] != "expired" {
			t.Errorf("admin status: %s", r.Body)
		}
	})
}

// 10 concurrent verifies of one confirmation: exactly one approves, the others are
// told it is no longer pending (409) or expired (400).
func TestConcurrentConfirmationVerify(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv, _ := ctPushServer(t, dsn, nil)
		u := testkit.NewUser(t, srv, "conf-")
		devices := []*ctDevice{ctNewDevice(t, srv, u, true), ctNewDevice(t, srv, u, false)}
		for round := 0; round < 3; round++ {
			c := ctInit(t, srv, u, "transfer_money", map[string]any{"round": round})
			id := testkit.Str(c["confirmationId"])
			const n = 10
			bodies := make([]map[string]any, n)
			for i := range bodies {
				d := devices[i%len(devices)]
				bodies[i] = map[string]any{"deviceId": d.ID, "signedChallenge": testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))}
			}
			results := testkit.RaceResponses(n, func(i int) *testserver.Response {
				if i == n-1 && round == 2 {
					// The last round races a rejection too.
					return testkit.Send(srv.Client, http.MethodPost, srv.PublicURL+ctBase+"/"+id+"/reject", u.JWT, map[string]any{"reason": "race"})
				}
				return testkit.Send(srv.Client, http.MethodPost, srv.PublicURL+ctBase+"/"+id+"/verify", u.JWT, bodies[i])
			})
			winners, winner := 0, ""
			for i, r := range results {
				switch r.Status {
				case http.StatusOK:
					winners++
					winner = testkit.Str(testkit.DataObject(t, r)["status"])
				case http.StatusConflict:
				case http.StatusBadRequest:
					if !strings.Contains(testkit.Str(testkit.JSONObject(t, r)["message"]), "expired") {
						t.Errorf("round %d request %d: %s", round, i, r.Body)
					}
				default:
					t.Errorf("round %d request %d: status %d: %s", round, i, r.Status, r.Body)
				}
			}
			if winners != 1 {
				t.Errorf("round %d: %d of %d concurrent decisions succeeded, want exactly 1", round, winners, n)
			}
			if s := ctStatus(t, srv, u, id); s != winner || (s != "approved" && s != "rejected") {
				t.Errorf("round %d: status %s, winner said %s", round, s, winner)
			}
		}
	})
}

// oauth2_ciba is reserved for OAuth2 backchannel logins (API.md §4): a client cannot
// initiate one through the API, so it cannot make a push look like a login request.
func ctCIBAReserved(t *testing.T, srv *testserver.Server, _ *fcmtest.Server) {
	u := testkit.NewUser(t, srv, "conf-")
	for _, at := range []string{"oauth2_ciba", " oauth2_ciba "} {
		r := srv.Public(t, http.MethodPost, ctInitiate, u.JWT, map[string]any{"actionType": at, "actionPayload": map[string]any{"clientId": "x"}})
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "reserved") {
			t.Fatalf("initiate %q: %d %s", at, r.Status, r.Body)
		}
	}
	// Other action types that merely look alike are fine.
	ctInit(t, srv, u, "oauth2_ciba_like", nil)
}
